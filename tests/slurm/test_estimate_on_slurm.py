"""A real Slurm sweep: an estimate submitted as a submitit job array gives exactly the in-process scores."""

import pandas as pd
import pytest

from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate, estimate_status
from memadv.executors import ExecutorConfig
from memadv.slurm.accounting import read_jobs

pytestmark = pytest.mark.slurm


def test_estimate_sweep_on_slurm_equals_inprocess(slurm_cluster, slurm_tmp):
    cfg = EstimateConfig(dataset="digits", models=8, models_per_shard=2, epochs=2, batch_size=128)
    assert cfg.n_shards == 4
    on_slurm = estimate(cfg, slurm_tmp / "slurm", ExecutorConfig(executor="slurm", cpus_per_task=1, timeout_min=10),
                        progress=False, scheduler="sync")
    jobs = read_jobs(slurm_tmp / "slurm" / "estimate" / "jobs")
    assert jobs is not None and sorted(int(t) for t in jobs["tasks"]) == [0, 1, 2, 3]
    status = estimate_status(slurm_tmp / "slurm")
    assert status["done"] == 4 and not status["failed"]

    in_process = estimate(cfg, slurm_tmp / "local", ExecutorConfig(executor="inprocess"), progress=False,
                          scheduler="sync")
    for table in ("mem", "infl", "test_acc"):
        pd.testing.assert_frame_equal(getattr(on_slurm, table), getattr(in_process, table), check_exact=True)
    assert on_slurm.meta["fingerprint_train"] == in_process.meta["fingerprint_train"]
