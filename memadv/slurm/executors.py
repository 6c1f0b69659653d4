"""Transition re-exports: the executors moved to :mod:`memadv.executors` (dispatch, in-process and
local) and :mod:`memadv.slurm.submit` / :mod:`memadv.slurm.accounting` / :mod:`memadv.slurm.options`
(Slurm). Other branches still import these names from here; new code imports them from there."""

from memadv.executors.base import EXECUTORS, ExecutorConfig, TasksFailedError
from memadv.executors.run import run_tasks
from memadv.slurm.accounting import ACTIVE_STATES, JOBS_FILE, job_states, read_jobs
from memadv.slurm.options import parse_sbatch_extra
from memadv.slurm.submit import sbatch_script, slurm_parameters

__all__ = ["EXECUTORS", "ExecutorConfig", "TasksFailedError", "run_tasks", "sbatch_script", "slurm_parameters",
           "parse_sbatch_extra", "job_states", "read_jobs", "ACTIVE_STATES", "JOBS_FILE"]
