"""``memadv estimate``: train M models on random subsets and write memorization/influence scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, add_progress, check_config_file, config_from_args
from memadv.executors.slurm.dask_cluster import DaskConfig
from memadv.files.atomic import marked_output
from memadv.splits.rules import SplitConfig
from memadv.estimate.config import EstimateConfig
from memadv.estimate.until_decided import DecideConfig
from memadv.executors import ExecutorConfig
from memadv.paper_thresholds import MEM_ATYPICAL, MEM_TYPICAL

EXAMPLES = """examples:
  memadv estimate --dataset digits --out runs/digits
  memadv estimate --dataset synthetic-longtail --out runs/lt
  memadv estimate --dataset fashion-mnist --out runs/fm        # reads /usr/share/datasets/fashion-mnist
                                                               # (apt-get install dataset-fashion-mnist)
  memadv estimate --dataset fashion-mnist --per-class 1000 --out runs/fm1k   # first 1,000 per class
  memadv estimate --dataset fashion-mnist --models 16 --full-models 0 --out runs/fmq  # proxies in minutes
  memadv estimate --dataset cifar100 --data-root /datasets --net resnet18 --models 4000 \\
      --models-per-shard 8 --executor slurm --partition gpu --gpus-per-task 1 --timeout-min 240 --out runs/c100

  memadv estimate --dataset digits --models 200 --until-decided 0.95 --max-models 3200 \\
      --error-control fdr:0.05 --out runs/digits-seq   # doubling looks until 95% of every split rule is decided

Re-running the same command resumes: finished shards are skipped. --models may be raised later: only the
new shards train. Outputs: OUT/estimate/spec.json, OUT/estimate/shards/shard-NNNNN.parquet,
OUT/scores/{mem,infl,test_acc}.parquet and OUT/scores/proxies.parquet (free training-time proxies of
mem; a --models 16 run gives a proxy ranking in minutes).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate memorization and influence scores (Eqs. 1-2)",
                       description="Subset-sampling estimator of Feldman & Zhang: train many ERM models, each "
                                   "on a random subset, and estimate mem (Eq. 1) and infl (Eq. 2).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    add_config_file(p)
    add_progress(p)
    add_config_arguments(p, DaskConfig)
    add_config_arguments(p, EstimateConfig)
    add_config_arguments(p, DecideConfig)
    add_config_arguments(p, ExecutorConfig)
    # the question --until-decided answers, as `memadv splits` asks it
    add_config_arguments(p, SplitConfig, skip=("allow_partial",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.estimate.proxies import agreement_lines
    from memadv.scores.schema import read_scores
    from memadv.estimate.run import estimate
    from memadv.estimate.until_decided import estimate_until_decided

    check_config_file(args.config, ("estimate", "executor", "splits", "dask"))
    cfg = config_from_args(EstimateConfig, args, "estimate")
    decide = config_from_args(DecideConfig, args, "estimate")
    split_cfg = config_from_args(SplitConfig, args, "splits")
    executor = config_from_args(ExecutorConfig, args, "executor")
    # checked now; the cluster starts after the shards, for aggregation only
    scheduler = config_from_args(DaskConfig, args, "dask").scheduler()

    def run_look(c: EstimateConfig):  # type: ignore[no-untyped-def]
        return estimate(c, args.out, executor, progress=args.progress, aggregation_scheduler=scheduler)
    with marked_output(args.out, "run"):  # refuses a file or a folder that is not a memadv run
        if decide.until_decided is None:
            scores = run_look(cfg)
        else:
            rec = estimate_until_decided(cfg, decide, split_cfg, args.out, run_look)
            scores = read_scores(args.out)
            print(f"{args.out}: stopped at {rec['stopped']} models after {len(rec['looks'])} of {len(rec['plan'])} "
                  f"planned looks {rec['plan']}; `memadv splits {args.out} --error-control {rec['error_control']}` "
                  f"spends alpha / {len(rec['plan'])} per look")
    mem = scores.mem["mem"]
    print(f"{args.out}/scores: {len(scores.mem)} training examples, {len(scores.infl)} pairs, "
          f"{scores.meta['n_models']} models; mem > {MEM_ATYPICAL}: {(mem > MEM_ATYPICAL).mean():.1%}, "
          f"mem < {MEM_TYPICAL}: {(mem < MEM_TYPICAL).mean():.1%}")
    print("\n".join(agreement_lines(scores.meta["proxies"], f"{args.out}/scores")))
    return 0
