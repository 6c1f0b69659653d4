"""The notes under Tables 2 and 4: how every row was selected, which settings are the references'
and which are memadv's adaptations (with the reason), and which form of BAT's Eq. 7 each row used.

A reviewer reads a table row as "method X, checkpoint Y, under attack Z"; these notes make each of
X, Y and Z checkable. Inputs are the runs of :mod:`memadv.analysis.bat_tables` (objects with
``method``, ``group``, ``config`` and ``objective(key, default)``) and its table frames (columns
``method`` and ``checkpoint``).
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from memadv.bat import selection
from memadv.bat.methods import METHOD_REGISTRY, METHODS
from memadv.layout import RunLayout



def _val_size(runs: Iterable[Any]) -> int | None:
    sizes = set()
    for r in runs:
        frac = float(r.config.get("train", {}).get("val_fraction", 0.0) or 0.0)
        col = "train/val/n"
        if frac > 0 and col in r.metrics.columns:
            sizes.add(int(r.metrics[col].iloc[-1]))
    return sizes.pop() if len(sizes) == 1 else None


def selection_notes(runs: list[Any], table: pd.DataFrame) -> str:
    """Markdown: the selection protocol of every label in ``table``, each method's rule and source,
    and, per BAT row group, the form and temperature of the discrimination loss."""
    used = [str(c) for c in table["checkpoint"]] if len(table) else []
    lines = [selection.protocol_note(used, _val_size(runs))]
    if not any(c.startswith("best_val") for c in used):
        lines.append("No run held out a validation slice (`memadv train --val-fraction`), so every *Best* row "
                     "is test-selected (the paper's protocol).")
    methods = sorted({r.method for r in runs}, key=lambda m: METHODS.index(m) if m in METHODS else 99)
    rules = [f"{METHOD_REGISTRY[m].label}: {METHOD_REGISTRY[m].checkpoint_source}" for m in methods
             if m in METHOD_REGISTRY]
    lines.append("Checkpoint rule of each method (last epoch always shown too): " + "; ".join(rules) + ".")
    forms = {}
    for r in runs:
        if r.method == "bat":
            forms[r.group] = dl_form(r.objective("normalize_features", True), r.objective("tau", 0.1))
    if forms:
        lines.append("BAT discrimination loss (Eq. 7): " + "; ".join(f"`{g}`: {f}" for g, f in sorted(forms.items()))
                     + ".")
    gairat = sorted({round(float(r.objective("gairat_burn_in", 0.5)) * int(r.config["train"].get("epochs") or 0))
                     for r in runs if r.method == "gairat"})
    if gairat:
        lines.append(f"GAIRAT re-weights from epoch {', '.join(map(str, gairat))} on (half of the epochs; adaptation, "
                     f"docs/attacks.md: the reference starts at epoch 60 of 120, its first learning-rate drop).")
    return "\n\n".join(lines)


def dl_form(normalize: bool, tau: float) -> str:
    """A phrase naming the form of Eq. 7 a BAT run used."""
    if normalize:
        return f"cosine similarities (L2-normalised features), τ = {tau:g} (memadv's default form)"
    if float(tau) == 1.0:
        return "raw dot products, no temperature (the paper's Eq. 7 as written)"
    return f"raw dot products divided by τ = {tau:g}"


def attack_note(runs: list[Any]) -> str:
    """One sentence per evaluation attack setting found in ``runs`` (steps, step size, start)."""
    parts = set()
    for r in runs:
        eps = r.objective("eps")
        steps = int(r.objective("eval_steps", 20))
        cw_steps = int(r.objective("cw_steps", steps))
        step = r.objective("eval_step_size")
        cw_step = r.objective("cw_step_size", step)
        if eps is None or step is None or cw_step is None:
            continue
        parts.add(f"ε = {eps * 255:.3g}/255: PGD-{steps} (step {step * 255:.3g}/255) and CW-inf = PGD-{cw_steps} "
                  f"on the "
                  f"CW margin, κ = {r.objective('cw_confidence', 50.0):g} (step {cw_step * 255:.3g}/255), both from a "
                  f"uniform random start; FGSM without start; AA = AutoAttack standard")
    return ("Attacks: " + "; ".join(sorted(parts)) + " (reference settings and adaptations: docs/attacks.md).") \
        if parts else ""


def protocol_section(run_dir: Any) -> str:
    """Markdown for the report: the selection protocol behind every number it shows, per part."""
    from pathlib import Path

    from memadv.files.tables import read_meta
    run_dir = Path(run_dir)
    lines = ["* **Section 3.1 (Figs. 2-3, C1-C2) and Section 3.2 (Table 1, C3-C5):** the last epoch of every run, "
             "or every epoch where a figure draws a curve; no checkpoint is selected.",
             "* **Table 2 / Table 4 (C6):** every row is labelled with its checkpoint in the *Selection* column. "
             "*Last* = last epoch. *Best Adv.* / *Best Clean* = the epoch of highest test PGD-20 / clean accuracy, "
             "reported on the same test set (test-selected, the paper's protocol and an optimistic estimate). "
             "*Best ..., val.* rows (runs trained with `--val-fraction`) are selected on a held-out slice of the "
             "training set. Each method's rule and its source are in the table notes; claim C6 is decided last "
             "epoch against last epoch on every test image (matched selection); the paper's comparison (BAT's last "
             "epoch against PGD-AT's test-selected best-adversarial epoch) is shown beside it, not deciding.",
             "* **Ablation (Fig. 5):** the last epoch of every run."]
    split_file = RunLayout(run_dir).split_file
    if split_file.is_file():
        src = read_meta(split_file).get("source_scores", {})
        which = src.get("test_acc_source", "subset")
        lines.append("* **Typical test set (D'_typ):** the 80% ERM-accuracy rule used "
                     + (f"{src.get('n_full_models', '?')} models trained on all of D (paper Sec. 3.2)"
                        if which == "full" else f"the {src.get('n_models', '?')} subset models of the estimate "
                        "(no full-data models in this run: an approximation of the paper's rule)") + ".")
    return "\n".join(lines)
