"""``memadv aggregate``: rebuild the scores of a run from its shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_config_file, add_dask, check_config_file, config_from_args, dask_factory


def _unit(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return v


def _unit_or_none(text: str) -> float | str | None:
    # "spec" is the default: the run's own setting, resolved by aggregate().
    return text if text == "spec" else None if text == "none" else _unit(text)


def register(sub: argparse._SubParsersAction) -> None:
    from memadv.config import add_config_arguments
    from memadv.data.scores import KEEP_CHOICES
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.aggregate import AUTO_MAX_SAME_CLASS_PAIRS, DEFAULT_KEEP_THRESHOLD, MAX_KEPT_PAIRS

    p = sub.add_parser("aggregate", help="rebuild scores/ from the finished shards of a run",
                       description="Aggregate the shards of an estimate into scores/mem.parquet, infl.parquet and "
                                   "test_acc.parquet (Eqs. 1-2 with standard errors). Safe to run at any time, and "
                                   "again with another --keep rule: the score folder is replaced as a whole.")
    p.add_argument("run", type=Path, help="run directory (holding estimate/spec.json)")
    p.add_argument("--allow-partial", action="store_true",
                   help="aggregate an unfinished run from the shards that exist (scores marked complete=false)")
    p.add_argument("--keep", default="auto", choices=KEEP_CHOICES,
                   help="which (train, test) pairs infl.parquet keeps: same-class = every same-class pair plus "
                        "cross-class pairs with |infl| >= --cross-class-threshold; threshold = pairs of any class "
                        "with |infl| >= --keep-threshold; all = every pair; auto (default) = same-class when the "
                        f"data set has at most {AUTO_MAX_SAME_CLASS_PAIRS:,} same-class pairs, else threshold")
    p.add_argument("--keep-threshold", type=_unit, default=DEFAULT_KEEP_THRESHOLD,
                   help=f"|infl| kept by --keep threshold (default {DEFAULT_KEEP_THRESHOLD}: the lowest threshold of "
                        "the paper's split definitions, Sec. 3.2)")
    p.add_argument("--cross-class-threshold", type=_unit_or_none, default="spec",
                   help="|infl| of the cross-class pairs kept by --keep same-class ('none': no cross-class pairs; "
                        "default: the run's setting)")
    p.add_argument("--data-root", default=None,
                   help="where the data set lies now, if it moved since the estimate (same data: fingerprint checked)")
    p.add_argument("--max-pairs", type=_count, default=MAX_KEPT_PAIRS,
                   help=f"refuse (one-line error) to keep more influence pairs than this (default {MAX_KEPT_PAIRS:,}: "
                        "about 5 GiB at the aggregation peak), the memory bound of aggregation")
    add_config_file(p)
    add_config_arguments(p, AdjustConfig)
    add_dask(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.aggregate import aggregate
    from memadv.estimate.proxies import agreement_lines
    check_config_file(args.config, ("aggregate",))
    adjust = config_from_args(AdjustConfig, args, "aggregate")
    with dask_factory(args)():
        scores = aggregate(args.run, allow_partial=args.allow_partial, keep=args.keep,
                           keep_threshold=args.keep_threshold, cross_class_threshold=args.cross_class_threshold,
                           data_root=args.data_root, max_pairs=args.max_pairs, adjust=adjust)
    note = "" if scores.meta["complete"] else f" (partial: {scores.meta['missing_shards']} shards missing)"
    print(f"{args.run}/scores: {scores.meta['n_models']} models, {len(scores.infl)} pairs kept "
          f"(--keep {scores.meta['infl_keep']}){note}"
          + ("" if adjust.mem_adjust == "none" else f"; mem_adj by --mem-adjust {adjust.mem_adjust}"))
    print("\n".join(agreement_lines(scores.meta["proxies"], f"{args.run}/scores")))
    return 0
