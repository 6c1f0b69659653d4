"""``memadv train``: one adversarial training run (BAT or a baseline), or a sweep of them."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.train import train
from memadv.bat.methods import METHODS
from memadv.bat.train_config import TrainConfig
from memadv.cli.common import add_config_file, check_config_file
from memadv.config import add_config_arguments, build_config
from memadv.files.atomic import marked_output
from memadv.errors import ConfigError
from memadv.layout import RunLayout
from memadv.executors import ExecutorConfig, resolve_executor

DESCRIPTION = f"""\
Train with {', '.join(METHODS)} (paper Sec. 4-5: SGD, lr 0.1 x0.1 at epochs 80 and 120 of 160,
momentum 0.9, weight decay 5e-4; small-data defaults for the embedded sets). Every epoch (or every
--eval-every) clean and PGD-20 accuracy on all / typical / atypical train and test examples go to
OUT/<run>/metrics.parquet; last.pt, best_adv.pt and best_clean.pt are kept, and after the last epoch
final.parquet holds clean / FGSM / PGD-20 / CW / AutoAttack accuracy (Table 4). Re-running the same
command resumes a killed run. BAT needs --scores; typical/atypical subsets come from --splits (default:
the splits/ folder beside --scores). With --executor local or slurm the run is one task of that
executor (a worker process, or a Slurm job array of one); the default, auto, trains in this process.

With --sweep FILE every run of a TOML sweep file (methods x hyper-parameters x seeds, see
memadv.experiments.sweep) is one task of the chosen executor (auto = inprocess, local, slurm); only --out, --device
and --data-root may accompany it. Re-running a sweep finishes what is missing."""

# options that may accompany --sweep (they describe the machine or the output, not the runs)
SWEEP_OVERRIDES = ("device", "data_root", "progress")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="adversarial training: BAT, PGD-AT, TRADES, MART, GAIRAT, ERM (Sec. 4-5)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="parent folder of the run folders (default: runs/<dataset>/train)")
    add_config_file(p)
    p.add_argument("--sweep", type=Path, default=None, metavar="FILE",
                   help="TOML sweep file: run every method x hyper-parameter x seed it lists as a task")
    add_config_arguments(p, TrainConfig)
    add_config_arguments(p, ObjectiveConfig)
    add_config_arguments(p, ExecutorConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = vars(args)
    check_config_file(args.config, ("train", "objective", "executor"))
    if args.sweep is not None:
        return _run_sweep(args, given)
    cfg = build_config(TrainConfig, given, args.config, section="train")
    ocfg = build_config(ObjectiveConfig, given, args.config, section="objective")
    ecfg = build_config(ExecutorConfig, given, args.config, section="executor")
    out = args.out if args.out is not None else RunLayout(Path("runs") / cfg.dataset).table_train
    with marked_output(out, "train"):  # refuses a file or a folder that memadv did not make
        if resolve_executor(ecfg, 1).executor == "inprocess":  # auto: one run trains in this process
            run_dir = train(cfg, out, ocfg)
        else:  # one task on a local worker or a Slurm array of one
            from memadv.experiments.sweep import run_single
            run_dir = run_single(cfg, ocfg, out, ecfg, progress=given.get("progress", True))
    print(run_dir)
    return 0


def _run_sweep(args: argparse.Namespace, given: dict) -> int:
    import dataclasses

    from memadv.experiments.sweep import run_sweep

    run_options = {f.name for cls in (TrainConfig, ObjectiveConfig) for f in dataclasses.fields(cls)}
    extra = sorted(k for k in given if k in run_options and k not in SWEEP_OVERRIDES)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise ConfigError(f"--sweep defines the runs; {flags} belong in the sweep file (only --out, --device, "
                          f"--data-root, --progress and executor options may accompany it)")
    ecfg = build_config(ExecutorConfig, given, args.config, section="executor")
    overrides = {k: given[k] for k in ("device", "data_root") if k in given}
    progress = given.get("progress", True)
    out = args.out
    with marked_output(out, "train") if out is not None else contextlib.nullcontext():
        for run_dir in run_sweep(args.sweep, ecfg, out, overrides, progress=progress):
            print(run_dir)
    return 0
