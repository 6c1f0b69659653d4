"""``memadv pipeline``: every stage on one dataset, resumable, skipping finished stages."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import (add_config_arguments, add_config_file, add_progress, check_config_file,
                               config_from_args)
from memadv.files.atomic import marked_output
from memadv.estimate.config import EstimateConfig
from memadv.executors import ExecutorConfig


def register(sub: argparse._SubParsersAction) -> None:
    from memadv.experiments.pipeline_config import PipelineConfig

    p = sub.add_parser("pipeline", help="the whole chain on one dataset: estimate, splits, Sec. 3.1/3.2, BAT, report",
                       description="Run every stage on one dataset with its defaults: estimate (scores), splits, "
                                   "score figures, Section 3.1, Section 3.2 (+ Fig. 3), the BAT table, the ablation "
                                   "grid and the report (RUN/report/report.md and report.html). Each stage is "
                                   "skipped when its outputs are complete, newer than its inputs and made with the "
                                   "same settings; re-running after a kill finishes the work. Training jobs run on "
                                   "the chosen executor (in-process by default, --executor slurm for a cluster).")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    add_config_file(p)
    add_progress(p)
    add_config_arguments(p, PipelineConfig)
    add_config_arguments(p, EstimateConfig)
    add_config_arguments(p, ExecutorConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.experiments.pipeline import run_pipeline
    from memadv.experiments.pipeline_config import PipelineConfig

    check_config_file(args.config, ("pipeline", "estimate", "executor"))
    cfg = config_from_args(EstimateConfig, args, "estimate")
    executor = config_from_args(ExecutorConfig, args, "executor")
    pcfg = config_from_args(PipelineConfig, args, "pipeline")
    with marked_output(args.out, "run"):  # refuses a file or a folder that is not a memadv run
        run_pipeline(cfg, args.out, executor, progress=args.progress, pcfg=pcfg)
    return 0
