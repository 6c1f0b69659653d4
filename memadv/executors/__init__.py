"""Run one idempotent task per id: in this process, in local worker processes, or as a Slurm job
array (:func:`run_tasks`; the contract is in :mod:`memadv.executors.run`)."""

from memadv.executors.base import EXECUTORS, ExecutorConfig, TasksFailedError, TooManyTasksError, resolve_executor
from memadv.executors.run import max_tasks, run_tasks, task_states, task_threads

__all__ = ["EXECUTORS", "ExecutorConfig", "TasksFailedError", "TooManyTasksError", "max_tasks", "resolve_executor",
           "run_tasks", "task_states", "task_threads"]
