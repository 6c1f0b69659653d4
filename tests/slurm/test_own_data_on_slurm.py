"""Issue 20: an estimate of a user's own ImageFolder tree on Slurm: each job reads the run's decode
cache (decoded once, by the submitting process) and the scores equal the in-process ones."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from memadv.data import own_images
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.executors import ExecutorConfig

pytestmark = pytest.mark.slurm


def test_own_imagefolder_estimate_on_slurm_equals_inprocess(slurm_cluster, slurm_tmp):
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (slurm_tmp / "data" / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(slurm_tmp / "data" / split / c / f"{k}.png")
    own_images._MEMO.clear()
    cfg = EstimateConfig(dataset="imagefolder", data_root=str(slurm_tmp / "data"), net="mlp", models=4,
                         models_per_shard=2, epochs=2, batch_size=8, full_models=0)
    on_slurm = estimate(cfg, slurm_tmp / "slurm", ExecutorConfig(executor="slurm", cpus_per_task=1, timeout_min=10),
                        progress=False, scheduler="sync")
    assert len(list((slurm_tmp / "slurm" / "data-cache").glob("own-data-*.npz"))) == 1
    in_process = estimate(cfg, slurm_tmp / "local", ExecutorConfig(executor="inprocess"), progress=False,
                          scheduler="sync")
    for table in ("mem", "infl", "test_acc"):
        pd.testing.assert_frame_equal(getattr(on_slurm, table), getattr(in_process, table), check_exact=True)
