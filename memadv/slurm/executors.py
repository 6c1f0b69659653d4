"""Run one idempotent task per id: in this process, in local worker processes, or as a Slurm job array.

The contract (used by the estimator for model shards, later by training sweeps)::

    results = run_tasks(task, ids, cfg, folder, desc="shards")

* ``task`` is a picklable callable object, called once per id as ``task(id)``. It must be
  idempotent: it skips the work that is already finished (e.g. shard files that exist), so that a
  re-run, a requeued Slurm job or a duplicate call resumes at the next unfinished unit.
* ``cfg`` is an :class:`ExecutorConfig` (every field is a command-line option and a TOML key).
* ``folder`` holds the executor's files: task logs (``logs/task-<id>.err`` for failures of the
  in-process and local executors; submitit's ``<jobid>_<task>_log.{out,err}`` for Slurm), the
  submitit pickles, and ``jobs.json`` (Slurm job ids per task id, read by :func:`job_states`).
* Results come back in the order of ``ids``; if any task fails, the others still run and then
  :class:`TasksFailedError` names the failed ids and their logs.

Executors:

``inprocess``
    sequentially in this process, with a progress bar; the default, and the easiest to debug.
``local``
    ``workers`` processes (``spawn`` start method, so CUDA and threads are safe), with a progress bar.
``slurm``
    ONE submitit job array (``AutoExecutor(folder, cluster="slurm")`` + ``map_array``), one array
    task per id, at most ``array_parallelism`` running at once, each with ``cpus_per_task`` CPUs,
    ``gpus_per_task`` GPUs, ``mem_gb`` memory, ``timeout_min`` minutes on ``partition``. The task is
    wrapped in a ``submitit.helpers.Checkpointable``: when Slurm signals a time-out or pre-emption
    (``USR2``, 90 s before the end), submitit requeues the array task, which calls ``task(id)``
    again and, the task being idempotent, resumes at the next unfinished unit. A time-out requeues
    at most ``max_timeouts`` times; pre-emptions always requeue. If ``jobs.json`` names array
    tasks that are still pending or running (the submitting process was killed), they are waited
    for rather than submitted again.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import re
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from submitit.helpers import Checkpointable

from memadv.config import check_range, option
from memadv.data.atomic import write_text_atomic
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError

EXECUTORS = ("inprocess", "local", "slurm")
JOBS_FILE = "jobs.json"
# sacct states of an array task that has not finished (it may still write its result).
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                           "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                           "READY", "RESV_DEL_HOLD", "SUBMITTED"})
# How long an array task may sit in a finished state without its result file before it counts as
# failed: COMPLETED waits for a slow shared file system; PREEMPTED waits for submitit's requeue.
_GRACE_S = {"COMPLETED": 30.0, "PREEMPTED": 300.0}
_DEFAULT_GRACE_S = 3.0
# #SBATCH options that submitit sets itself for a job array; sbatch_extra must not change them.
_RESERVED_SBATCH = frozenset({"array", "output", "error", "open_mode", "o", "e", "a"})


class TasksFailedError(MemadvError):
    """Some tasks raised, were cancelled or died; the message lists their ids and log files."""

    def __init__(self, desc: str, failed: dict[int, str], logs: dict[int, str], total: int):
        self.failed = dict(sorted(failed.items()))
        self.logs = logs
        ids = list(self.failed)
        shown = ", ".join(str(i) for i in ids[:20]) + (f", ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
        first = ids[0]
        log_list = ", ".join(logs[i] for i in ids[:3] if i in logs) + (" ..." if len(ids) > 3 else "")
        reason = " ".join(self.failed[first].split())[:300]
        super().__init__(f"{len(ids)} of {total} {desc} failed (ids {shown}); first: id {first}: {reason}; "
                         f"logs: {log_list or 'none'}")


@dataclass
class ExecutorConfig:
    """Where and how the tasks of a run (model shards, sweep points) are executed."""

    executor: str = option("inprocess", "where tasks run: inprocess (sequential, this process), "
                           "local (worker processes on this machine) or slurm (one submitit job array)",
                           choices=EXECUTORS)
    workers: int = option(2, "local executor: number of worker processes", unit="processes")
    partition: str | None = option(None, "slurm: partition (sbatch --partition); default: the cluster's default")
    timeout_min: int = option(240, "slurm: time limit of each array task; a timed-out task requeues and "
                              "resumes at its next unfinished unit", unit="minutes")
    gpus_per_task: int = option(0, "slurm: GPUs per array task (sbatch --gpus-per-task); 0 = none", unit="GPUs")
    cpus_per_task: int = option(2, "slurm: CPUs per array task (sbatch --cpus-per-task)", unit="CPUs")
    mem_gb: float | None = option(None, "slurm: memory per array task (sbatch --mem); default: the "
                                  "partition's default", unit="GB")
    array_parallelism: int = option(64, "slurm: at most this many array tasks run at once (sbatch --array=...%N)",
                                    unit="tasks")
    sbatch_extra: list[str] = option([], "slurm: extra sbatch long options, each KEY=VALUE or a bare FLAG, "
                                     "e.g. --sbatch-extra qos=high constraint=a100 exclusive (in TOML "
                                     "a leading '--' or '#SBATCH --' is also accepted); passed as "
                                     "submitit's slurm_additional_parameters, so they win over the "
                                     "options above; array/output/error are refused")
    max_timeouts: int = option(3, "slurm: how many times one array task may time out and requeue "
                               "before it counts as failed (pre-emptions always requeue)", unit="requeues")

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise UnknownChoiceError("executor", self.executor, EXECUTORS)
        for name in ("workers", "timeout_min", "gpus_per_task", "cpus_per_task", "array_parallelism", "max_timeouts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))):
            raise ConfigError(f"--mem-gb must be a number, got {self.mem_gb!r}")
        check_range("workers", self.workers, 1)
        check_range("timeout_min", self.timeout_min, 1)
        check_range("gpus_per_task", self.gpus_per_task, 0)
        check_range("cpus_per_task", self.cpus_per_task, 1)
        if self.mem_gb is not None:
            check_range("mem_gb", self.mem_gb, 0, lo_open=True)
        check_range("array_parallelism", self.array_parallelism, 1)
        check_range("max_timeouts", self.max_timeouts, 0)
        if self.partition is not None:
            self.partition = str(self.partition).strip() or None
        if isinstance(self.sbatch_extra, str):
            self.sbatch_extra = [self.sbatch_extra]
        self.sbatch_extra = [str(x) for x in self.sbatch_extra]
        parse_sbatch_extra(self.sbatch_extra)  # raises ConfigError on a malformed item


# --------------------------------------------------------------------------------------------------
# public API


def run_tasks(task: Callable[[int], Any], ids: Sequence[int], cfg: ExecutorConfig, folder: str | Path, *,
              desc: str = "tasks", progress: bool = True) -> list[Any]:
    """Call ``task(i)`` once for every ``i`` in ``ids`` on the executor of ``cfg``; results in ids order.

    Raises :class:`TasksFailedError` (after every task has finished or failed) if any task failed.
    """
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"run_tasks: duplicate task ids in {desc}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not ids:
        return []
    if cfg.executor == "inprocess":
        return _run_inprocess(task, ids, folder, desc, progress)
    if cfg.executor == "local":
        return _run_local(task, ids, cfg, folder, desc, progress)
    if cfg.executor == "slurm":
        return _run_slurm(task, ids, cfg, folder, desc, progress)
    raise UnknownChoiceError("executor", cfg.executor, EXECUTORS)


def parse_sbatch_extra(items: Iterable[str]) -> dict[str, Any]:
    """``["qos=high", "--constraint=a100", "#SBATCH --exclusive"]`` -> submitit additional_parameters.

    Keys use underscores (submitit turns them back into dashes); a bare flag maps to ``True``.
    """
    params: dict[str, Any] = {}
    for raw in items:
        text = raw.strip()
        if text.upper().startswith("#SBATCH"):
            text = text[len("#SBATCH"):].strip()
        body = text[2:] if text.startswith("--") else text
        key, sep, value = body.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or (text.startswith("-") and not text.startswith("--")):
            raise ConfigError(f"--sbatch-extra item {raw!r} is not KEY=VALUE or a bare FLAG "
                              "(long sbatch option names only, e.g. qos=high, --constraint=a100, exclusive)")
        norm = key.replace("-", "_").lower()
        if norm in _RESERVED_SBATCH:
            raise ConfigError(f"--sbatch-extra item {raw!r} sets {key!r}, which submitit manages itself")
        params[norm] = value.strip() if sep else True
    return params


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
    return params


def sbatch_script(cfg: ExecutorConfig, folder: str | Path, n_tasks: int, *, desc: str = "tasks") -> str:
    """The sbatch script that :func:`run_tasks` would submit for ``n_tasks`` ids; nothing is submitted."""
    check_range("n_tasks", n_tasks, 1)
    from submitit.slurm import slurm as submitit_slurm  # submitit's own generator, so the text is exact

    folder = Path(folder).resolve()
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, map_count=int(n_tasks),
                                              **slurm_parameters(cfg, desc=desc))


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

    Read from ``folder/jobs.json`` and one ``sacct`` call. A task that has written its submitit
    result file but that sacct still shows as active (the process is exiting) or does not know
    (accounting purged, sacct unavailable) is COMPLETED or FAILED as that file says; otherwise
    UNKNOWN if sacct does not know it. Returns ``{}`` when the folder holds no Slurm submission.
    """
    data = read_jobs(folder)
    if not data:
        return {}
    tasks = {int(k): str(v) for k, v in data["tasks"].items()}
    info = _live_states(tasks.values())
    states: dict[int, str] = {}
    for tid, jid in tasks.items():
        state = info.get(jid, "UNKNOWN")
        if state == "UNKNOWN" or state in ACTIVE_STATES:
            outcome = _result_outcome(Path(folder), jid)
            if outcome is not None:
                state = "COMPLETED" if outcome == "success" else "FAILED"
        states[tid] = state
    return states


