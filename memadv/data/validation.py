"""A stratified validation slice of the training set, for held-out checkpoint selection.

Selecting "best" checkpoints by test-set accuracy and reporting them on the same test set is
optimistically biased (the paper does it; memadv's default keeps the paper's protocol). The
alternative that ``memadv train --val-fraction F`` offers: hold out a slice of the training set,
never train on it, pick the checkpoints on it, report them on the test set.

The slice is a pure function of (training labels, fraction, seed): per class ``c`` with ``n_c``
examples it keeps ``round(F * n_c)`` of them (at least 1 when ``F > 0`` and ``n_c >= 2``; never
all of them), chosen by a permutation drawn from ``numpy.random.default_rng(SeedSequence([seed,
VAL_PURPOSE]))``. So it is stable across resumes and across machines, and the same for every run
that uses the same ``--val-seed`` (memadv's default: one slice for all methods and seeds, so their
selected checkpoints are compared on the same examples).

Reference: Rice et al. 2020 (``locuslab/robust_overfitting``, ``generate_validation.py`` lines 5-9:
1,000 random CIFAR-10 training images, seed 0; ``train_cifar.py`` lines 383-431: the checkpoint of
highest validation PGD accuracy, ``model_val.pth``). memadv stratifies by class so that small
classes (and the 8x8 embedded sets) get validation examples of every class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from memadv.config import check_range
from memadv.files.tables import read_table, write_table
from memadv.errors import ConfigError, SchemaError

VAL_PURPOSE = 7_919  # a constant mixed into the seed so the slice never equals another draw of the same seed
VALIDATION_FILE = "validation.parquet"
VALIDATION_COLUMNS = ["idx", "label"]


def validation_ids(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted int64 training ids of the stratified validation slice.

    ``labels``: (n_train,) integer class labels in canonical order. ``fraction`` in [0, 1): share of
    each class held out (0 gives an empty slice). Raises :class:`ConfigError` for a fraction outside
    [0, 1).
    """
    check_range("val_fraction", fraction, 0.0, 1.0, hi_open=True)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if fraction == 0 or labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), VAL_PURPOSE]))
    order = rng.permutation(labels.size)  # one permutation for all classes: class c takes its first k_c ids in it
    picked = []
    for c in np.unique(labels):
        members = order[labels[order] == c]
        n_c = members.size
        k = int(round(fraction * n_c))
        if n_c >= 2:
            k = min(max(k, 1), n_c - 1)  # every class keeps training examples and gets a validation example
        else:
            k = 0
        picked.append(members[:k])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def write_validation(run_dir: Path, ids: np.ndarray, labels: np.ndarray, meta: dict) -> Path:
    """``<run>/validation.parquet`` (columns idx, label) for a new run; for an existing one, check
    that the slice is the same and raise :class:`ConfigError` when it is not (a resume must never
    train on examples that earlier epochs held out)."""
    path = Path(run_dir) / VALIDATION_FILE
    labels = np.asarray(labels).astype(np.int64)
    if path.exists():
        old = read_validation(run_dir)
        if not np.array_equal(old, np.asarray(ids, dtype=np.int64)):
            raise ConfigError(f"{path} holds another validation slice ({old.size} ids) than this configuration "
                              f"gives ({len(ids)} ids); re-run with the run's own --val-fraction/--val-seed and data")
        return path
    write_table(path, pd.DataFrame({"idx": np.asarray(ids, np.int64), "label": labels[np.asarray(ids, np.int64)]}),
                meta)
    return path


def read_validation(run_dir: Path) -> np.ndarray:
    """Sorted int64 ids of a run's validation slice (empty when the run kept none)."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.exists():
        return np.zeros(0, dtype=np.int64)
    df, _ = read_table(path, required=VALIDATION_COLUMNS)
    ids = df["idx"].to_numpy(np.int64)
    if ids.size and (np.any(np.diff(ids) <= 0) or ids.min() < 0):
        raise SchemaError(f"{path}: ids must be sorted, unique and non-negative")
    return ids
