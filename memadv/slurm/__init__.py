"""Executors (in-process, local processes, Slurm job arrays through submitit) and dask schedulers.

* :func:`run_tasks` runs one idempotent task per id on the executor chosen by :class:`ExecutorConfig`;
  :func:`job_states` reports the Slurm state of each task of a submission (for ``memadv status``);
  :func:`sbatch_script` shows the sbatch script without submitting anything.
* :func:`memadv.slurm.dask_cluster.dask_scheduler` picks the dask scheduler for aggregation.
* ``dev-cluster.sh`` (beside this file) starts a real single-node Slurm cluster for tests.
"""

from pathlib import Path

from memadv.slurm.executors import (
    EXECUTORS,
    ExecutorConfig,
    TasksFailedError,
    job_states,
    parse_sbatch_extra,
    read_jobs,
    run_tasks,
    sbatch_script,
    slurm_parameters,
)

DEV_CLUSTER_SCRIPT = Path(__file__).with_name("dev-cluster.sh")

__all__ = ["EXECUTORS", "ExecutorConfig", "TasksFailedError", "job_states", "parse_sbatch_extra", "read_jobs",
           "run_tasks", "sbatch_script", "slurm_parameters", "DEV_CLUSTER_SCRIPT"]