# --------------------------------------------------------------------------------------------------
# in-process and local processes


def _call_logged(task: Callable[[int], Any], i: int) -> tuple[str, Any]:
    """('ok', result) or ('error', traceback text); never raises an Exception."""
    try:
        return "ok", task(i)
    except Exception:  # noqa: BLE001 - reported per task by the caller
        return "error", traceback.format_exc()


def _progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=not progress, dynamic_ncols=True)


def _record_failure(folder: Path, i: int, text: str, failed: dict[int, str], logs: dict[int, str]) -> None:
    log = folder / "logs" / f"task-{i}.err"
    write_text_atomic(log, text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    failed[i] = lines[-1] if lines else "failed"
    logs[i] = str(log)


def _run_inprocess(task, ids, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    with _progress_bar(len(ids), desc, progress) as bar:
        for i in ids:
            status, value = _call_logged(task, i)
            if status == "ok":
                results[i] = value
            else:
                _record_failure(folder, i, value, failed, logs)
                bar.set_postfix(failed=len(failed))
            bar.update(1)
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]


def _run_local(task, ids, cfg, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(cfg.workers, len(ids)), mp_context=ctx) as pool, \
            _progress_bar(len(ids), desc, progress) as bar:
        futures = {pool.submit(_call_logged, task, i): i for i in ids}
        try:
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    status, value = fut.result()
                except Exception as e:  # the worker died (BrokenProcessPool) or the result did not unpickle
                    status, value = "error", f"{type(e).__name__}: {e} (worker process died or result not picklable)"
                if status == "ok":
                    results[i] = value
                else:
                    _record_failure(folder, i, value, failed, logs)
                    bar.set_postfix(failed=len(failed))
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]


