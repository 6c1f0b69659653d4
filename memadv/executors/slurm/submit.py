"""Slurm execution: ONE submitit job array per call, requeue on time-out / pre-emption, reattachment
to the array tasks of an earlier submission that are still queued or running, and the wait for
their results (accounting in :mod:`memadv.executors.slurm.accounting`).

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

import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from submitit.helpers import Checkpointable

from memadv.config import check_range
from memadv.safe_values import check_printable
from memadv.files.atomic import write_json_atomic
from memadv.errors import MemadvError
from memadv.executors.base import ExecutorConfig, TasksFailedError, TooManyTasksError, progress_bar
from memadv.executors.paths import ExecutorPaths
from memadv.executors.slurm.accounting import (ACTIVE_STATES, live_states, poll_states, read_jobs, read_outcome,
                                     run_command, write_jobs)
from memadv.executors.slurm.options import parse_sbatch_extra

# How long an array task may sit in a finished state without its result file before it counts as
# failed: COMPLETED waits for a slow shared file system; PREEMPTED waits for submitit's requeue;
# UNKNOWN (neither sacct nor squeue knows the job: no accounting, and slurmctld forgot it MinJobAge
# after its end, so its files had minutes to appear) briefly; NO_ANSWER (neither sacct nor squeue answered: the controller is down
# or hung) bounds the wait for Slurm to answer again (every wait has a bound).
_GRACE_S = {"COMPLETED": 30.0, "PREEMPTED": 300.0, "UNKNOWN": 10.0, "NO_ANSWER": 600.0}
_DEFAULT_GRACE_S = 3.0


def max_array_size() -> int | None:
    """Slurm's MaxArraySize (``scontrol show config``): a job array holds task indices 0 to
    MaxArraySize - 1, so at most that many tasks; None when scontrol does not answer."""
    out, _ = run_command(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out or "", re.MULTILINE)
    return int(match.group(1)) if match else None


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
    extra = parse_sbatch_extra(cfg.sbatch_extra, mem_gb=cfg.mem_gb)
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
    """Calls the idempotent task and records its outcome as JSON (:meth:`ExecutorPaths.outcome`).

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

        path = ExecutorPaths(Path(self.folder)).outcome(submitit.JobEnvironment().job_id)
        try:
            value = self.task(i)
        except Exception as e:
            write_json_atomic(path, {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:400]})
            raise
        write_json_atomic(path, {"ok": True, "value": value})
        return value


def _job_name(desc: str) -> str:
    return "memadv-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", desc).strip("-") or "tasks")


# Variables of the environment sbatch runs in that describe the job memadv may be running inside.
# sbatch exports its whole environment into the new job by default, so an
# enclosing job's SLURM_MEM_PER_CPU meets the array's own SLURM_MEM_PER_NODE and every task's srun
# dies ("SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE are mutually exclusive").
# submitit's helpers.clean_env() hides the same prefixes but also SLURM_CONF, which names the
# cluster's configuration; SBATCH_* variables are the user's standing defaults and stay, except those
# that would override a setting memadv writes into the script (sbatch: environment beats #SBATCH).
_JOB_ENV_PREFIXES = ("SLURM_", "SLURMD_", "SRUN_", "SUBMITIT_")
_KEEP_ENV = frozenset({"SLURM_CONF"})
_OWNED_SBATCH_ENV = frozenset({"SBATCH_TIMELIMIT", "SBATCH_SIGNAL", "SBATCH_JOB_NAME", "SBATCH_ARRAY_INX",
                               "SBATCH_OPEN_MODE", "SBATCH_NO_REQUEUE", "SBATCH_REQUEUE"})


def enclosing_job_variables(environ: dict[str, str]) -> list[str]:
    """The names in ``environ`` that sbatch must not see when memadv submits (comment above)."""
    return sorted(k for k in environ if (k.startswith(_JOB_ENV_PREFIXES) and k not in _KEEP_ENV)
                  or k in _OWNED_SBATCH_ENV)


@contextlib.contextmanager
def _submission_environment():
    """Hide :func:`enclosing_job_variables` from os.environ while submitit runs sbatch (it passes no env)."""
    hidden = {k: os.environ.pop(k) for k in enclosing_job_variables(dict(os.environ))}
    try:
        yield
    finally:
        os.environ.update(hidden)


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
                          "bash memadv/executors/slurm/dev-cluster.sh start)")
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
    limit = max_array_size() if todo else None
    if limit is not None and len(todo) > limit:  # sbatch would refuse it with "Invalid job array specification"
        raise TooManyTasksError(desc, len(todo), limit)
    if todo:
        executor = _make_slurm_executor(cfg, folder, desc)
        try:
            with _submission_environment():
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


def _no_result(state: str, problems: dict[str, str]) -> str:
    """Why a task without a result file counts as failed, in one line."""
    said = "; ".join(problems.values())
    if state == "NO_ANSWER":
        return (f"Slurm gave no state for {_GRACE_S[state]:.0f} s ({said}); the job may still run: "
                "run the same command again to wait for it")
    if state == "UNKNOWN":
        return (f"no Slurm state ({said or 'sacct does not know the job'}; squeue no longer lists it), "
                "no result written")
    return f"Slurm state {state}, no result written"


def _log_tail(log: str | None) -> str:
    """``"; log: <its last non-empty line>"`` of a task's stderr log (e.g. srun's fatal error), or ''."""
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f"; log: {lines[-1][:300]}" if lines else ""


def _wait_slurm(jobs: dict[int, Any], ids: list[int], folder: Path, desc: str, progress: bool) -> list[Any]:
    """Poll outcome files every second and sacct every 2-30 s until every array task is done."""
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {i: str(job.paths.stderr) for i, job in jobs.items()}
    pending = set(ids)
    gone_since: dict[int, float] = {}  # task -> when first seen finished without a result file
    gone_seen: dict[int, int] = {}  # task -> consecutive state polls that saw it so
    states: dict[str, str] = {}
    problems: dict[str, str] = {}
    start = last_sacct = time.monotonic()
    first = True
    with progress_bar(len(ids), desc, progress) as bar:
        while pending:
            now = time.monotonic()
            if first or now - last_sacct >= min(30.0, max(2.0, (now - start) / 10)):
                states, problems = poll_states(jobs[i].job_id for i in pending)
                if "squeue" in problems:  # UNKNOWN then only says that Slurm did not answer
                    states = {j: "NO_ANSWER" if st == "UNKNOWN" else st for j, st in states.items()}
                last_sacct, first = now, False
                running = sum(states.get(jobs[i].job_id) == "RUNNING" for i in pending)
                bar.set_postfix(running=running, failed=len(failed), refresh=False)
                for i in pending:
                    if states.get(jobs[i].job_id, "UNKNOWN") in ACTIVE_STATES:
                        gone_since.pop(i, None)
                        gone_seen.pop(i, None)
                    else:
                        gone_since.setdefault(i, now)
                        gone_seen[i] = gone_seen.get(i, 0) + 1
            for i in sorted(pending):
                job = jobs[i]
                outcome = ExecutorPaths(folder).outcome(job.job_id)
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
                    failed[i] = _no_result(state, problems) + _log_tail(logs.get(i))
                    pending.discard(i)
                    bar.update(1)
            if pending:
                time.sleep(1.0)
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]
