"""``memadv figures bat TRAIN_DIR``: the paper's Table 2, Table 4 and Fig. 4 from training runs.

Input: a folder of training runs (``runs/<name>/train``, one sub-folder per run as written by
``memadv train``; ``runs/<name>`` and a single run folder work too). Runs that differ only in their
seed form one row; cells show the mean over seeds, with ``± std`` when there are several.

* **Table 2** — All / Typical / Atypical test examples x clean / PGD-20 accuracy at the selected
  checkpoint, from ``final.parquet`` (every image of each set) where the run has its final
  evaluation, else from ``metrics.parquet`` at the selected epoch (columns ``test/<set>/clean`` and
  ``test/<set>/adv``, a subsample under ``--eval-max``); column ``source`` says which.
* **Table 4** — clean, FGSM, PGD-20, CW, AutoAttack accuracy on all test examples, read from
  ``final.parquet`` for the selected checkpoint.
* **Fig. 4** — overall test clean (left) and PGD-20 (right) accuracy per epoch (``fig4_curves``).

Checkpoint selection (:mod:`memadv.bat.selection`): every method gets the rows of its own paper's
rule plus its last epoch — PGD-AT *Best Adv.* / *Best Clean* / *Last*, GAIRAT *Best Adv.* / *Last*,
ERM, TRADES, MART and BAT *Last* — and runs trained with ``--val-fraction`` also get the
validation-selected twin of every best row (*Best Adv., val.*). ``--select last|best-adv|best-clean``
replaces the rule of every method but PGD-AT. Every row, in the CSV and in the Markdown, names its
selection, and the table notes say whether a best epoch was chosen on the test set itself
(test-selected: optimistic, the paper's protocol) or on the held-out slice, and where each
method's rule comes from. Ties go to the earlier epoch, as in the training loop's ``best_*.pt``.

Numbers are percentages. Outputs (Markdown + CSV, PNG + PDF) go to ``--out`` (default: the
``report/`` folder of the run, beside ``train/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.analysis.figure_configs import BatFiguresConfig, SELECT
from memadv.analysis.outputs import markdown_section, pyplot, save_figure, write_csv, write_markdown
from memadv.analysis.paper_claims import final_accuracy
from memadv.analysis.table_notes import attack_note, selection_notes
from memadv.bat import selection
from memadv.bat.runs import TrainingRun, find_training_runs
from memadv.bat.methods import METHOD_REGISTRY, METHODS
from memadv.errors import MemadvError
from memadv.layout import FIG4, TABLE2, TABLE4, locate

SETS = (("all", "All"), ("typical", "Typical"), ("atypical", "Atyp."))
TABLE4_ATTACKS = (("clean", "Clean Acc."), ("fgsm", "FGSM"), ("pgd", "PGD"), ("cw", "CW"), ("aa", "AA."))
METHOD_ORDER = METHODS  # table rows in the order of the one list of methods


# --------------------------------------------------------------------------- runs

@dataclass
class Run:
    """One training run's files, read once (tables and figures look at them many times)."""

    path: Path
    config: dict[str, Any]
    metrics: pd.DataFrame
    final: pd.DataFrame | None

    @classmethod
    def read(cls, run: TrainingRun) -> "Run":
        """Config, metrics (epoch order) and, for a finished run, the final evaluation of ``run``."""
        return cls(run.folder, run.config(), run.metrics(), run.final() if run.is_finished() else None)

    @property
    def method(self) -> str:
        return str(self.config["train"]["method"])

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])

    def objective(self, key: str, default: Any = None) -> Any:
        return self.config.get("objective", {}).get(key, default)

    @property
    def group(self) -> str:
        """The run's name without its seed: runs that differ only by seed share a row."""
        name = self.path.name
        suffix = f"-seed{self.seed}"
        return name[: -len(suffix)] if name.endswith(suffix) else name


def find_runs(path: str | Path) -> list[Run]:
    """Every training run under ``path`` (a train folder, a run directory holding ``train/``, or one
    run; see :func:`memadv.bat.runs.find_training_runs`) that has evaluated at least one epoch, read
    through :class:`memadv.bat.runs.TrainingRun`. Raises MemadvError when there is none."""
    runs = [Run.read(r) for r in find_training_runs(path) if r.has_metrics()]  # no metrics: no epoch done yet
    if not runs:
        raise MemadvError(f"no training runs (folders with config.json and metrics.parquet) under {str(path)!r}; "
                          f"run `memadv train ... --out {path}` first")
    return runs


def report_dir(path: str | Path, out: str | Path | None) -> Path:
    """``out``, or the ``report/`` folder beside the ``train/`` folder that ``path`` is or holds."""
    if out is not None:
        return Path(out)
    path = Path(path).resolve()
    if TrainingRun(path).has_config():  # one run folder: runs/<name>/train/<run>
        path = path.parent
    return locate(path).report