# --------------------------------------------------------------------------------------------------
# Slurm


class _RequeueableTask(Checkpointable):
    """Calls the idempotent task. On time-out or pre-emption submitit's signal handler calls
    ``checkpoint`` (inherited: resubmit the same call ``task(i)``) and requeues the array task;
    the task then skips the units it already finished."""

    def __init__(self, task: Callable[[int], Any]):
        self.task = task

    def __call__(self, i: int) -> Any:
        return self.task(i)


def _job_name(desc: str) -> str:
    return "memadv-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", desc).strip("-") or "tasks")


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


def _live_states(job_ids: Iterable[str]) -> dict[str, str]:
    """sacct states, with squeue's for the jobs that sacct does not know yet (just submitted)."""
    job_ids = list(job_ids)
    states = _sacct_states(job_ids)
    unknown = [j for j in job_ids if states.get(j, "UNKNOWN") == "UNKNOWN"]
    if unknown:
        states.update(_squeue_states(unknown))
    return states


def _result_outcome(folder: Path, job_id: str) -> str | None:
    """'success' / 'error' from submitit's result pickle of array task ``job_id``, None if absent."""
    from submitit.core.utils import JobPaths, pickle_load

    path = JobPaths(folder, job_id=job_id, task_id=0).result_pickle
    if not path.exists():
        return None
    try:
        return str(pickle_load(path)[0])
    except Exception:  # noqa: BLE001 - a half-written or foreign file counts as unknown
        return None


