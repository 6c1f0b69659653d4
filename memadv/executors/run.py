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

``auto``
    the default: what :func:`memadv.executors.base.resolve_executor` picks for the tasks (local
    workers over the usable CPUs for the estimator's CPU shards, else inprocess).
``inprocess``
    sequentially in this process, with a progress bar; the easiest to debug.
``local``
    ``workers`` processes (``spawn`` start method, so CUDA and threads are safe), with a progress bar.
``slurm``
    ONE submitit job array, requeued on time-out or pre-emption (:mod:`memadv.executors.slurm.submit`).

The executors are kept apart as submitit keeps ``local/`` apart from ``slurm/``: what they share is
:mod:`memadv.executors.base`, the scheduler-free ones are :mod:`memadv.executors.local`, the Slurm
one is :mod:`memadv.executors.slurm.submit` (submission, reattachment) and :mod:`memadv.executors.slurm.accounting`
(job states); this module only dispatches, and :func:`task_states` reports each task's phase
without Slurm's state names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from memadv.errors import ConfigError, UnknownChoiceError
from memadv.executors.base import EXECUTORS, ExecutorConfig, resolve_executor
from memadv.executors.paths import ExecutorPaths
from memadv.executors.local import run_inprocess, run_local, worker_threads
from memadv.executors.slurm.accounting import job_states, task_phase


def run_tasks(task: Callable[[int], Any], ids: Sequence[int], cfg: ExecutorConfig, folder: str | Path, *,
              desc: str = "tasks", progress: bool = True) -> list[Any]:
    """Call ``task(i)`` once for every ``i`` in ``ids`` on the executor of ``cfg``; results in ids order.

    Raises :class:`TasksFailedError` (after every task has finished or failed) if any task failed.
    """
    ids = [int(i) for i in ids]
    cfg = resolve_executor(cfg, len(ids))  # auto: callers that know their tasks resolve it first
    if len(set(ids)) != len(ids):
        raise ConfigError(f"run_tasks: duplicate task ids in {desc}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not ids:
        return []
    if cfg.executor in ("inprocess", "local"):
        # a failure log says "the last attempt failed" (task_states): a new attempt clears its own old one
        for i in ids:
            ExecutorPaths(folder).task_log(i).unlink(missing_ok=True)
    if cfg.executor == "inprocess":
        return run_inprocess(task, ids, folder, desc, progress)
    if cfg.executor == "local":
        return run_local(task, ids, cfg, folder, desc, progress)
    if cfg.executor == "slurm":
        # imported here: memadv.executors.slurm.submit imports memadv.executors.base, and a Slurm job that
        # unpickles its task imports memadv.executors.slurm.submit first (a cycle at import time otherwise)
        from memadv.executors.slurm.submit import run_slurm

        return run_slurm(task, ids, cfg, folder, desc, progress)
    raise UnknownChoiceError("executor", cfg.executor, EXECUTORS)


def max_tasks(cfg: ExecutorConfig) -> int | None:
    """How many tasks one :func:`run_tasks` call may submit: Slurm's MaxArraySize for ``slurm`` (None
    when ``scontrol`` does not say), None (no limit) for the other executors."""
    if cfg.executor != "slurm":
        return None
    from memadv.executors.slurm.submit import max_array_size  # imported here: see run_tasks

    return max_array_size()


def task_threads(cfg: ExecutorConfig) -> int | None:
    """Torch threads each task of ``cfg`` gets: local, the CPUs shared out among the workers (each
    worker is also started with that limit, :func:`memadv.executors.local.init_worker`); slurm, the
    job's ``--cpus-per-task``; inprocess, None (this process's setting stays)."""
    if cfg.executor == "local":
        return worker_threads(cfg.workers)
    if cfg.executor == "slurm":
        return cfg.cpus_per_task
    return None


def task_states(folder: str | Path) -> dict[int, str]:
    """Task id -> ``running``, ``failed``, ``done`` or ``other``: Slurm's state (``jobs.json`` +
    ``sacct``) where it knows the task, else ``failed`` where the in-process or local executor left
    the task's failure log (``logs/task-<id>.err``, :func:`memadv.executors.base.record_failure`).
    A failure log stays after a later success, so callers check their task's output first.
    Raises :class:`memadv.errors.MemadvError` if ``folder/jobs.json`` is unreadable."""
    states = {i: task_phase(state) for i, state in job_states(folder).items()}
    for i in ExecutorPaths(folder).failed_task_ids():
        states.setdefault(i, "failed")
    return states