def select_row(metrics: pd.DataFrame, checkpoint: str) -> pd.Series | None:
    """The metrics row of ``checkpoint`` (see :func:`memadv.bat.selection.select_row`)."""
    return selection.select_row(metrics, checkpoint)


def has_val(run: Run) -> bool:
    """Whether the run held out a validation slice (its metrics carry ``train/val/*`` columns)."""
    return selection.SELECTION_COLUMN["best_val_adv"] in run.metrics.columns


def method_label(run: Run) -> str:
    """A run's row label: its method's (:data:`memadv.bat.methods.METHOD_REGISTRY`), with the options it shows."""
    known = METHOD_REGISTRY.get(run.method)
    return known.table_label(run.objective) if known is not None else run.method.upper()


def row_plan(runs: list[Run], select: str = "own") -> list[tuple[str, str, list[Run]]]:
    """(row label, checkpoint, runs) per table row, in the paper's method order; ``select`` is
    "own" (each method's rule) or a checkpoint that replaces it (:func:`selection.method_checkpoints`)."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    labels = {g: method_label(rs[0]) for g, rs in groups.items()}
    counts: dict[str, int] = {}
    for lab in labels.values():
        counts[lab] = counts.get(lab, 0) + 1
    order = sorted(groups, key=lambda g: (METHOD_ORDER.index(groups[g][0].method)
                                          if groups[g][0].method in METHOD_ORDER else 99, g))
    plan = []
    for g in order:
        rs = sorted(groups[g], key=lambda r: r.seed)
        label = labels[g] if counts[labels[g]] == 1 else f"{labels[g]} [{g}]"
        for ck in selection.method_checkpoints(rs[0].method, any(has_val(r) for r in rs), select):
            plan.append((f"{label} ({selection.ROW_SUFFIX[ck]})", ck, rs))
    return plan


# --------------------------------------------------------------------------- tables

def _agg(values: list[float]) -> tuple[float, float]:
    arr = np.array(values, dtype=float)
    ok = arr[~np.isnan(arr)]
    if ok.size == 0:
        return float("nan"), float("nan")
    return float(ok.mean()), float(ok.std(ddof=1)) if ok.size > 1 else float("nan")


FULL_SIZE = "final evaluation"       # Table 2's column `source`: every image of each set at the checkpoint
PER_EPOCH = "per-epoch evaluation"   # the selected epoch's row (a subsample under --eval-max)


def _full_size(run: Run, ck: str) -> bool:
    """Whether the run's final evaluation covers checkpoint ``ck`` on every image of each set (it
    was not capped by ``--final-max``)."""
    if run.config.get("train", {}).get("final_max") is not None:
        return False
    return all(math.isfinite(final_accuracy(run.final, ck, f"test/{key}", "clean")) for key, _ in SETS)


def _set_accuracy(run: Run, picked: pd.Series, ck: str, key: str, kind: str, full: bool) -> float:
    """Accuracy (%) of one test set at checkpoint ``ck``: from the final evaluation where it covers
    every image of each set (``full``, :func:`_full_size`), else from the selected per-epoch row (a
    subsample under ``--eval-max``)."""
    if full:
        return final_accuracy(run.final, ck, f"test/{key}", "clean" if kind == "clean" else "pgd")
    col = f"test/{key}/{kind}"
    return 100.0 * float(picked[col]) if col in picked.index else float("nan")


def table2(runs: list[Run], select: str = "own") -> pd.DataFrame:
    """One row per (method group, checkpoint); ``<Set> Acc.`` / ``<Set> Adv.`` in percent (+ ``_std``)."""
    rows = []
    for label, ck, rs in row_plan(runs, select):
        picked = [(r, p) for r, p in ((r, select_row(r.metrics, ck)) for r in rs) if p is not None]
        row: dict[str, Any] = {"method": label, "checkpoint": ck, "selection": selection.PROTOCOL[ck],
                               "n_seeds": len(picked), "epochs": " ".join(str(int(p["epoch"])) for _, p in picked)}
        full = [_full_size(r, ck) for r, _ in picked]
        row["source"] = FULL_SIZE if full and all(full) else PER_EPOCH if not any(full) else "mixed"
        for key, name in SETS:
            for kind, suffix in (("clean", "Acc."), ("adv", "Adv.")):
                mean, std = _agg([_set_accuracy(r, p, ck, key, kind, f) for (r, p), f in zip(picked, full)])
                row[f"{name} {suffix}"] = mean
                row[f"{name} {suffix} std"] = std
        rows.append(row)
    return pd.DataFrame(rows)


def table4(runs: list[Run], select: str = "own") -> pd.DataFrame:
    """Clean / FGSM / PGD / CW / AA accuracy (percent) on all test examples, from ``final.parquet``."""
    rows = []
    for label, ck, rs in row_plan(runs, select):
        row: dict[str, Any] = {"method": label, "checkpoint": ck, "selection": selection.PROTOCOL[ck],
                               "n_seeds": len(rs)}
        for attack, name in TABLE4_ATTACKS:
            row[name], row[f"{name} std"] = _agg([final_accuracy(r.final, ck, "test/all", attack) for r in rs])
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def to_markdown(df: pd.DataFrame, value_cols: list[str], title: str, note: str = "") -> str:
    """A table frame of :func:`table2` / :func:`table4` as a Markdown section: method, selection and
    ``mean ± std`` of each of ``value_cols``."""
    head = ["Method", "Selection"] + value_cols
    rows = []
    for _, r in df.iterrows():
        suffix = selection.ROW_SUFFIX[str(r["checkpoint"])]  # its own column here, not repeated in the label
        rows.append([str(r["method"]).removesuffix(f" ({suffix})"), suffix]
                    + [_cell(float(r[c]), float(r[f"{c} std"])) for c in value_cols])
    return markdown_section(title, head, rows, note)


# --------------------------------------------------------------------------- figure

def fig4(runs: list[Run], out: Path) -> list[Path]:
    """Overall test clean (left) and PGD-20 (right) accuracy per epoch, mean over seeds per group."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, ck, rs in row_plan(runs, "last"):
        if ck != "last":
            continue
        label = label.replace(f" ({selection.ROW_SUFFIX['last']})", "")
        for ax, kind in zip(axes, ("clean", "adv")):
            col = f"test/all/{kind}"
            frames = [r.metrics[["epoch", col]].set_index("epoch")[col] for r in rs if col in r.metrics]
            if not frames:
                continue
            curve = pd.concat(frames, axis=1).mean(axis=1) * 100.0
            ax.plot(curve.index, curve.to_numpy(), label=label, marker="." if len(curve) < 30 else None)
    for ax, title in zip(axes, ("Clean Acc. (%)", "Adv. Acc., PGD-20 (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle("Fig. 4: overall test accuracy during training")
    fig.tight_layout()
    paths = save_figure(fig, out / FIG4)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- entry point


def make_figures(run_dir: Path, cfg: BatFiguresConfig) -> list[Path]:
    """``memadv figures bat TRAIN``: :func:`bat_figures` with the command's options."""
    return bat_figures(run_dir, None if cfg.out is None else Path(cfg.out), cfg.select)


def bat_figures(run_dir: Path, out: Path | None = None, select_name: str = "own") -> list[Path]:
    """Table 2 (``table2.md/.csv``), Table 4 (``table4.md/.csv``, when a run has its final
    evaluation) and Fig. 4 (``fig4_curves.png/.pdf``) of the training runs in ``run_dir`` (see
    :func:`find_runs`), rows chosen by ``select_name`` (a key of ``SELECT``), written to ``out``
    (default: report/ beside the train/ folder). Raises MemadvError when there is no run."""
    select = SELECT[select_name]
    runs = find_runs(run_dir)
    out = report_dir(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    t2 = table2(runs, select)
    cols2 = [f"{name} {s}" for _, name in SETS for s in ("Acc.", "Adv.")]
    sources = set(t2["source"]) if len(t2) else set()
    where = ("every test image of each set (the final evaluation)" if sources == {FULL_SIZE} else
             "the per-epoch evaluation (a subsample under --eval-max)" if sources == {PER_EPOCH}
             else "the final evaluation where it covers every test image, else the per-epoch one (column `source`)")
    note = (f"Test accuracy (%) at the selected epoch (column `epochs` of table2.csv) on {where}, PGD-20 for Adv.; "
            f"mean ± std over seeds where there are several: run-to-run variation on the machine in each run's "
            f"config.json (another CPU or thread count changes float summation and the training trajectory); "
            f"the report's claims give paired differences with 95% CIs. Runs: {', '.join(sorted({r.path.name for r in runs}))}."
            f"\n\n{selection_notes(runs, t2)}")
    paths += [write_markdown(out / f"{TABLE2}.md", to_markdown(t2, cols2, "Table 2: clean and adversarial accuracy",
                                                            note)),
              write_csv(out / f"{TABLE2}.csv", t2)]
    if any(r.final is not None for r in runs):
        t4 = table4(runs, select)
        cols4 = [name for _, name in TABLE4_ATTACKS]
        paths += [write_markdown(out / f"{TABLE4}.md", to_markdown(
            t4, cols4, "Table 4: accuracy under attacks",
            "Test accuracy (%) on all test examples; – = not evaluated (see --final-attacks). "
            + attack_note(runs) + f"\n\n{selection_notes(runs, t4)}")),
            write_csv(out / f"{TABLE4}.csv", t4)]
    paths += fig4(runs, out)
    return paths
