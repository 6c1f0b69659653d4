"""Small nets for the embedded data sets (digits 8x8, synthetic long-tail 8x8)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from memadv.nets.base import Net, Normalize


class MLP(Net):
    """Flatten -> [Linear -> ReLU] x depth -> Linear. No batch norm, so packing is exact."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 width: int = 256, depth: int = 1):
        super().__init__()
        layers: list[nn.Module] = [Normalize(mean, std), nn.Flatten()]
        d = int(torch.tensor(in_shape).prod())
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SmallCNN(Net):
    """Two 3x3 conv blocks (32, 64 channels) with max-pooling, global average pool, linear head."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 width: int = 32):
        super().__init__()
        c = in_shape[0]
        self.body = nn.Sequential(
            Normalize(mean, std),
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
