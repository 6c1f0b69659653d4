"""``memadv aggregate``: rebuild the scores of a run from its shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, check_config_file, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.aggregate import AggregateConfig
    from memadv.executors.slurm.dask_cluster import DaskConfig

    p = sub.add_parser("aggregate", help="rebuild scores/ from the finished shards of a run",
                       description="Aggregate the shards of an estimate into scores/mem.parquet, infl.parquet and "
                                   "test_acc.parquet (Eqs. 1-2 with standard errors). Safe to run at any time, and "
                                   "again with another --keep rule: the score folder is replaced as a whole.")
    p.add_argument("run", type=Path, help="run directory (holding estimate/spec.json)")
    add_config_file(p)
    add_config_arguments(p, AggregateConfig)
    add_config_arguments(p, AdjustConfig)
    add_config_arguments(p, DaskConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.aggregate import AggregateConfig, aggregate
    from memadv.estimate.proxies import agreement_lines
    from memadv.executors.slurm.dask_cluster import DaskConfig

    check_config_file(args.config, ("aggregate", "dask"))
    cfg = config_from_args(AggregateConfig, args, "aggregate")
    adjust = config_from_args(AdjustConfig, args, "aggregate")
    dask = config_from_args(DaskConfig, args, "dask")
    with dask.scheduler()():
        scores = aggregate(args.run, allow_partial=cfg.allow_partial, keep=cfg.keep,
                           keep_threshold=cfg.keep_threshold, cross_class_threshold=cfg.cross_class(),
                           data_root=cfg.data_root, max_pairs=cfg.max_pairs, adjust=adjust)
    note = "" if scores.meta["complete"] else f" (partial: {scores.meta['missing_shards']} shards missing)"
    print(f"{args.run}/scores: {scores.meta['n_models']} models, {len(scores.infl)} pairs kept "
          f"(--keep {scores.meta['infl_keep']}){note}"
          + ("" if adjust.mem_adjust == "none" else f"; mem_adj by --mem-adjust {adjust.mem_adjust}"))
    print("\n".join(agreement_lines(scores.meta["proxies"], f"{args.run}/scores")))
    return 0