def _write_jobs(folder: Path, tasks: dict[int, str], desc: str, array_ids: list[str]) -> None:
    data = {"desc": desc, "executor": "slurm", "folder": str(folder), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "array_job_ids": array_ids, "tasks": {str(k): v for k, v in sorted(tasks.items())}}
    write_text_atomic(folder / JOBS_FILE, json.dumps(data, indent=2) + "\n")


def _make_slurm_executor(cfg: ExecutorConfig, folder: Path, desc: str):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=cfg.max_timeouts)
    executor.update_parameters(**{f"slurm_{k}": v for k, v in slurm_parameters(cfg, desc=desc).items()})
    return executor


def _run_slurm(task, ids, cfg, folder, desc, progress) -> list[Any]:
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
        live = _live_states(wanted.values()) if wanted else {}
        for i, jid in wanted.items():
            if live.get(jid, "UNKNOWN") in ACTIVE_STATES:
                jobs[i] = SlurmJob(folder=folder, job_id=jid)
    todo = [i for i in ids if i not in jobs]
    if todo:
        executor = _make_slurm_executor(cfg, folder, desc)
        try:
            submitted = executor.map_array(_RequeueableTask(task), todo)
        except subprocess.CalledProcessError as e:
            raise MemadvError(f"sbatch refused the job array for {desc}: {_one_line(e)}") from None
        except Exception as e:  # submitit wraps sbatch errors in FailedJobError / RuntimeError
            raise MemadvError(f"could not submit the job array for {desc}: {_one_line(e)}") from None
        for i, job in zip(todo, submitted):
            jobs[i] = job
        array_ids.append(submitted[0].job_id.split("_")[0])
    known.update({i: job.job_id for i, job in jobs.items()})
    _write_jobs(folder, known, desc, array_ids)
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
    """Poll result files every second and sacct every 2-30 s until every array task is done."""
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {i: str(job.paths.stderr) for i, job in jobs.items()}
    pending = set(ids)
    gone_since: dict[int, float] = {}  # task -> when first seen finished without a result file
    gone_seen: dict[int, int] = {}  # task -> consecutive state polls that saw it so
    states: dict[str, str] = {}
    start = last_sacct = time.monotonic()
    first = True
    with _progress_bar(len(ids), desc, progress) as bar:
        while pending:
            now = time.monotonic()
            if first or now - last_sacct >= min(30.0, max(2.0, (now - start) / 10)):
                states = _live_states(jobs[i].job_id for i in pending)
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
                if job.paths.result_pickle.exists():
                    try:
                        results[i] = job.result()
                    except Exception as e:  # noqa: BLE001 - the task raised inside the job
                        failed[i] = _summarise_failure(e)
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


def _summarise_failure(e: Exception) -> str:
    """The last line of the remote traceback ('ValueError: boom') of a submitit FailedJobError."""
    text = str(e)
    if "----------------------" in text:
        parts = text.split("----------------------")
        if len(parts) >= 2:
            text = parts[1]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


__all__ = ["EXECUTORS", "ExecutorConfig", "TasksFailedError", "run_tasks", "sbatch_script", "slurm_parameters",
           "parse_sbatch_extra", "job_states", "read_jobs", "ACTIVE_STATES"]
