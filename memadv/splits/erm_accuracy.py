"""Which ERM models decide the typical-test rule of Section 3.2 (``P(correct) < 0.8``).

The paper's rule asks how often "ERM trained on D" gets a test example right. ``memadv estimate``
writes the full-data models' rate to ``scores/test_acc_full.parquet`` (``memadv.estimate.full_models``);
this module, on the data side, reads it and chooses between it and the subset models'
``test_acc.parquet`` for ``memadv splits --erm-models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.scores.schema import TEST_ACC_COLUMNS, Scores
from memadv.files.tables import read_table
from memadv.errors import SchemaError
from memadv.layout import TEST_ACC_FULL_FILE, locate

ERM_MODEL_CHOICES = ("full", "subset")


def read_full_test_acc(path: str | Path) -> pd.DataFrame | None:
    """``test_acc_full.parquet`` of a run or scores folder, or None when the run has none."""
    f = locate(path).test_acc_full
    if not f.exists():
        return None
    df, _ = read_table(f, required=TEST_ACC_COLUMNS)
    return df


def _imported(meta: dict[str, Any]) -> bool:
    """Scores with no models behind them (imported files: ``n_models`` -1)."""
    n = meta.get("n_models")
    return isinstance(n, int) and n < 0


def use_erm_accuracy(scores: Scores, path: str | Path, erm_models: str) -> Scores:
    """``scores`` whose ``test_acc`` is the full-data models' (``erm_models`` "full", when the run has
    them) or the subset models' ("subset", or "full" without a file: then ``meta`` says so and
    ``meta["test_acc_warning"]`` explains). ``meta["test_acc_source"]`` names the source either way.
    Raises :class:`SchemaError` when the full-data file names other test ids than ``test_acc``."""
    meta = dict(scores.meta)
    full = read_full_test_acc(path) if erm_models == "full" else None
    if full is None:
        meta["test_acc_source"] = "subset"
        if erm_models == "full" and not _imported(meta):  # imported: the rule's own warning says so
            meta["test_acc_warning"] = (f"no {TEST_ACC_FULL_FILE} in the scores (estimate made without --full-models): the "
                                        f"80% rule uses the {meta.get('n_models', '?')} subset models, which are "
                                        f"weaker than ERM on all of D (paper Sec. 3.2)")
        return Scores(mem=scores.mem, infl=scores.infl, test_acc=scores.test_acc, meta=meta)
    if not scores.test_acc.empty and not np.array_equal(np.sort(full["idx"].to_numpy()),
                                                        np.sort(scores.test_acc["idx"].to_numpy())):
        raise SchemaError(f"{TEST_ACC_FULL_FILE} names other test ids than test_acc.parquet; re-run `memadv estimate`")
    meta["test_acc_source"] = "full"
    meta["n_full_models"] = int(full["n_models"].iloc[0]) if len(full) else 0
    if not scores.test_acc.empty:  # the subset models' rate: what infl's two proportions derive from
        sub = scores.test_acc.set_index("idx")["p_correct"]
        full = full.assign(p_correct_subset=sub.reindex(full["idx"].to_numpy()).to_numpy(np.float64))
    return Scores(mem=scores.mem, infl=scores.infl, test_acc=full, meta=meta)


def describe_erm_accuracy(result: Any, meta: dict[str, Any]) -> None:
    """Name the models of the min-test-acc rule in ``result.rules`` and add the fallback warning
    (``result`` is a :class:`memadv.splits.rules.SplitResult`, changed in place)."""
    src = meta.get("test_acc_source", "subset")
    what = (f"{meta.get('n_full_models', '?')} full-data ERM models" if src == "full"
            else "no models (imported scores)" if _imported(meta)
            else f"{meta.get('n_models', '?')} {meta.get('spec', {}).get('subset_ratio', 0.7):g}-subset models")
    for rule in result.rules:
        if str(rule.get("rule", "")).startswith("remove P(correct)"):
            rule["rule"] = f"{rule['rule']} over {what}"
    if meta.get("test_acc_warning"):
        result.warnings.append(str(meta["test_acc_warning"]))
