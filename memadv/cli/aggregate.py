"""``memadv aggregate``: rebuild the scores of a run from its shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_dask


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="rebuild scores/ from the finished shards of a run",
                       description="Aggregate the shards of an estimate into scores/mem.parquet, infl.parquet and "
                                   "test_acc.parquet (Eqs. 1-2 with standard errors). Safe to run at any time.")
    p.add_argument("run", type=Path, help="run directory (holding estimate/spec.json)")
    p.add_argument("--allow-partial", action="store_true",
                   help="aggregate an unfinished run from the shards that exist (scores marked complete=false)")
    add_dask(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.estimate.aggregate import aggregate
    from memadv.slurm.dask_cluster import dask_scheduler

    with dask_scheduler(args.dask_cluster):
        scores = aggregate(args.run, allow_partial=args.allow_partial)
    note = "" if scores.meta["complete"] else f" (partial: {scores.meta['missing_shards']} shards missing)"
    print(f"{args.run}/scores: {scores.meta['n_models']} models{note}")
    return 0
