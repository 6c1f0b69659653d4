"""``memadv pipeline``: every stage on one dataset, resumable, skipping finished stages."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, add_progress, config_from_args
from memadv.estimate.config import EstimateConfig
from memadv.slurm.executors import ExecutorConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="the whole chain on one dataset: estimate, splits, figures",
                       description="Run every stage on one dataset with its defaults: estimate (scores), "
                                   "splits, score figures. Each stage is skipped when its outputs are complete "
                                   "and newer than its inputs; re-running after a kill finishes the work.")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    add_config_file(p)
    add_progress(p)
    add_config_arguments(p, EstimateConfig)
    add_config_arguments(p, ExecutorConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.analysis.pipeline import run_pipeline

    cfg = config_from_args(EstimateConfig, args, "estimate")
    executor = config_from_args(ExecutorConfig, args, "executor")
    run_pipeline(cfg, args.out, executor, progress=args.progress)
    return 0
