"""Run one idempotent task per id: in this process, in local worker processes, or as a Slurm job
array (:func:`run_tasks`; the contract is in :mod:`memadv.executors.run`)."""

from memadv.executors.base import EXECUTORS, ExecutorConfig, TasksFailedError, resolve_executor
from memadv.executors.run import run_tasks, task_states, task_threads

__all__ = ["EXECUTORS", "ExecutorConfig", "TasksFailedError", "resolve_executor", "run_tasks", "task_states", "task_threads"]
