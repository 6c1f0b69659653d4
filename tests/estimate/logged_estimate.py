"""``python logged_estimate.py RUN LOG [N]``: a tiny digits estimate of RUN (8 models, 4 shards) that
appends each shard's first model id to LOG when it starts training it; with N, it first waits until
N such processes are ready (files in LOG's folder), so that they overlap. Used by the claim tests of
two processes on one run (tests/estimate/test_jobs.py, tests/slurm/test_slurm_faults.py)."""

import os
import sys
import time

import memadv.estimate.shards as shards
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.executors import ExecutorConfig

CONFIG = dict(dataset="digits", models=8, models_per_shard=2, epochs=1, batch_size=256, full_models=0)


def main(run: str, log: str, together: int = 1) -> None:
    original = shards.train_models

    def logged(cfg, dataset, model_ids, **kw):
        with open(log, "a") as f:
            f.write(f"{model_ids[0]}\n")
        time.sleep(1.5)  # long enough for the processes to overlap
        return original(cfg, dataset, model_ids, **kw)

    shards.train_models = logged
    ready = os.path.join(os.path.dirname(log), "ready")
    os.makedirs(ready, exist_ok=True)
    open(os.path.join(ready, str(os.getpid())), "w").close()
    while len(os.listdir(ready)) < together:
        time.sleep(0.1)
    # in this process, where the patch above is (the default, auto, would train in spawned workers)
    estimate(EstimateConfig(**CONFIG), run, ExecutorConfig(executor="inprocess"), progress=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
