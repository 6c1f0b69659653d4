"""Section 3.2 of the paper: typical-set accuracy and class-wise cosine measure vs. atypical share.

For every p in ``Sec3Settings.ps`` (default 0, 20, 100) and method in (ERM, PGD-AT), one run of
:func:`memadv.bat.train.train` on D_typ ∪ (p% of D_atyp) — the p% is the first p% of one fixed
random order of D_atyp (seeded by the run seed), so the 20% set lies inside the 100% set. Runs go
through :func:`memadv.executors.run_tasks` and resume like any training run.

How the subset is trained with the unchanged training loop: the task builds a :class:`Dataset`
holding only the chosen training examples (ids listed in ``RUN/sec32/subsets/p<p>-seed<s>.json``) and, as
its test split, only D'_typ — so in these runs' ``metrics.parquet`` the columns ``test/all/*`` are
D'_typ accuracy (clean and PGD-20) and ``train/all/*`` the accuracy on the run's own training set.

The class-wise cosine measure (paper Sec. 3.2, footnote 2; Figs. 21-23, Table 1): with h(x) the
penultimate representation (``model.embed``) of a clean typical training example, the mean cosine
similarity over all pairs (x1, x2) of D_typ from different classes::

    S = sum_{c != c'} sum_{i in c, j in c'} <u_i, u_j>  /  (n^2 - sum_c n_c^2),   u_i = h_i / ||h_i||

computed exactly from per-class sums (``||sum u||^2 - sum_c ||sum_{i in c} u||^2``); a zero
representation counts as similarity 0 with everything. It is measured after every epoch by a hook
at the loop's per-epoch evaluation (the ``epoch_metrics`` callback of :func:`memadv.bat.train.train`,
see :func:`cosine_metrics`) and stored in the run's ``metrics.parquet`` (``cos_sim, cos_dist, cos_n``),
with ``cos_dist = 1 - cos_sim``.

The paper's footnote defines its "Cosine Distance" as S while its text reads a smaller value as less
separated classes; :func:`cosine_reading` decides which of S and 1 - S the paper's Table 1 matches on
this run (see ``docs/report.md``) and the figures use that reading.

Outputs (``RUN/report/sec32/``): ``fig2_pgd_typical.png`` (PGD-AT, Figs. 2, 18-20),
``fig15_erm_typical.png`` (ERM, Figs. 15-17), ``fig21_cosine.png`` (ERM left, PGD-AT right,
Figs. 21-23), ``table1.md/.csv`` (last epoch: both readings and the D'_typ accuracies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.analysis.figure_configs import Sec32FiguresConfig
from memadv.analysis.outputs import frame_markdown, pyplot, save_figure, write_csv, write_markdown
from memadv.analysis.sec31 import curves_figure, mean_over_seeds, read_run
from memadv.paper.sec3 import SEC31_METHODS
from memadv.bat.methods import method_label
from memadv.bat.runs import TrainingRun
from memadv.files.atomic import write_json_atomic
from memadv.errors import MemadvError
from memadv.layout import FIG2, FIG21, TABLE1, RunLayout

# The paper's Table 1 (CIFAR-100, PGD-AT), "Cosine Distance" at 0 / 20 / 100 % atypical examples.
PAPER_TABLE1 = {"ResNet18": {0: 0.66, 20: 0.62, 100: 0.59}, "WRN28": {0: 0.64, 20: 0.61, 100: 0.57}}


# --------------------------------------------------------------------------- reading back

@dataclass
class Sec32Run:
    p: int
    method: str
    metrics: pd.DataFrame
    cosine: pd.DataFrame
    seed: int = 0
    final: pd.DataFrame | None = None   # final.parquet (full D'_typ) of a finished run
    atypical_test: pd.DataFrame | None = None  # atypical_test.parquet (last weights on all of D'_atyp)


def load_sec32(run_dir: Path, seeds: list[int] | None = None) -> list[Sec32Run]:
    """Every Section 3.2 run under ``RUN/sec32/train`` (``seeds``: only those), ordered by p, method, seed."""
    base = RunLayout(run_dir).sec32_train
    found: list[tuple[int, int, str, Path]] = []
    for d in sorted(base.glob("p*-*-seed*")) if base.is_dir() else []:
        try:
            ptxt, method, stxt = d.name.split("-")
            found.append((int(stxt[4:]), int(ptxt[1:]), method, d))
        except ValueError:
            continue
    found = [f for f in found if TrainingRun(f[3]).has_metrics()]
    if not found:
        raise MemadvError(f"no Section 3.2 runs under {base}; run `memadv pipeline --out {run_dir}` first")
    runs = []
    order = {m: i for i, m in enumerate(SEC31_METHODS)}
    for s, p, method, d in sorted(found, key=lambda f: (f[1], order.get(f[2], 9), f[0])):
        if seeds is not None and s not in set(seeds):
            continue
        metrics = read_run(d)[0]
        run = TrainingRun(d)
        cols = ["epoch", "cos_sim", "cos_dist", "cos_n"]
        cos = (metrics[cols].rename(columns={"cos_n": "n"}).sort_values("epoch").reset_index(drop=True)
               if "cos_sim" in metrics.columns else pd.DataFrame(columns=["epoch", "cos_sim", "cos_dist", "n"]))
        runs.append(Sec32Run(p, method, metrics, cos, s, run.final() if run.is_finished() else None,
                             run.atypical_test()))
    if not runs:
        raise MemadvError(f"no Section 3.2 runs of seeds {seeds} under {base}")
    return runs


def average_runs(runs: list[Sec32Run]) -> list[Sec32Run]:
    """One run per (p, method): metrics and cosine curves averaged over its seeds (``seed`` = count)."""
    groups: dict[tuple[int, str], list[Sec32Run]] = {}
    for r in runs:
        groups.setdefault((r.p, r.method), []).append(r)
    out = []
    for (p, method), rs in groups.items():
        cos = [r.cosine for r in rs if len(r.cosine)]
        out.append(Sec32Run(p, method, mean_over_seeds([r.metrics for r in rs]),
                            mean_over_seeds(cos) if cos else rs[0].cosine, len(rs)))
    return out


def last_value(df: pd.DataFrame, col: str) -> float:
    return float(df[col].iloc[-1]) if col in df and len(df) else float("nan")


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def table1(runs: list[Sec32Run]) -> pd.DataFrame:
    """One row per (method, p) at the last epoch, mean over seeds: cosine similarity, 1 - similarity,
    D'_typ accuracy (%), and the seeds' standard deviations (NaN for one seed)."""
    rows = []
    per: dict[tuple[int, str], list[Sec32Run]] = {}
    for r in runs:
        per.setdefault((r.p, r.method), []).append(r)
    for r in average_runs(runs):
        members = per[(r.p, r.method)]
        rows.append({"method": method_label(r.method), "p": r.p, "seeds": len(members),
                     "epoch": int(r.metrics["epoch"].iloc[-1]),
                     "cos_sim": last_value(r.cosine, "cos_sim"), "1 - cos_sim": last_value(r.cosine, "cos_dist"),
                     "cos_epoch": int(r.cosine["epoch"].iloc[-1]) if len(r.cosine) else -1,
                     "typ. test clean": 100.0 * last_value(r.metrics, "test/all/clean"),
                     "typ. test adv": 100.0 * last_value(r.metrics, "test/all/adv"),
                     "n train": int(round(last_value(r.metrics, "train/all/n"))) if "train/all/n" in r.metrics else -1,
                     "n typ. test": int(round(last_value(r.metrics, "test/all/n"))) if "test/all/n" in r.metrics
                     else -1,
                     "1 - cos_sim sd": _sd([last_value(m.cosine, "cos_dist") for m in members]),
                     "typ. test clean sd": _sd([100.0 * last_value(m.metrics, "test/all/clean") for m in members]),
                     "typ. test adv sd": _sd([100.0 * last_value(m.metrics, "test/all/adv") for m in members])})
    return pd.DataFrame(rows)


def _strictly_decreasing(values: list[float]) -> bool:
    return len(values) >= 2 and all(np.isfinite(values)) and all(a > b for a, b in zip(values, values[1:]))


def cosine_reading(t1: pd.DataFrame, method_label: str = "PGD-AT") -> dict[str, Any]:
    """Which reading of the paper's "Cosine Distance" its Table 1 matches on this run.

    Table 1 decreases from 0% to 100% atypical examples (0.66, 0.62, 0.59 for ResNet18). The reading
    whose values (PGD-AT, last epoch, p ascending) also clearly decrease is the match — strictly, and
    by more than twice the largest standard deviation over seeds when there are several; when neither
    or both do, the reading closer in magnitude (mean absolute difference to the ResNet18 row at the
    p's the paper has) decides. Returns the reading and the numbers behind it.
    """
    rows = t1[t1["method"] == method_label].sort_values("p")
    sims = [float(v) for v in rows["cos_sim"]]
    dists = [float(v) for v in rows["1 - cos_sim"]]
    ps = [int(p) for p in rows["p"]]
    # with several seeds a trend counts only when its total change exceeds twice the largest sd over seeds
    sds = [float(v) for v in rows["1 - cos_sim sd"]] if "1 - cos_sim sd" in rows else []
    noise = 2.0 * max((v for v in sds if np.isfinite(v)), default=0.0)

    def clear(vals: list[float]) -> bool:
        return _strictly_decreasing(vals) and vals[0] - vals[-1] > noise

    trend = {"similarity": clear(sims), "1 - similarity": clear(dists)}
    paper = PAPER_TABLE1["ResNet18"]
    common = [(i, paper[p]) for i, p in enumerate(ps) if p in paper]

    def gap(vals: list[float]) -> float:
        return float(np.mean([abs(vals[i] - v) for i, v in common])) if common else float("nan")

    magnitude = {"similarity": gap(sims), "1 - similarity": gap(dists)}
    if trend["similarity"] != trend["1 - similarity"]:
        reading = "similarity" if trend["similarity"] else "1 - similarity"
        why = "trend"
    else:
        ok = {k: v for k, v in magnitude.items() if np.isfinite(v)}
        reading = min(ok, key=ok.get) if ok else "1 - similarity"
        why = "magnitude" if ok else "default"
    return {"reading": reading, "decided_by": why, "p": ps, "similarity": sims, "1 - similarity": dists,
            "trend_matches": trend, "trend_noise": noise, "magnitude_gap": magnitude,
            "paper": [paper.get(p) for p in ps]}


# --------------------------------------------------------------------------- figures

def sec32_figures(run_dir: Path, out: Path, seeds: list[int] | None = None) -> list[Path]:
    by_seed = load_sec32(run_dir, seeds)
    runs = average_runs(by_seed)
    n_seeds = max(r.seed for r in runs)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for m, stem, fig_name in (("pgd", FIG2, "Fig. 2 / 18"), ("erm", "fig15_erm_typical", "Fig. 15")):
        mine = [r for r in runs if r.method == m]
        if not mine:
            continue
        curves = {f"p{r.p}": r.metrics for r in mine}
        series = [(f"Atypical {r.p}%", f"p{r.p}") for r in mine]
        paths += curves_figure(curves, lambda kind: "test/all/" + kind, out / stem,
                               f"{fig_name}: {method_label(m)} trained on D_typ + p% of D_atyp; accuracy on D'_typ"
                               + (f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""),
                               series, {"figure": stem, "method": m, "ps": [r.p for r in mine]})
    t1 = table1(by_seed)
    reading = cosine_reading(t1)
    col = "cos_sim" if reading["reading"] == "similarity" else "cos_dist"
    ylabel = ("mean cosine similarity" if col == "cos_sim" else "1 - mean cosine similarity")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, m in zip(axes, SEC31_METHODS):
        for r in (r for r in runs if r.method == m):
            if len(r.cosine):
                ax.plot(r.cosine["epoch"], r.cosine[col].to_numpy(dtype=float), label=f"Atypical {r.p}%",
                        marker="." if len(r.cosine) < 40 else None)
        ax.set_title(method_label(m))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Fig. 21: class-wise cosine measure of typical training examples' representations", fontsize=10)
    fig.tight_layout()
    paths += save_figure(fig, out / FIG21, {"figure": FIG21, "reading": reading["reading"]})
    plt.close(fig)
    shown = t1.copy()
    note = (f"Last epoch, mean over the seeds (sd: their standard deviation, the run-to-run variation on this "
            f"machine). cos_sim: mean cosine similarity of penultimate representations over pairs of typical "
            f"training examples of different classes; 1 - cos_sim its complement. Typical-test accuracy (%) on "
            f"D'_typ, clean and PGD-20. The paper's Table 1 (ResNet18: 0.66, 0.62, 0.59) matches the "
            f"**{reading['reading']}** reading on this run (decided by {reading['decided_by']}).")
    md = frame_markdown(shown, "Table 1: class-wise cosine measure of typical examples (last epoch)", note,
                        fmt="{:.3f}")
    paths += [write_markdown(out / f"{TABLE1}.md", md), write_csv(out / f"{TABLE1}.csv", shown)]
    write_json_atomic(out / "cosine_reading.json", reading)
    paths.append(out / "cosine_reading.json")
    return paths


# --------------------------------------------------------------------------- CLI entry point


def make_figures(run_dir: Path, cfg: Sec32FiguresConfig) -> list[Path]:
    """``memadv figures sec32 RUN``: :func:`sec32_figures` and, unless ``--no-fig3``, Fig. 3
    (:func:`memadv.analysis.poisoning.poisoning_figure`) with the command line's options."""
    run_dir = Path(run_dir)
    out = Path(cfg.out) if cfg.out else RunLayout(run_dir).report_sec32
    paths = sec32_figures(run_dir, out, cfg.seeds)
    if cfg.fig3:
        from memadv.analysis import poisoning
        if poisoning.find_pgd_run(run_dir) is not None:
            paths += poisoning.poisoning_figure(run_dir, out)
    return paths


__all__ = ["load_sec32", "table1", "cosine_reading", "sec32_figures", "make_figures"]
