"""The in-memory dataset every stage works on.

Images are uint8 tensors (N, C, H, W) in the canonical order of the original files: an example's
id is its position. Models receive floats in [0, 1]; normalisation (``mean``/``std``) happens
inside the model, so that attacks work in pixel space.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "test")


def fingerprint_labels(name: str, split: str, labels: np.ndarray | torch.Tensor) -> str:
    """Hash of (dataset name, split, labels in canonical order): what score files are tied to."""
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    h = hashlib.sha256()
    h.update(f"{name}\0{split}\0{labels.shape[0]}\0".encode())
    h.update(labels.tobytes())
    return h.hexdigest()[:16]


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

    def __post_init__(self) -> None:
        for split in SPLITS:
            x, y = self.images(split), self.labels(split)
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise TypeError(f"{self.name} {split} images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise TypeError(f"{self.name} {split} labels must be int64 (N,), got {y.dtype} {tuple(y.shape)}")
        if not self.class_names:
            self.class_names = [str(c) for c in range(self.num_classes)]

    def images(self, split: str) -> torch.Tensor:
        return {"train": self.x_train, "test": self.x_test}[split]

    def labels(self, split: str) -> torch.Tensor:
        return {"train": self.y_train, "test": self.y_test}[split]

    def fingerprint(self, split: str) -> str:
        return fingerprint_labels(self.name, split, self.labels(split).numpy())

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
