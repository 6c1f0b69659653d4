"""Checkpoint selection: which epochs the tables report for each method, and how each was chosen.

Two things a reader of Table 2 / Table 4 must know about every number: *which* checkpoint it
comes from (last epoch or a "best" epoch) and, for a best epoch, *on what data* it was selected.

**Selection data.** The paper, and the reference code of PGD-AT and GAIRAT, pick the best epoch
by accuracy on the *test* set and then report that same test set — an optimistic bias (the
maximum over epochs of a noisy estimate). memadv keeps this protocol as its default (to compare
with the paper) and labels it "test-selected". With ``memadv train --val-fraction F`` a stratified
slice of the training set (:mod:`memadv.data.validation`) is held out of training and evaluated
every epoch (metric columns ``train/val/<clean|adv>``); the training loop then also keeps
``best_val_adv.pt`` / ``best_val_clean.pt``, selected on that slice, and the tables report them
beside the test-selected rows ("val-selected": an unbiased estimate of the selected model).

**Each method's own rule** (the paper, Sec. 5.1: baselines follow their papers), with the last
epoch always reported too:

========  ==========================  =====================================================================
method    checkpoints                 source
========  ==========================  =====================================================================
ERM       last                        no selection (plain training)
PGD-AT    best adv., best clean, last paper Tables 2/4 ("Best Adv." / "Best Clean" rows); Rice et al. 2020,
                                      ``locuslab/robust_overfitting`` ``train_cifar.py`` lines 441-449
                                      (``model_best.pth`` = highest test PGD accuracy)
TRADES    last                        ``yaodongyu/TRADES`` ``train_trades_cifar10.py``: trains a fixed 76
                                      epochs (line 20), saves every epoch (lines 169-173), selects none
MART      last                        ``YisenWang/MART`` ``train_wideresnet.py``: saves every epoch (lines
                                      200-204), selects none
GAIRAT    best adv. (PGD-20), last    ``zjfheart/Geometry-aware-Instance-reweighted-Adversarial-Training``
                                      ``GAIRAT.py`` lines 257 and 271-280 (``bestpoint.pth.tar`` = highest
                                      test PGD-20 accuracy); its README (line 97) reports best and last
BAT       last                        paper Algorithm 1 (trains to the last epoch)
========  ==========================  =====================================================================

Ties go to the earliest epoch (the loop's ``best_*.pt`` is replaced only by a strictly higher value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from memadv.bat.methods import METHOD_REGISTRY
from memadv.data.dataset import Dataset
from memadv.data.validation import validation_ids, write_validation

# checkpoint name -> metrics column it maximises (absent: the last epoch)
SELECTION_COLUMN: dict[str, str] = {
    "best_adv": "test/all/adv", "best_clean": "test/all/clean",
    "best_val_adv": "train/val/adv", "best_val_clean": "train/val/clean",
}
CHECKPOINT_FILES: dict[str, str] = {"last": "last.pt", **{k: f"{k}.pt" for k in SELECTION_COLUMN}}
VAL_KEY = "train/val"  # the evaluation subset (split train, set val) of the validation slice

# short row suffix and the protocol sentence of each checkpoint
ROW_SUFFIX: dict[str, str] = {
    "last": "Last", "best_adv": "Best Adv.", "best_clean": "Best Clean",
    "best_val_adv": "Best Adv., val.", "best_val_clean": "Best Clean, val.",
}
PROTOCOL: dict[str, str] = {
    "last": "last epoch (no selection)",
    "best_adv": "epoch of highest test PGD-20 acc., reported on the same test set (test-selected, optimistic)",
    "best_clean": "epoch of highest test clean acc., reported on the same test set (test-selected, optimistic)",
    "best_val_adv": "epoch of highest PGD-20 acc. on the held-out validation slice (val-selected)",
    "best_val_clean": "epoch of highest clean acc. on the held-out validation slice (val-selected)",
}


OVERRIDES = ("own", "last", "best_adv", "best_clean")


def val_counterpart(checkpoint: str) -> str | None:
    """``best_val_adv`` for ``best_adv`` (the same rule, selected on the validation slice); else None."""
    return {"best_adv": "best_val_adv", "best_clean": "best_val_clean"}.get(checkpoint)


def method_checkpoints(method: str, has_val: bool, override: str = "own") -> list[str]:
    """The checkpoints the tables report for ``method``, in row order.

    ``override`` "own" (default) applies the method's rule (:data:`memadv.bat.methods.METHOD_REGISTRY`); "last" / "best_adv" / "best_clean"
    replaces the rule of every method but PGD-AT (whose two best rows are the paper's) and keeps
    the last epoch. With ``has_val`` every best checkpoint is followed by its validation-selected
    counterpart. Raises ``KeyError`` for an unknown override (callers check choices first).
    """
    if override not in OVERRIDES:
        raise KeyError(override)
    known = METHOD_REGISTRY.get(method)
    cks = list(known.checkpoints) if known is not None else ["last"]
    if override != "own" and method != "pgd":
        cks = [override] if override == "last" else [override, "last"]
    out: list[str] = []
    for ck in cks:
        out.append(ck)
        twin = val_counterpart(ck)
        if has_val and twin is not None:
            out.append(twin)
    return out


def select_row(metrics: pd.DataFrame, checkpoint: str) -> pd.Series | None:
    """The metrics row of ``checkpoint`` (ties -> earliest epoch); None when its column is absent
    or never evaluated (e.g. a validation checkpoint of a run without a validation slice)."""
    if checkpoint == "last":
        return metrics.iloc[-1]
    col = SELECTION_COLUMN[checkpoint]
    if col not in metrics.columns:
        return None
    values = metrics[col].to_numpy(dtype=float)
    if np.all(np.isnan(values)):
        return None
    return metrics.iloc[int(np.nanargmax(values))]


def protocol_note(checkpoints: list[str], n_val: int | None = None) -> str:
    """One Markdown paragraph defining every selection label used in a table."""
    parts = []
    for ck in dict.fromkeys(checkpoints):
        text = PROTOCOL[ck]
        if ck.startswith("best_val") and n_val:
            text += f", {n_val} training examples held out of training"
        parts.append(f"*{ROW_SUFFIX[ck]}* = {text}")
    return "Selection: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- hooks of the training loop

def with_validation(subsets: dict[str, np.ndarray], dataset: Dataset, fraction: float,
                    seed: int) -> dict[str, np.ndarray]:
    """``subsets`` with the validation slice as :data:`VAL_KEY` and removed from every other
    ``train/*`` subset (those report examples the model trains on). ``fraction`` 0: unchanged."""
    if fraction <= 0:
        return subsets
    val = validation_ids(dataset.labels("train").numpy(), fraction, seed)
    out = {k: (np.setdiff1d(v, val) if k.startswith("train/") else v) for k, v in subsets.items()}
    out[VAL_KEY] = val
    return out


def training_ids(run_dir: Path, subsets: dict[str, np.ndarray], dataset: Dataset,
                 meta: dict[str, Any]) -> torch.Tensor | None:
    """The training ids (int64 tensor) when a validation slice is held out, else None (all).

    Writes ``<run>/validation.parquet`` for a new run and, on a resume, raises
    :class:`memadv.errors.ConfigError` if the slice differs from the recorded one."""
    val = subsets.get(VAL_KEY)
    if val is None:
        return None
    write_validation(run_dir, val, dataset.labels("train").numpy(), meta)
    n = dataset.labels("train").shape[0]
    return torch.from_numpy(np.setdiff1d(np.arange(n, dtype=np.int64), val))


def best_kinds(subsets: dict[str, np.ndarray]) -> list[str]:
    """Suffixes ``k`` of the ``best_<k>.pt`` files the loop keeps: adv, clean (+ val_adv, val_clean)."""
    kinds = ["adv", "clean"]
    if VAL_KEY in subsets:
        kinds += ["val_adv", "val_clean"]
    return kinds
