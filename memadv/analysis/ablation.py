"""``memadv figures ablation TRAIN_DIR``: Fig. 5 of the paper, BAT's alpha x beta grid.

The paper trains BAT with alpha in {0, 1, 2, 3} and beta in {0, 0.1, 0.2, 0.3} and shows overall
clean (left) and PGD-20 (right) test accuracy of each model. Here every BAT run under TRAIN_DIR is a
cell at its (alpha, beta) (mean over seeds, at the ``--select`` checkpoint, default the last epoch);
the grid's axes are the values present. Where no BAT run has alpha = beta = 0, PGD-AT runs fill that
cell (BAT with alpha = beta = 0 *is* PGD-AT; the training tests check it), marked with a star.
BAT runs that differ in anything other than alpha, beta and the seed (sigma, tau, eps, ...) cannot
share a grid: put them in separate folders.

Outputs: ``fig5_ablation.png/.pdf`` (two annotated heat maps) and ``ablation.md/.csv`` (one row per
cell: alpha, beta, clean, adv, n_seeds, source).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from memadv.analysis.figure_configs import AblationFiguresConfig, SELECT
from memadv.analysis.bat_tables import Run, find_runs, report_dir, select_row
from memadv.bat.selection import PROTOCOL
from memadv.analysis.outputs import markdown_section, pyplot, save_figure, write_csv, write_markdown
from memadv.errors import MemadvError
from memadv.layout import FIG5

# options that may vary inside one grid
_GRID_KEYS = ("alpha", "beta")
_SEED_KEYS = ("seed", "name", "device", "data_root", "progress", "eval_batch_size")


def _setting(run: Run) -> str:
    """Everything but alpha, beta and the seed: BAT runs of one grid must agree on it."""
    train = {k: v for k, v in run.config.get("train", {}).items() if k not in _SEED_KEYS}
    obj = {k: v for k, v in run.config.get("objective", {}).items() if k not in _GRID_KEYS}
    return repr(sorted(train.items())) + repr(sorted(obj.items()))


def ablation_grid(runs: list[Run], select: str = "last") -> pd.DataFrame:
    """One row per (alpha, beta) cell: mean test/all clean and adv accuracy (percent) over seeds."""
    bat = [r for r in runs if r.method == "bat"]
    if not bat:
        raise MemadvError("no BAT runs found; train BAT on an alpha x beta grid first "
                          "(e.g. a sweep with alpha = [0, 1, 2, 3] and beta = [0, 0.1, 0.2, 0.3])")
    settings = {_setting(r) for r in bat}
    if len(settings) > 1:
        names = ", ".join(sorted(r.path.name for r in bat))
        raise MemadvError(f"BAT runs differ in more than alpha, beta and seed ({names}); "
                          f"put each setting's runs in its own folder")
    cells: dict[tuple[float, float], list[tuple[float, float]]] = {}
    source: dict[tuple[float, float], str] = {}
    for r in bat:
        key = (float(r.objective("alpha")), float(r.objective("beta")))
        row = select_row(r.metrics, select)
        cells.setdefault(key, []).append((float(row["test/all/clean"]), float(row["test/all/adv"])))
        source[key] = "bat"
    if (0.0, 0.0) not in cells:
        pgd = [r for r in runs if r.method == "pgd"]
        for r in pgd:
            row = select_row(r.metrics, select)
            cells.setdefault((0.0, 0.0), []).append((float(row["test/all/clean"]), float(row["test/all/adv"])))
            source[(0.0, 0.0)] = "pgd"
    rows = []
    for (a, b), vals in sorted(cells.items()):
        arr = np.array(vals) * 100.0
        rows.append({"alpha": a, "beta": b, "clean": float(arr[:, 0].mean()), "adv": float(arr[:, 1].mean()),
                     "n_seeds": len(vals), "source": source[(a, b)]})
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame, select: str) -> str:
    rows = [[f"{r['alpha']:g}", f"{r['beta']:g}", f"{r['clean']:.1f}", f"{r['adv']:.1f}", int(r["n_seeds"]),
             r["source"]] for _, r in df.iterrows()]
    return markdown_section("Fig. 5: BAT ablation (overall test accuracy, %)",
                            ["α", "β", "Clean Acc.", "Adv. Acc. (PGD-20)", "seeds", "source"], rows,
                            f"Checkpoint: {select} — {PROTOCOL[select]}; source `pgd` = PGD-AT runs standing in "
                            f"for α = β = 0.")


def fig5(df: pd.DataFrame, out: Path) -> list[Path]:
    plt = pyplot()

    alphas = sorted(df["alpha"].unique())
    betas = sorted(df["beta"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, col, title in zip(axes, ("clean", "adv"), ("Clean Acc. (%)", "Adv. Acc., PGD-20 (%)")):
        grid = np.full((len(alphas), len(betas)), np.nan)
        for _, r in df.iterrows():
            grid[alphas.index(r["alpha"]), betas.index(r["beta"])] = r[col]
        im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                if np.isnan(grid[i, j]):
                    continue
                hit = df[(df["alpha"] == a) & (df["beta"] == b)]
                star = "*" if (len(hit) and hit["source"].iloc[0] == "pgd") else ""
                light = im.norm(grid[i, j]) > 0.6  # dark text on the bright end of viridis
                ax.text(j, i, f"{grid[i, j]:.1f}{star}", ha="center", va="center", fontsize=8,
                        color="k" if light else "w")
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("β (discrimination loss)")
        ax.set_ylabel("α (re-weighting)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Fig. 5: BAT α × β (* = PGD-AT)" if (df["source"] == "pgd").any() else "Fig. 5: BAT α × β")
    fig.tight_layout()
    paths = save_figure(fig, out / FIG5)
    plt.close(fig)
    return paths


def make_figures(run_dir: Path, cfg: AblationFiguresConfig) -> list[Path]:
    """``memadv figures ablation TRAIN``: :func:`ablation_figures` with the command's options."""
    return ablation_figures(run_dir, None if cfg.out is None else Path(cfg.out), cfg.select)


def ablation_figures(run_dir: Path, out: Path | None = None, select_name: str = "last") -> list[Path]:
    """Fig. 5 (PNG + PDF), ``ablation.md`` and ``ablation.csv`` of the BAT runs in ``run_dir`` (a
    train/ folder), at checkpoint ``select_name`` (a key of ``SELECT``), written to ``out`` (default:
    report/ beside the train/ folder)."""
    select = SELECT[select_name]
    df = ablation_grid(find_runs(run_dir), select)
    out = report_dir(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    return [write_markdown(out / "ablation.md", _markdown(df, select)), write_csv(out / "ablation.csv", df)] \
        + fig5(df, out)


__all__ = ["ablation_grid", "ablation_figures", "fig5", "make_figures"]
