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

from memadv.files.atomic import write_text_atomic
from memadv.errors import MemadvError
from memadv.executors.paths import ExecutorPaths



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
    path = ExecutorPaths(folder).jobs
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
    when it ends (:meth:`ExecutorPaths.outcome`); UNKNOWN where neither knows a task. submitit's result pickles are never opened: a crafted
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
        outcome = ExecutorPaths(Path(folder)).outcome(jid)
        if (states[tid] in ACTIVE_STATES or states[tid] == "UNKNOWN") and outcome.exists():
            states[tid] = "COMPLETED" if read_outcome(outcome)["ok"] else "FAILED"
    return states


# Every call to a Slurm command has a bound: a hung slurmctld or slurmdbd must not hang memadv.
COMMAND_TIMEOUT_S = 60.0


def run_command(cmd: list[str]) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, one line saying why ``cmd`` gave no answer)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        return None, f"{cmd[0]} is not on PATH"
    except subprocess.TimeoutExpired:
        return None, f"{cmd[0]} gave no answer within {COMMAND_TIMEOUT_S:.0f} s"
    except OSError as e:
        return None, f"{cmd[0]} could not run: {e}"
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        return None, f"{cmd[0]} failed: {lines[-1][:200] if lines else f'exit status {proc.returncode}'}"
    return proc.stdout, None


def _sacct_states(job_ids: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """Slurm job id ('123_4') -> state from one sacct call (parsed by submitit's SlurmInfoWatcher,
    which expands array ranges such as '123_[0-5%2]'); and why sacct gave no answer, or None."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    wanted = sorted({str(jid) for jid in job_ids})
    arrays = sorted({j.split("_")[0] for j in wanted})
    if not arrays:
        return {}, None
    out, problem = run_command(["sacct", "-o", "JobID,State", "--parsable2", "-j", ",".join(arrays)])
    if out is None:
        return {}, problem
    info = SlurmInfoWatcher(delay_s=0).read_info(out)
    states: dict[str, str] = {}
    for jid in wanted:
        state = info.get(jid, {}).get("State")
        if state:
            states[jid] = state.split()[0].upper()  # "CANCELLED by 0" -> CANCELLED
    return states, None


def _squeue_states(job_ids: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """Slurm job id ('123_4') -> state for the jobs slurmctld still holds (pending, running, and
    finished less than MinJobAge ago), from one squeue call; and why squeue gave no answer, or None.
    Unlike sacct it knows a job the moment it is submitted."""
    wanted = {str(j) for j in job_ids}
    arrays = sorted({j.split("_")[0] for j in wanted})
    if not arrays:
        return {}, None
    out, problem = run_command(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T"])
    if out is None:
        return {}, problem
    states: dict[str, str] = {}
    for line in out.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in wanted and state:
            states[jid] = state.strip().upper()
    return states, None


def poll_states(job_ids: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """sacct states, with squeue's for the jobs that sacct does not know (just submitted, or no
    accounting); UNKNOWN where neither knows a job. Second: ``{"sacct"|"squeue": why it gave no
    answer}`` (one line each; empty when both answered). A job that neither knows while squeue
    answered has left slurmctld (MinJobAge after its end) without reaching any accounting: it is over."""
    job_ids = [str(j) for j in job_ids]
    states, sacct_problem = _sacct_states(job_ids)
    problems = {"sacct": sacct_problem} if sacct_problem else {}
    unknown = [j for j in job_ids if j not in states]
    if unknown:
        queued, squeue_problem = _squeue_states(unknown)
        states.update(queued)
        if squeue_problem:
            problems["squeue"] = squeue_problem
    return {j: states.get(j, "UNKNOWN") for j in job_ids}, problems


def live_states(job_ids: Iterable[str]) -> dict[str, str]:
    """:func:`poll_states` without the reasons: sacct's state, else squeue's, else UNKNOWN."""
    return poll_states(job_ids)[0]


def write_jobs(folder: Path, tasks: dict[int, str], desc: str, array_ids: list[str]) -> None:
    data = {"desc": desc, "executor": "slurm", "folder": str(folder), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "array_job_ids": array_ids, "tasks": {str(k): v for k, v in sorted(tasks.items())}}
    write_text_atomic(ExecutorPaths(folder).jobs, json.dumps(data, indent=2) + "\n")


def read_outcome(path: Path) -> dict[str, Any]:
    """An outcome file, or a failure that names it when it is not one (plain JSON: nothing is executed)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"ok": False, "error": f"unreadable outcome file {path}: {type(e).__name__}"}
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return {"ok": False, "error": f"outcome file {path} is not memadv's"}
    return data
