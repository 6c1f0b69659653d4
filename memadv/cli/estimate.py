"""``memadv estimate``: train M models on random subsets and write memorization/influence scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import (add_config_arguments, add_config_file, add_dask, add_progress, check_config_file,
                               config_from_args, dask_factory)
from memadv.data.atomic import claimed_output
from memadv.estimate.config import EstimateConfig
from memadv.executors import ExecutorConfig

EXAMPLES = """examples:
  memadv estimate --dataset digits --out runs/digits
  memadv estimate --dataset synthetic-longtail --out runs/lt
  memadv estimate --dataset fashion-mnist --out runs/fm        # reads /usr/share/datasets/fashion-mnist
                                                               # (apt-get install dataset-fashion-mnist)
  memadv estimate --dataset fashion-mnist --per-class 1000 --out runs/fm1k   # first 1,000 per class
  memadv estimate --dataset fashion-mnist --models 16 --full-models 0 --out runs/fmq  # proxies in minutes
  memadv estimate --dataset cifar100 --data-root /datasets --net resnet18 --models 4000 \\
      --models-per-shard 8 --executor slurm --partition gpu --gpus-per-task 1 --timeout-min 240 --out runs/c100

Re-running the same command resumes: finished shards are skipped. Outputs: OUT/estimate/spec.json,
OUT/estimate/shards/shard-NNNNN.parquet, OUT/scores/{mem,infl,test_acc}.parquet and
OUT/scores/proxies.parquet (free training-time proxies of mem; a --models 16 run gives a proxy
ranking in minutes).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate memorization and influence scores (Eqs. 1-2)",
                       description="Subset-sampling estimator of Feldman & Zhang: train many ERM models, each "
                                   "on a random subset, and estimate mem (Eq. 1) and infl (Eq. 2).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    add_config_file(p)
    add_progress(p)
    add_dask(p)
    add_config_arguments(p, EstimateConfig)
    add_config_arguments(p, ExecutorConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.estimate.proxies import agreement_lines
    from memadv.estimate.run import estimate

    check_config_file(args.config, ("estimate", "executor"))
    cfg = config_from_args(EstimateConfig, args, "estimate")
    executor = config_from_args(ExecutorConfig, args, "executor")
    scheduler = dask_factory(args)  # checked now; the cluster starts after the shards, for aggregation only
    with claimed_output(args.out, "run"):  # refuses a file or a folder that is not a memadv run
        scores = estimate(cfg, args.out, executor, progress=args.progress, aggregation_scheduler=scheduler)
    mem = scores.mem["mem"]
    print(f"{args.out}/scores: {len(scores.mem)} training examples, {len(scores.infl)} pairs, "
          f"{scores.meta['n_models']} models; mem > 0.15: {(mem > 0.15).mean():.1%}, mem < 0.02: {(mem < 0.02).mean():.1%}")
    print("\n".join(agreement_lines(scores.meta["proxies"], f"{args.out}/scores")))
    return 0
