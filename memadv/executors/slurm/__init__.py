"""Slurm: job-array submission through submitit (:mod:`~memadv.executors.slurm.submit`), job states
(:mod:`~memadv.executors.slurm.accounting`), ``--sbatch-extra`` parsing (:mod:`~memadv.executors.slurm.options`) and dask
schedulers (:mod:`~memadv.executors.slurm.dask_cluster`). Code outside this package runs tasks through the
executor-neutral :mod:`memadv.executors` (``run_tasks``, ``task_states``).

``dev-cluster.sh`` (beside this file) starts a real single-node Slurm cluster for tests.
This ``__init__`` imports nothing of memadv, so that :mod:`memadv.executors` may import
:mod:`memadv.executors.slurm.options` without an import cycle through the package.
"""

from pathlib import Path

DEV_CLUSTER_SCRIPT = Path(__file__).with_name("dev-cluster.sh")

__all__ = ["DEV_CLUSTER_SCRIPT"]
