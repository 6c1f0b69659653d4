"""``memadv splits RUN``: atypical/typical split files from a run's scores (paper Secs. 3.1-3.2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memadv.cli.common import add_config_file, check_config_file
from memadv.config import add_config_arguments, build_config
from memadv.splits.rules import SET_KEYS, SplitConfig
from memadv.splits.files import make_splits
from memadv.layout import require_run_dir

DESCRIPTION = """\
Make the atypical/typical split files of a run from its scores (RUN/scores/), as the paper defines them:
  D_atyp  = {i in D : mem(i) > 0.15}              D_typ = {i in D : mem(i) < 0.02}
  D'_atyp = {j in D' : infl(i, j) > 0.15 for some i in D_atyp}
  D'_typ  = D' - {j : infl(i, j) > 0.02 for some i in D_atyp} - {j : P(F(x'_j) = y'_j) < 0.8}
Influence conditions use same-class pairs by default (the paper's definition of a high-influence pair);
--pairs any-class uses every stored pair; scores whose stored pairs (memadv aggregate --keep) cannot
answer a definition are refused. --significance z compares Newcombe-Wilson interval bounds with the
thresholds. --error-control fdr:0.05 (or fdr-by:A, fwer:A) labels every example atypical / typical /
in between / undecided with the error controlled over all examples; the sets are the decided labels.
Prints the share decided and the models projected to decide 90/95/99% of each rule (docs/splits.md). Prints each set's size, size per class, the examples each rule
removed and how each threshold compares with the run's standard errors (the noise floor).
Writes RUN/splits/: splits.parquet, one CSV of ids per set, summary.md (all or nothing)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("splits", help="atypical/typical split files from a run's scores (Secs. 3.1-3.2)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory holding scores/ (runs/<name>)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/splits)")
    add_config_file(p)
    add_config_arguments(p, SplitConfig)
    p.set_defaults(func=run)


def _print_report(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    print(f"{'set':<16}{'size':>8}  per class")
    for key in SET_KEYS:
        pc = result.per_class.loc[key]
        if len(pc) <= 20:
            per = " ".join(f"{c}:{int(v)}" for c, v in pc.items())
        else:
            per = f"min {int(pc.min())}, median {float(pc.median()):g}, max {int(pc.max())} over {len(pc)} classes"
        print(f"{key:<16}{result.sets[key].size:>8}  {per}")
    print("rules:")
    for r in result.rules:
        print(f"  {r['set']:<15} {r['rule']}: removed {r['removed']} of {r['considered']}"
              + ("" if r["kept"] is None else f", kept {r['kept']}"))
    if result.labels is not None:
        print(f"labels (error control {result.control}):")
        for rule, part in result.labels.groupby("rule", sort=False):
            counts = part["decision"].value_counts()
            print(f"  {rule:<15} " + " ".join(f"{k}:{int(v)}" for k, v in counts.items()))
        print_decided(result.decided)
    print("noise floor:")
    for r in result.noise:
        if r["se"] is None:
            print(f"  {r['rule']:<32} threshold {r['threshold']}: SE {r['note'] or 'n/a'}"
                  + (f" ({r['zero_se']:.0%} with SE 0)" if r.get("zero_se") else ""))
            continue
        line = f"  {r['rule']:<32} threshold {r['threshold']}: median SE {r['se']:.3g}"
        if r["ratio"] is not None:
            line += f", threshold = {r['ratio']:.2f} SE"
        if r.get("zero_se"):
            line += f" ({r['zero_se']:.0%} with SE 0)"
        if r["p_noise"] is not None:
            line += (f"; {r['comparisons']:.3g} comparisons per test example, noise alone would cross it for "
                     f"{r['p_noise']:.1%} of them")
        print(line)
    for w in result.warnings:
        print(f"memadv: warning: {w}", file=sys.stderr)
    print(f"wrote {out}")


def print_decided(decided: list[dict]) -> None:
    """The models-needed table (memadv.splits.labels.decided_table): also ``memadv status``'s."""
    def fmt(v: object) -> str:
        return "-" if v is None else f"{v:,}"
    if not decided:
        return
    print(f"  {'rule':<15} {'control':<14} {'models':>8} {'decided now':>12} {'for 90%':>9} {'for 95%':>9} {'for 99%':>9}")
    for d in decided:
        print(f"  {d['rule']:<15} {d['control']:<14} {fmt(d['models']):>8} {d['decided']:>12.1%} "
              f"{fmt(d['models_90']):>9} {fmt(d['models_95']):>9} {fmt(d['models_99']):>9}")


def run(args: argparse.Namespace) -> int:
    check_config_file(args.config, ("splits",))
    cfg = build_config(SplitConfig, args, args.config, section="splits")
    require_run_dir(args.run)
    result, out = make_splits(args.run, cfg, args.out)
    _print_report(result, out)
    return 0
