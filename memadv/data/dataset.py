"""The in-memory dataset every stage works on.

Images are uint8 tensors (N, C, H, W) in the canonical order of the original files: an example's
id is its position. Models receive floats in [0, 1]; normalisation (``mean``/``std``) happens
inside the model, so that attacks work in pixel space.

A reduced copy (:func:`memadv.data.per_class.first_per_class`) keeps a subset of the examples in
canonical order; its ``train_ids`` / ``test_ids`` then hold each kept example's original position,
so ids stay the positions in the original files, and its fingerprints cover that choice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from memadv.errors import DatasetError

SPLITS = ("train", "test")


def fingerprint_labels(name: str, split: str, labels: np.ndarray | torch.Tensor,
                       ids: np.ndarray | None = None, content: str | None = None) -> str:
    """Hash of (dataset name, split, labels in canonical order[, kept original ids][, pixel digest]):
    what score files are tied to. ``ids`` (int64 (N,), original positions) is given for a reduced copy
    of a data set; a full data set (``ids`` None) hashes as before, so existing fingerprints stay
    valid. ``content`` is the digest of the decoded pixels of a user's own data set
    (:func:`memadv.data.own_images.pixel_digest`), given with the name :data:`OWN_DATA`."""
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    h = hashlib.sha256()
    h.update(f"{name}\0{split}\0{labels.shape[0]}\0".encode())
    h.update(labels.tobytes())
    if ids is not None:
        h.update(b"\0ids\0")
        h.update(np.ascontiguousarray(np.asarray(ids, dtype=np.int64)).tobytes())
    if content is not None:
        h.update(b"\0pixels\0" + content.encode())
    return h.hexdigest()[:16]


# The name a user's own data set is fingerprinted under, whatever layout (imagefolder, hf, arrays)
# it was read from: the same images and labels have the same fingerprint in every layout.
OWN_DATA = "own-data"


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, of the [0, 1] training images
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    # Ground truth that a generator knows (synthetic-longtail); empty for real data.
    ground_truth: dict[str, Any] = field(default_factory=dict)
    # Original positions (int64 (N,)) of the examples of a reduced copy; None = all, in order.
    train_ids: np.ndarray | None = None
    test_ids: np.ndarray | None = None
    # The options it was loaded with (memadv.data.registry.dataset_options: classes, per_class,
    # test_per_class): recorded in the metadata of every file about it so later stages reload it alike.
    options: dict[str, Any] = field(default_factory=dict)
    # A user's own data set (memadv.data.own_images): the digest of each split's decoded pixels, which
    # its fingerprints cover, and each example's path relative to the data root, indexed by canonical
    # id (written beside the id in split files); both empty for the built-in data sets.
    content: dict[str, str] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLITS:
            x, y = self.images(split), self.labels(split)
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise TypeError(f"{self.name} {split} images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise TypeError(f"{self.name} {split} labels must be int64 (N,), got {y.dtype} {tuple(y.shape)}")
        for split, ids in (("train", self.train_ids), ("test", self.test_ids)):
            if ids is not None and (ids.dtype != np.int64 or ids.shape != (self.labels(split).shape[0],)):
                raise TypeError(f"{self.name} {split} ids must be int64 ({self.labels(split).shape[0]},), "
                                f"got {ids.dtype} {ids.shape}")
            # canonical order is kept by a reduced copy, and positions() relies on it (binary search)
            if ids is not None and ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise ValueError(f"{self.name} {split} ids must be strictly increasing (canonical order)")
        if not self.class_names:
            self.class_names = [str(c) for c in range(self.num_classes)]

    def images(self, split: str) -> torch.Tensor:
        return {"train": self.x_train, "test": self.x_test}[split]

    def labels(self, split: str) -> torch.Tensor:
        return {"train": self.y_train, "test": self.y_test}[split]

    def ids(self, split: str) -> np.ndarray:
        """Canonical ids (int64 (N,)) of the examples of ``split``: their positions in the original
        files (``arange(N)`` for a full data set)."""
        kept = {"train": self.train_ids, "test": self.test_ids}[split]
        return np.arange(self.labels(split).shape[0], dtype=np.int64) if kept is None else kept

    def positions(self, split: str, ids: np.ndarray) -> np.ndarray:
        """Positions in this (possibly reduced) copy of the canonical ``ids`` (int64 array, any
        shape): what indexes ``images(split)``. Raises DatasetError naming an id it does not hold."""
        ids = np.asarray(ids, dtype=np.int64)
        kept = {"train": self.train_ids, "test": self.test_ids}[split]
        n = self.labels(split).shape[0]
        if kept is None:
            bad = ids[(ids < 0) | (ids >= n)]
        else:  # kept is sorted (canonical order), so a binary search finds each id
            pos = np.searchsorted(kept, ids).clip(0, max(n - 1, 0))
            bad = ids[kept[pos] != ids] if n else ids
        if bad.size:
            raise DatasetError(f"{self.name} {split}: id {int(bad.flat[0])} is not in this copy of the data set "
                               f"({n} examples{'' if kept is None else ', reduced'}); the scores or splits belong to another size")
        return ids if kept is None else pos

    def fingerprint(self, split: str) -> str:
        kept = {"train": self.train_ids, "test": self.test_ids}[split]
        if self.content:
            return fingerprint_labels(OWN_DATA, split, self.labels(split).numpy(), kept, self.content[split])
        return fingerprint_labels(self.name, split, self.labels(split).numpy(), kept)

    def example_paths(self, split: str) -> list[str] | None:
        """Relative path of each example of this copy (in its order), None where the data set has none."""
        paths = self.paths.get(split)
        return None if not paths else [paths[i] for i in self.ids(split).tolist()]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"classes={self.num_classes})")


def channel_stats(x: torch.Tensor, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (n-1) std of uint8 images, in [0, 1] units, accumulated in chunks so
    a large set (Tiny ImageNet) never needs a float copy of itself."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        xf = x[start:start + chunk].double().div_(255.0)
        total += xf.sum(dim=(0, 2, 3))
        total_sq += xf.square().sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    var = (total_sq - n * mean.square()) / max(n - 1, 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
