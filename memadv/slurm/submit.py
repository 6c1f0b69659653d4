"""Slurm execution: ONE submitit job array per call, requeue on time-out / pre-emption, reattachment
to the array tasks of an earlier submission that are still queued or running, and the wait for
their results (accounting in :mod:`memadv.slurm.accounting`).

``AutoExecutor(folder, cluster="slurm")`` + ``map_array``: one array task per id, at most
``array_parallelism`` running at once, each with ``cpus_per_task`` CPUs, ``gpus_per_task`` GPUs,
``mem_gb`` memory, ``timeout_min`` minutes on ``partition``. The task is wrapped in a
``submitit.helpers.Checkpointable``: when Slurm signals a time-out or pre-emption (``USR2``, 90 s
before the end), submitit requeues the array task, which calls ``task(id)`` again and, the task
being idempotent, resumes at the next unfinished unit. A time-out requeues at most ``max_timeouts``
times; pre-emptions always requeue. If ``jobs.json`` names array tasks that are still pending or
running (the submitting process was killed), they are waited for rather than submitted again.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from submitit.helpers import Checkpointable

from memadv.config import check_printable, check_range
from memadv.data.atomic import write_json_atomic
from memadv.errors import MemadvError
from memadv.executors.base import ExecutorConfig, TasksFailedError, progress_bar
from memadv.slurm.accounting import ACTIVE_STATES, live_states, outcome_path, read_jobs, read_outcome, write_jobs
from memadv.slurm.options import parse_sbatch_extra

# How long an array task may sit in a finished state without its result file before it counts as
# failed: COMPLETED waits for a slow shared file system; PREEMPTED waits for submitit's requeue.
_GRACE_S = {"COMPLETED": 30.0, "PREEMPTED": 300.0}
_DEFAULT_GRACE_S = 3.0

def slurm_parameters(cfg: ExecutorConfig, *, desc: str = "tasks") -> dict[str, Any]:
    """The submitit SlurmExecutor parameters (native names: time, partition, mem, ...) for ``cfg``."""
    params: dict[str, Any] = {
        "job_name": _job_name(desc),
        "time": int(cfg.timeout_min),
        "cpus_per_task": int(cfg.cpus_per_task),
        "array_parallelism": int(cfg.array_parallelism),
    }
    if cfg.partition:
        params["partition"] = cfg.partition
    if cfg.gpus_per_task:
        params["gpus_per_task"] = int(cfg.gpus_per_task)
    if cfg.mem_gb is not None:
        mem_mb = int(round(cfg.mem_gb * 1024))
        params["mem"] = f"{mem_mb // 1024}G" if mem_mb % 1024 == 0 else f"{mem_mb}M"
    extra = parse_sbatch_extra(cfg.sbatch_extra)
    if extra:
        params["additional_parameters"] = extra
    check_printable("sbatch parameters", params)  # every value becomes part of a #SBATCH line
    return params


def sbatch_script(cfg: ExecutorConfig, folder: str | Path, n_tasks: int, *, desc: str = "tasks") -> str:
    """The sbatch script that :func:`run_tasks` would submit for ``n_tasks`` ids; nothing is submitted."""
    check_range("n_tasks", n_tasks, 1)
    from submitit.slurm import slurm as submitit_slurm  # submitit's own generator, so the text is exact

    folder = Path(folder).resolve()
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, map_count=int(n_tasks),
                                              **slurm_parameters(cfg, desc=desc))


class _RequeueableTask(Checkpointable):
    """Calls the idempotent task and records its outcome as JSON (:func:`outcome_path`).

    memadv never unpickles what a job leaves in the run folder (submitit's result pickle could be
    anyone's file in a shared folder): the waiting process reads this JSON file instead. The task's
    return value must be JSON data (a path string, a dict of plain values). On time-out or
    pre-emption submitit's signal handler calls ``checkpoint`` (inherited: resubmit the same call
    ``task(i)``) and requeues the array task; the task then skips the units it already finished."""

    def __init__(self, task: Callable[[int], Any], folder: str):
        self.task = task
        self.folder = folder

    def __call__(self, i: int) -> Any:
        import submitit

        path = outcome_path(Path(self.folder), submitit.JobEnvironment().job_id)
        try:
            value = self.task(i)
        except Exception as e:
            write_json_atomic(path, {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:400]})
            raise
        write_json_atomic(path, {"ok": True, "value": value})
        return value


def _job_name(desc: str) -> str:
    return "memadv-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", desc).strip("-") or "tasks")


def _make_slurm_executor(cfg: ExecutorConfig, folder: Path, desc: str):
    import submitit

    check_printable("job folder", folder)  # the folder's path is written into the sbatch script
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=cfg.max_timeouts)
    executor.update_parameters(**{f"slurm_{k}": v for k, v in slurm_parameters(cfg, desc=desc).items()})
    return executor


def run_slurm(task, ids, cfg, folder, desc, progress) -> list[Any]:
    import shutil

    from submitit.slurm.slurm import SlurmJob

    if shutil.which("sbatch") is None:
        raise MemadvError("--executor slurm needs Slurm's sbatch on PATH (for a local test cluster: "
                          "bash memadv/slurm/dev-cluster.sh start)")
    folder = folder.resolve()
    jobs: dict[int, Any] = {}
    # Re-attach to array tasks of an earlier submission that are still queued or running.
    previous = read_jobs(folder)
    known: dict[int, str] = {}
    array_ids: list[str] = []
    if previous:
        known = {int(k): str(v) for k, v in previous["tasks"].items()}
        array_ids = [str(a) for a in previous.get("array_job_ids", [])]
        wanted = {i: known[i] for i in ids if i in known}
        live = live_states(wanted.values()) if wanted else {}
        for i, jid in wanted.items():
            if live.get(jid, "UNKNOWN") in ACTIVE_STATES:
                jobs[i] = SlurmJob(folder=folder, job_id=jid)
    todo = [i for i in ids if i not in jobs]
    if todo:
        executor = _make_slurm_executor(cfg, folder, desc)
        try:
            submitted = executor.map_array(_RequeueableTask(task, str(folder)), todo)
        except subprocess.CalledProcessError as e:
            raise MemadvError(f"sbatch refused the job array for {desc}: {_one_line(e)}") from None
        except Exception as e:  # submitit wraps sbatch errors in FailedJobError / RuntimeError
            raise MemadvError(f"could not submit the job array for {desc}: {_one_line(e)}") from None
        for i, job in zip(todo, submitted):
            jobs[i] = job
        array_ids.append(submitted[0].job_id.split("_")[0])
    known.update({i: job.job_id for i, job in jobs.items()})
    write_jobs(folder, known, desc, array_ids)
    if progress and todo:
        print(f"memadv: submitted {len(todo)} {desc} as Slurm job array {array_ids[-1]} "
              f"(logs in {folder})", file=sys.stderr)
    try:
        return _wait_slurm(jobs, ids, folder, desc, progress)
    except KeyboardInterrupt:
        print(f"\nmemadv: stopped waiting; the Slurm jobs keep running (scancel {' '.join(sorted(set(array_ids)))} "
              "to stop them; run the same command again to wait for them)", file=sys.stderr)
        raise


def _one_line(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, subprocess.CalledProcessError) and e.stderr:
        text = e.stderr.decode() if isinstance(e.stderr, bytes) else str(e.stderr)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:400] if lines else type(e).__name__


def _wait_slurm(jobs: dict[int, Any], ids: list[int], folder: Path, desc: str, progress: bool) -> list[Any]:
    """Poll outcome files every second and sacct every 2-30 s until every array task is done."""
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {i: str(job.paths.stderr) for i, job in jobs.items()}
    pending = set(ids)
    gone_since: dict[int, float] = {}  # task -> when first seen finished without a result file
    gone_seen: dict[int, int] = {}  # task -> consecutive state polls that saw it so
    states: dict[str, str] = {}
    start = last_sacct = time.monotonic()
    first = True
    with progress_bar(len(ids), desc, progress) as bar:
        while pending:
            now = time.monotonic()
            if first or now - last_sacct >= min(30.0, max(2.0, (now - start) / 10)):
                states = live_states(jobs[i].job_id for i in pending)
                last_sacct, first = now, False
                running = sum(states.get(jobs[i].job_id) == "RUNNING" for i in pending)
                bar.set_postfix(running=running, failed=len(failed), refresh=False)
                for i in pending:
                    state = states.get(jobs[i].job_id, "UNKNOWN")
                    if state in ACTIVE_STATES or state == "UNKNOWN":
                        gone_since.pop(i, None)
                        gone_seen.pop(i, None)
                    else:
                        gone_since.setdefault(i, now)
                        gone_seen[i] = gone_seen.get(i, 0) + 1
            for i in sorted(pending):
                job = jobs[i]
                outcome = outcome_path(folder, job.job_id)
                if outcome.exists():
                    data = read_outcome(outcome)
                    if data["ok"]:
                        results[i] = data.get("value")
                    else:
                        failed[i] = str(data.get("error", "failed"))
                    pending.discard(i)
                    bar.update(1)
                    continue
                # Finished without a result file (cancelled, node failure, out of memory, ...): once
                # two state polls agree and the grace time is over (slow file system, pending
                # requeue), it counts as failed.
                state = states.get(job.job_id, "UNKNOWN")
                if gone_seen.get(i, 0) >= 2 and now - gone_since[i] >= _GRACE_S.get(state, _DEFAULT_GRACE_S):
                    failed[i] = f"Slurm state {state}, no result written"
                    pending.discard(i)
                    bar.update(1)
            if pending:
                time.sleep(1.0)
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]
