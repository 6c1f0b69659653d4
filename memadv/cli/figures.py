"""``memadv figures KIND RUN``: figures and tables of one kind for a run directory.

Each kind is implemented in ``memadv.analysis`` by a module exposing ``make_figures(run_dir: Path, cfg)
-> list[Path]``; its options are a config of :mod:`memadv.analysis.figure_configs` (command line, or
TOML table ``[figures-KIND]``), and ``make_figures`` only maps them onto the module's typed figure
function (``bat_figures``, ``ablation_figures``, ...), which the pipeline calls directly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
from pathlib import Path

from memadv.analysis.figure_configs import FIGURE_CONFIGS
from memadv.cli.common import add_config_arguments, add_config_file, check_config_file, config_from_args
from memadv.files.atomic import marked_output
from memadv.layout import require_run_dir

# kind -> (module, one-line description)
KINDS: dict[str, tuple[str, str]] = {
    "scores": ("memadv.analysis.score_figures", "memorization histogram (Fig. 7), example grids (Fig. 6), high-influence pairs (Fig. 8)"),
    "bat": ("memadv.analysis.bat_tables", "Table 2 and Table 4 (Markdown + CSV), Fig. 4 accuracy curves"),
    "ablation": ("memadv.analysis.ablation", "Fig. 5: alpha x beta grid of BAT"),
    "sec31": ("memadv.analysis.sec31", "Section 3.1: accuracy on atypical sets (Figs. 1, 9-14)"),
    "sec32": ("memadv.analysis.sec32", "Section 3.2: typical-set accuracy, cosine distance (Figs. 2, 15-23, Table 1)"),
    "report": ("memadv.analysis.report", "report/report.md and the self-contained report/report.html with the claims"),
}


def register(sub: argparse._SubParsersAction) -> None:
    mods = {kind: importlib.import_module(module) for kind, (module, _) in KINDS.items()}
    p = sub.add_parser("figures", help="figures and tables of a run",
                       description="Make figures (PNG + PDF) and tables (Markdown + CSV) for a run directory.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, mod in mods.items():
        kp = kinds.add_parser(kind, help=KINDS[kind][1], description=KINDS[kind][1])
        kp.add_argument("run", type=Path, help="run directory (runs/<name> or a folder inside it, as the kind says)")
        add_config_file(kp)
        add_config_arguments(kp, FIGURE_CONFIGS[kind])
        kp.set_defaults(func=run, module=mod)


def run(args: argparse.Namespace) -> int:
    require_run_dir(args.run)
    table = f"figures-{args.kind}"
    check_config_file(args.config, (table,))
    cfg = config_from_args(FIGURE_CONFIGS[args.kind], args, table)
    out = getattr(cfg, "out", None)
    with marked_output(Path(out), "figures") if out is not None else contextlib.nullcontext():
        paths = args.module.make_figures(args.run, cfg)
    for path in paths:
        print(path)
    return 0
