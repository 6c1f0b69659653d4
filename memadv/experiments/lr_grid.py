"""The Table 2 methods' learning-rate grid (``memadv pipeline --lr-grid``): choose each method's lr
on the validation slice, not on the test set.

The paper trains every method at lr 0.1 (Sec. 5.1, CIFAR); reference code for small grey-scale sets
uses 0.01 (TRADES' ``train_trades_mnist.py``), and at 0.1 a method can diverge on a small net (MART
did on the README's MLP study). With ``--lr-grid 0.1 0.01`` every Table 2 method (each BAT setting
apart) trains at the first seed once per learning rate, holding ``--val-fraction`` of every class
out; the lr with the highest validation PGD-20 accuracy at the last epoch is that method's lr for
all its Table 2 runs (ties: the first listed; a diverged run's NaN never wins). The choice and the
numbers behind it go to ``RUN/lrgrid/choice.json`` and the report. The test set plays no part.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from memadv.bat.runs import TrainingRun
from memadv.bat.selection import SELECTION_COLUMN
from memadv.files.atomic import write_json_atomic
from memadv.layout import RunLayout

CHOICE_COLUMN = SELECTION_COLUMN["best_val_adv"]  # validation PGD-20 accuracy (the metrics column)
RULE = ("highest validation PGD-20 accuracy at the last epoch (ties: the first lr listed); runs at the first "
        "seed, --val-fraction of every class held out")


def last_value(run: Path, column: str = CHOICE_COLUMN) -> float:
    """The last evaluated epoch's ``column`` of a finished grid run; NaN when absent or not finite."""
    metrics = TrainingRun(run).metrics() if TrainingRun(run).has_metrics() else None
    if metrics is None or column not in metrics or metrics.empty:
        return math.nan
    v = float(metrics[column].iloc[-1])
    return v if math.isfinite(v) else math.nan


def choose(values: dict[float, float]) -> float:
    """The lr of the highest value (NaN never wins; ties and all-NaN: the first lr listed)."""
    lrs = list(values)
    best = lrs[0]
    for lr in lrs[1:]:
        v, b = values[lr], values[best]
        if math.isfinite(v) and (not math.isfinite(b) or v > b):
            best = lr
    return best


def write_choice(run_dir: Path, table_runs: list[dict[str, Any]], grid: list[float],
                 grid_dirs: list[list[Path]]) -> list[dict[str, Any]]:
    """Choose one lr per Table 2 run (``grid_dirs[i]``: the i-th table run's grid run folders, in
    ``grid`` order) and write ``RUN/lrgrid/choice.json``; returns its ``choices``."""
    choices = []
    for run, dirs in zip(table_runs, grid_dirs):
        values = {float(lr): last_value(d) for lr, d in zip(grid, dirs)}
        clean = {float(lr): last_value(d, SELECTION_COLUMN["best_val_clean"]) for lr, d in zip(grid, dirs)}
        choices.append({"run": run, "lr": choose(values), "val_adv": {f"{k:g}": v for k, v in values.items()},
                        "val_clean": {f"{k:g}": v for k, v in clean.items()},
                        "grid_runs": [d.name for d in dirs]})
    write_json_atomic(RunLayout(run_dir).lr_choice, {"grid": [float(x) for x in grid], "rule": RULE,
                                                     "choices": choices})
    return choices


def read_choice(run_dir: Path, grid: list[float]) -> list[dict[str, Any]] | None:
    """The ``choices`` of ``choice.json`` when it was made with this ``grid``; None otherwise (no grid
    run yet, another grid, or an unreadable file: the runs then take the default lr until it is made)."""
    try:
        data = json.loads(RunLayout(run_dir).lr_choice.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("grid") != [float(x) for x in grid]:
        return None
    choices = data.get("choices")
    return choices if isinstance(choices, list) else None


__all__ = ["CHOICE_COLUMN", "RULE", "last_value", "choose", "write_choice", "read_choice"]
