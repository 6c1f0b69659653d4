"""A smaller copy of a data set for a small machine: the first N examples of each class.

"First" is canonical order (the order of the original files), so the choice is deterministic,
needs no seed, and ``per_class=N`` is always a subset of ``per_class=M`` for M > N. The copy keeps
each example's original position as its id (``Dataset.train_ids`` / ``test_ids``) and its
fingerprints hash those ids, so score and split files made on one size are refused on another.
A class with fewer than N examples keeps all of them (the copy is then unbalanced, as the
original is).

The normalisation statistics (``mean``/``std``) are recomputed on the kept training images: they
are a property of the data the models see.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from memadv.config import check_range
from memadv.data.dataset import Dataset, channel_stats


def first_per_class_ids(labels: np.ndarray, n: int) -> np.ndarray:
    """Positions (int64, ascending) of the first ``n`` examples of each class of ``labels`` (int (N,))."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")            # grouped by class, canonical order inside a class
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(labels.shape[0]) - starts            # rank of each example within its class
    return np.sort(order[rank < n]).astype(np.int64)


def first_per_class(dataset: Dataset, per_class: int | None, test_per_class: int | None = None) -> Dataset:
    """``dataset`` reduced to the first ``per_class`` training and ``test_per_class`` test examples
    of each class (None = all of that split). Returns ``dataset`` itself when nothing is removed.
    Raises ConfigError (one line) for a count below 1. Composes: reducing a reduced copy keeps the
    original ids."""
    if per_class is not None:
        check_range("per_class", per_class, 1)
    if test_per_class is not None:
        check_range("test_per_class", test_per_class, 1)
    kept: dict[str, np.ndarray | None] = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        labels = dataset.labels(split).numpy()
        pos = None if n is None else first_per_class_ids(labels, n)
        kept[split] = None if pos is None or pos.shape[0] == labels.shape[0] else pos
    if kept["train"] is None and kept["test"] is None:
        return dataset
    changes: dict = {}
    for split, pos in kept.items():
        if pos is None:
            continue
        idx = torch.from_numpy(pos)
        changes[f"x_{split}"] = dataset.images(split).index_select(0, idx).contiguous()
        changes[f"y_{split}"] = dataset.labels(split).index_select(0, idx).contiguous()
        changes[f"{split}_ids"] = dataset.ids(split)[pos]
    if "x_train" in changes:
        changes["mean"], changes["std"] = channel_stats(changes["x_train"])
    return replace(dataset, **changes)
