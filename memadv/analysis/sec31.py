"""Section 3.1 of the paper: ERM and PGD-AT on the whole training set, accuracy on atypical sets.

Two training runs (``erm`` and ``pgd``) of :func:`memadv.bat.train.train` on the full training set,
each evaluated every epoch on the split file's sets (``train/atypical`` = D_atyp, ``test/atypical`` =
D'_atyp), clean and PGD-20. They live in ``RUN/sec31/train/<method>-seed<seed>/`` and run as tasks
of :func:`memadv.executors.run_tasks` (in-process by default, Slurm on request); a re-run
resumes unfinished runs and returns at once for finished ones.

Figures (``RUN/report/sec31/``), clean accuracy left, PGD-20 accuracy right, one curve per set:

* ``fig1_pgd_atypical.png`` — PGD-AT (paper Figs. 1, 12-14);
* ``fig9_erm_atypical.png`` — ERM (paper Figs. 9-11; the paper shows clean only, the adversarial
  panel is kept for comparison);
* ``sec31.md`` / ``sec31.csv`` — last-epoch accuracy and the early/late means that claim C2 uses.

The runs' settings, plan and names are :mod:`memadv.paper.sec3`'s; this module reads the runs back
and draws, with a figure writer shared by Section 3.2 that stores each figure's panel titles in the
PNG's metadata (key ``memadv``) so tests can check panels without looking at pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from memadv.analysis.figure_configs import Sec31FiguresConfig
from memadv.analysis.outputs import frame_markdown, pyplot, save_figure, write_csv, write_markdown
from memadv.bat.methods import method_label
from memadv.bat.runs import TrainingRun
from memadv.errors import MemadvError
from memadv.layout import FIG1, SEC31_TABLE, RunLayout
from memadv.paper.sec3 import SEC31_METHODS, sec31_train_dir




# --------------------------------------------------------------------------- reading runs

def read_run(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(metrics in epoch order, config) of the training run ``folder``; MemadvError if it has no metrics."""
    run = TrainingRun(folder)
    if not run.has_metrics():
        raise MemadvError(f"{folder} has no metrics.parquet; run `memadv pipeline` (or its sec3 stages) first")
    return run.metrics(), run.config()


