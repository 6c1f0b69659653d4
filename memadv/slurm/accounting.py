"""Slurm accounting of a submission: ``jobs.json`` (task id -> Slurm job id, written at submission),
the live state of each array task (``sacct``, with ``squeue`` for jobs sacct does not know yet) and
submitit's result file. Slurm's state names stay in this module; :func:`task_phase` maps them to the
executor-neutral phases that the rest of memadv reads (:func:`memadv.executors.task_states`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

from memadv.data.atomic import write_text_atomic
from memadv.errors import MemadvError

JOBS_FILE = "jobs.json"


# sacct states of an array task that has not finished (it may still write its result).
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                           "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                           "READY", "RESV_DEL_HOLD", "SUBMITTED"})
# States that `memadv status` reports as running / failed (memadv.estimate's ETA counts the former).
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING"})
FAILED_STATES = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"})


def task_phase(state: str) -> str:
    """A Slurm state -> ``running``, ``failed``, ``done`` (COMPLETED) or ``other`` (pending, unknown, ...)."""
    if state in RUNNING_STATES:
        return "running"
    if state in FAILED_STATES:
        return "failed"
    return "done" if state == "COMPLETED" else "other"


def read_jobs(folder: str | Path) -> dict[str, Any] | None:
    """The content of ``folder/jobs.json`` (``{"tasks": {id: slurm job id}, ...}``), or None."""
    path = Path(folder) / JOBS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise MemadvError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise MemadvError(f"{path} is not a memadv jobs file (no 'tasks' table)")
    return data


def job_states(folder: str | Path) -> dict[int, str]:
    """Task id -> Slurm state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).

    Read from ``folder/jobs.json``, one ``sacct`` call and the JSON outcome file each task writes
    when it ends (:func:`outcome_path`); UNKNOWN where neither knows a task. submitit's result pickles are never opened: a crafted
    one in someone else's run folder would run code on a read-only ``memadv status``; whether a task
    finished is read from the files the task itself writes (its shard, its run's final.parquet).
    Returns ``{}`` when the folder holds no Slurm submission.
    """
    data = read_jobs(folder)
    if not data:
        return {}
    tasks = {int(k): str(v) for k, v in data["tasks"].items()}
    info = live_states(tasks.values())
    states = {tid: info.get(jid, "UNKNOWN") for tid, jid in tasks.items()}
    for tid, jid in tasks.items():
        # A task that wrote its JSON outcome has finished, whatever a lagging sacct still says
        # (RUNNING while the job's process exits) or no longer says (accounting purged).
        outcome = outcome_path(Path(folder), jid)
        if (states[tid] in ACTIVE_STATES or states[tid] == "UNKNOWN") and outcome.exists():
            states[tid] = "COMPLETED" if read_outcome(outcome)["ok"] else "FAILED"
    return states


def _sacct_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Slurm job id ('123_4') -> state, from one sacct call; {} if sacct fails."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher(delay_s=0)
    wanted = sorted({str(jid) for jid in job_ids})
    for jid in wanted:
        watcher.register_job(jid)
    watcher.update()
    out: dict[str, str] = {}
    for jid in wanted:
        state = watcher.get_state(jid, mode="cache")
        out[jid] = state.split()[0].upper() if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return out


def _squeue_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Slurm job id ('123_4') -> state for the jobs slurmctld still holds (pending, running, just
    finished), from one squeue call; {} if squeue fails. Unlike sacct it knows a job the moment it is
    submitted."""
    wanted = {str(j) for j in job_ids}
    arrays = sorted({j.split("_")[0] for j in wanted})
    if not arrays:
        return {}
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in wanted and state:
            out[jid] = state.strip().upper()
    return out


def live_states(job_ids: Iterable[str]) -> dict[str, str]:
    """sacct states, with squeue's for the jobs that sacct does not know yet (just submitted)."""
    job_ids = list(job_ids)
    states = _sacct_states(job_ids)
    unknown = [j for j in job_ids if states.get(j, "UNKNOWN") == "UNKNOWN"]
    if unknown:
        states.update(_squeue_states(unknown))
    return states


def write_jobs(folder: Path, tasks: dict[int, str], desc: str, array_ids: list[str]) -> None:
    data = {"desc": desc, "executor": "slurm", "folder": str(folder), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "array_job_ids": array_ids, "tasks": {str(k): v for k, v in sorted(tasks.items())}}
    write_text_atomic(folder / JOBS_FILE, json.dumps(data, indent=2) + "\n")


def outcome_path(folder: Path, job_id: str) -> Path:
    """``<folder>/outcomes/<job id>.json``: ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}``."""
    return Path(folder) / "outcomes" / f"{job_id}.json"


def read_outcome(path: Path) -> dict[str, Any]:
    """An outcome file, or a failure that names it when it is not one (plain JSON: nothing is executed)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"ok": False, "error": f"unreadable outcome file {path}: {type(e).__name__}"}
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return {"ok": False, "error": f"outcome file {path} is not memadv's"}
    return data
