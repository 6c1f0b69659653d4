"""Feldman & Zhang's raw per-model arrays -> memadv scores with standard errors (``memadv import-fz DIR``).

Layout of the release (google-research/heldout-influence-estimation, README "Model Checkpoints"):
``<experiment>/<subset_ratio>/<run_id>/aux_arrays.npz``, one file per trained model, with

* ``subsample_idx``: ids (positions in the original training set) the model was trained on;
* ``index_train`` / ``correctness_train``: training-set ids in the subset and whether the final model
  classified each correctly (``index_removed`` / ``correctness_removed``: the held-out rest; train
  plus removed is the whole training set);
* ``index_test`` / ``correctness_test``: the same for the test set.

From M such models memadv computes Eq. 1 exactly as its own estimator does
(:func:`memadv.scores.equations.memorization`: ``mem = p_in - p_out`` with the standard error of a
difference of two proportions) and the test accuracy per example; influence is not derived here
(the released influence matrices are imported from their own files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.data.dataset import Dataset
from memadv.files.npz import load_npz
from memadv.scores.schema import INFL_COLUMNS, Scores, dataset_meta
from memadv.errors import SchemaError

# ``source`` of every score imported from Feldman & Zhang (released files and raw arrays alike).
FZ_SOURCE = "feldman-zhang"
RAW_FILE = "aux_arrays.npz"
RAW_KEYS = ("correctness_train", "correctness_removed", "correctness_test", "index_train", "index_removed",
            "index_test")


def raw_files(folder: Path) -> list[Path]:
    """Every ``aux_arrays.npz`` under ``folder``, in a fixed (sorted) order."""
    return sorted(Path(folder).rglob(RAW_FILE))


def _ids(a: dict[str, np.ndarray], key: str, where: str, n: int | None = None) -> np.ndarray:
    v = a[key]
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer) or (v.size and v.min() < 0):
        raise SchemaError(f"{where}: {key} must be a 1-D array of non-negative integer ids, got {v.dtype} {v.shape}")
    if n is not None and v.size and v.max() >= n:
        raise SchemaError(f"{where}: {key} holds id {int(v.max())}, beyond the {n} examples of the first model")
    return v.astype(np.int64)


def read_raw(folder: str | Path, dataset_name: str, dataset: Dataset | None = None) -> Scores:
    """Scores (mem with standard errors, test accuracy; no influence pairs) from the per-model files
    under ``folder``. Shapes: M files -> masks and correctness of M x n_train and M x n_test.

    Labels come from ``dataset`` (``--data-root``; the raw files carry none), else they are -1 and the
    fingerprints are absent. Raises SchemaError when no file is found, a key is missing, ids are not
    a partition of 0..n_train-1 (train + removed) and of 0..n_test-1, or two models disagree in size.
    """
    from memadv.scores.equations import memorization, test_accuracy

    files = raw_files(Path(folder))
    if not files:
        raise SchemaError(f"no {RAW_FILE} under {str(folder)!r} (expected <ratio>/<run>/{RAW_FILE} per model)")
    masks: list[np.ndarray] = []
    train_ok: list[np.ndarray] = []
    test_ok: list[np.ndarray] = []
    n_train = n_test = None
    for f in files:
        a = load_npz(f)
        where = str(f)
        missing = [k for k in RAW_KEYS if k not in a]
        if missing:
            raise SchemaError(f"{where} lacks keys {missing}")
        tr, rm, te = (_ids(a, f"index_{s}", where) for s in ("train", "removed", "test"))
        if n_train is None:
            n_train, n_test = tr.size + rm.size, te.size
        seen = np.concatenate([tr, rm])
        if seen.size != n_train or not np.array_equal(np.sort(seen), np.arange(n_train)) or \
                te.size != n_test or not np.array_equal(np.sort(te), np.arange(n_test)):
            raise SchemaError(f"{where}: index_train + index_removed must list 0..{n_train - 1} once and index_test "
                              f"0..{n_test - 1} once (as in the first model)")
        mask = np.zeros(n_train, bool)
        mask[tr] = True
        ok = np.zeros(n_train, bool)
        for ids, key in ((tr, "correctness_train"), (rm, "correctness_removed")):
            if a[key].shape != ids.shape:
                raise SchemaError(f"{where}: {key} has shape {a[key].shape}, its index {ids.shape}")
            ok[ids] = a[key].astype(bool)
        t = np.zeros(n_test, bool)
        if a["correctness_test"].shape != te.shape:
            raise SchemaError(f"{where}: correctness_test has shape {a['correctness_test'].shape}, its index {te.shape}")
        t[te] = a["correctness_test"].astype(bool)
        masks.append(mask)
        train_ok.append(ok)
        test_ok.append(t)
    m = np.stack(masks)
    y_train = dataset.labels("train").numpy() if dataset is not None else np.full(n_train, -1)
    y_test = dataset.labels("test").numpy() if dataset is not None else np.full(n_test, -1)
    if dataset is not None and (y_train.size != n_train or y_test.size != n_test):
        raise SchemaError(f"the raw files describe {n_train} train / {n_test} test examples, {dataset.name!r} under "
                          f"--data-root has {y_train.size} / {y_test.size}")
    meta: dict[str, Any] = dataset_meta(dataset) if dataset is not None else {
        "dataset": dataset_name, "n_train": int(n_train), "n_test": int(n_test)}
    meta.update({"dataset": dataset_name, "n_models": len(files), "source": FZ_SOURCE, "se_known": True,
                 "complete": True, "fz_layout": "raw-per-model", "fz_file": str(folder), "has_infl": False})
    return Scores(mem=memorization(m, np.stack(train_ok), y_train), infl=pd.DataFrame(columns=INFL_COLUMNS),
                  test_acc=test_accuracy(np.stack(test_ok), y_test), meta=meta)