def mean_over_seeds(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Column-wise mean over seeds of metrics frames, aligned on ``epoch`` (one frame: itself)."""
    if len(frames) == 1:
        return frames[0]
    cat = pd.concat(frames, ignore_index=True)
    num = cat.select_dtypes("number")
    return num.groupby("epoch", as_index=False).mean().sort_values("epoch").reset_index(drop=True)


def _seed_of(run: TrainingRun) -> int:
    return int(run.name.rsplit("seed", 1)[1])


def load_sec31_seeds(run_dir: Path, seeds: list[int] | None = None) -> dict[str, dict[int, pd.DataFrame]]:
    """method -> {seed: metrics} of every Section 3.1 run present (``seeds``: only those), in seed order."""
    base = sec31_train_dir(run_dir)
    out: dict[str, list[pd.DataFrame]] = {}
    for m in SEC31_METHODS:
        runs = [TrainingRun(d) for d in sorted(base.glob(f"{m}-seed*"))] if base.is_dir() else []
        cands = sorted((r for r in runs if r.has_metrics()), key=_seed_of)
        if seeds is not None:
            cands = [c for c in cands if _seed_of(c) in set(seeds)]
        if cands:
            out[m] = {_seed_of(c): c.metrics() for c in cands}
    if not out:
        raise MemadvError(f"no Section 3.1 runs under {base}; run `memadv pipeline --out {run_dir}` first")
    return out


# --------------------------------------------------------------------------- numbers

EARLY_FRACTION = 0.2  # early window: the first 20% of the epochs (at least one epoch)
LATE_FRACTION = 0.2   # late window: the last 20% of the epochs (at least one epoch)


def windows(epochs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the early and late windows over the evaluated epochs."""
    e = np.asarray(epochs, dtype=float)
    n = e.size
    k_early = max(1, int(round(EARLY_FRACTION * n)))
    k_late = max(1, int(round(LATE_FRACTION * n)))
    order = np.argsort(e)
    early = np.zeros(n, bool)
    late = np.zeros(n, bool)
    early[order[:k_early]] = True
    late[order[n - k_late:]] = True
    return early, late


def early_late(metrics: pd.DataFrame, col: str) -> tuple[float, float]:
    """Mean of ``col`` over the early and the late window (fractions, not percent)."""
    if col not in metrics:
        return float("nan"), float("nan")
    early, late = windows(metrics["epoch"].to_numpy())
    v = metrics[col].to_numpy(dtype=float)
    return float(np.nanmean(v[early])), float(np.nanmean(v[late]))


def sec31_table(runs: dict[str, pd.DataFrame], n_seeds: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per method: last-epoch accuracy on the atypical sets and early/late test-atypical means (%),
    of the (seed-averaged) metrics in ``runs``."""
    rows = []
    for m, df in runs.items():
        last = df.iloc[-1]
        row: dict[str, Any] = {"method": method_label(m), "epoch": int(last["epoch"]),
                               "seeds": (n_seeds or {}).get(m, 1)}
        for split in ("train", "test"):
            for kind in ("clean", "adv"):
                col = f"{split}/atypical/{kind}"
                row[f"{split} atyp. {kind}"] = 100.0 * float(last[col]) if col in last.index else float("nan")
        for kind in ("clean", "adv"):
            e, l_ = early_late(df, f"test/atypical/{kind}")
            row[f"test atyp. {kind} early"] = 100.0 * e
            row[f"test atyp. {kind} late"] = 100.0 * l_
        n = last.get("test/atypical/n", float("nan"))
        row["n test atyp."] = int(n) if pd.notna(n) else -1
        n = last.get("train/atypical/n", float("nan"))
        row["n train atyp."] = int(n) if pd.notna(n) else -1
        rows.append(row)
    return pd.DataFrame(rows)


def curves_figure(curves: dict[str, pd.DataFrame | None], columns: Callable[[str], str], base: Path, title: str,
                  series: list[tuple[str, str]], info: dict[str, Any] | None = None) -> list[Path]:
    """Clean (left) and PGD-20 (right) accuracy per epoch; one line per (label, key) in ``series``.

    ``curves[key]`` is a metrics frame; ``columns(kind)`` (``kind`` clean/adv) names the column, or
    a format with ``{key}``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, kind, name in zip(axes, ("clean", "adv"), ("Clean Acc. (%)", "Adv. Acc., PGD-20 (%)")):
        for label, key in series:
            df = curves.get(key)
            col = columns(kind).format(key=key)
            if df is None or col not in df:
                continue
            ax.plot(df["epoch"], 100.0 * df[col].to_numpy(dtype=float), label=label,
                    marker="." if len(df) < 40 else None)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths = save_figure(fig, base, info, dpi=110)
    plt.close(fig)
    return paths


def sec31_figures(run_dir: Path, out: Path, seeds: list[int] | None = None) -> list[Path]:
    by_seed = load_sec31_seeds(run_dir, seeds)
    runs = {m: mean_over_seeds(list(fs.values())) for m, fs in by_seed.items()}
    n_seeds = {m: len(fs) for m, fs in by_seed.items()}
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    series = [("train atypical (D_atyp)", "train"), ("test atypical (D'_atyp)", "test")]
    for m, stem, fig_name in (("pgd", FIG1, "Fig. 1 / 12"), ("erm", "fig9_erm_atypical", "Fig. 9")):
        if m not in runs:
            continue
        df = runs[m]
        curves = {"train": df, "test": df}
        paths += curves_figure(curves, lambda kind: "{key}/atypical/" + kind, out / stem,
                               f"{fig_name}: {method_label(m)} on the whole training set, atypical sets"
                               + (f" (mean of {n_seeds[m]} seeds)" if n_seeds[m] > 1 else ""),
                               series, {"figure": stem, "method": m, "seeds": n_seeds[m]})
    table = sec31_table(runs, n_seeds)
    note = ("Accuracy (%) at the last epoch on D_atyp (train) and D'_atyp (test), clean and PGD-20, mean over "
            f"the seeds; early / late: mean over the first / last {int(EARLY_FRACTION * 100)}% of the epochs.")
    md = frame_markdown(table, "Section 3.1: accuracy on the atypical sets", note)
    paths += [write_markdown(out / f"{SEC31_TABLE}.md", md), write_csv(out / f"{SEC31_TABLE}.csv", table)]
    return paths


# --------------------------------------------------------------------------- CLI entry point


def make_figures(run_dir: Path, cfg: Sec31FiguresConfig) -> list[Path]:
    """``memadv figures sec31 RUN``: :func:`sec31_figures` with the command's options."""
    run_dir = Path(run_dir)
    return sec31_figures(run_dir, Path(cfg.out) if cfg.out else RunLayout(run_dir).report_sec31, cfg.seeds)


__all__ = ["load_sec31_seeds", "mean_over_seeds", "sec31_table", "sec31_figures", "early_late", "windows", "curves_figure", "make_figures"]
