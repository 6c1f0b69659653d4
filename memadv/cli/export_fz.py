"""``memadv export-fz RUN --out FILE.npz``: memadv scores in the released ``cifar100_infl_matrix.npz`` layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, check_config_file, config_from_args
from memadv.interop.fz_export import ExportFzConfig, export_fz
from memadv.scores.schema import read_scores
from memadv.errors import IncompleteRunError, SchemaError
from memadv.layout import require_run_dir

DESCRIPTION = """\
Write a run's scores in the layout of the released cifar100_infl_matrix.npz (keys tr_mem, tr_labels, tt_labels,
and per class K: infl_matrix_class{K} (n_train_K x n_test_K), tr_classidx_{K}, tt_classidx_{K}), so code written
for the released files reads memadv's estimates. Only same-class influences are exported (the layout has no
cross-class pairs); same-class pairs missing from infl.parquet become NaN. Standard errors are not exported."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-fz", help="write a run's scores in the released Feldman & Zhang .npz layout",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory holding scores/ (or the scores folder)")
    p.add_argument("--out", type=Path, required=True, help="output .npz file (written atomically)")
    add_config_file(p)
    add_config_arguments(p, ExportFzConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_run_dir(args.run)
    check_config_file(args.config, ("export-fz",))
    cfg = config_from_args(ExportFzConfig, args, "export-fz")
    if args.out.suffix != ".npz":
        raise SchemaError(f"--out must name a .npz file, got {str(args.out)!r}")
    scores = read_scores(args.run)
    if scores.meta.get("complete", True) is False and not cfg.allow_partial:
        raise IncompleteRunError("scores were aggregated from an unfinished estimate (missing shards); finish it "
                                 "or pass --allow-partial")
    missing = export_fz(scores, args.out)
    if missing:
        print(f"memadv: warning: {missing} same-class pairs are missing from infl.parquet and exported as NaN",
              file=sys.stderr)
    print(f"wrote {args.out}")
    return 0
