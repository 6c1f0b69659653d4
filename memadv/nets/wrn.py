"""Wide residual networks (Zagoruyko & Komodakis 2016, arXiv:1605.07146), WRN-28-10 in particular.

WRN-d-k: a 3x3 stem of 16 channels, 3 groups of n = (d - 4) / 6 pre-activation "basic-wide" blocks
(BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3) of widths 16k/32k/64k with strides 1/2/2, 1x1
convolution shortcuts where the shape changes (fed with the pre-activated input), a final BN-ReLU,
global average pooling and a linear head. WRN-28-10 has about 36.5M parameters (D = 640).

Contract of :class:`memadv.nets.base.Net`: ``Normalize`` first, ``embed(x)`` -> (B, 64k),
``head`` linear. Pooling is adaptive (32x32 and 64x64 inputs), the stem takes any channel count.
Dropout defaults to 0 and is then left out of the graph entirely, so the net runs under
``torch.func.vmap`` without a ``randomness`` argument; with dropout > 0, vmap needs
``randomness="different"``. Initialisation as in the reference code: convolutions Kaiming-normal
(fan_out, ReLU gain), BatchNorm 1/0, linear bias 0.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memadv.nets.base import Net, Normalize
from memadv.nets.resnet import init_weights


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(Net):
    """WRN-depth-widen (see module docstring)."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 depth: int = 28, widen: int = 10, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.normalize = Normalize(mean, std)
        c = 16
        self.stem = nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False)
        groups = []
        for i, w in enumerate(widths):
            blocks = [WideBlock(c if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1, dropout)
                      for j in range(n)]
            groups.append(nn.Sequential(*blocks))
            c = w
        self.stages = nn.Sequential(*groups)
        self.final = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)
        self.embed_dim = c
        init_weights(self)
        nn.init.zeros_(self.head.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.final(self.stages(self.stem(self.normalize(x)))))


class WideResNet28_10(WideResNet):
    """WRN-28-10, dropout 0 by default."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 dropout: float = 0.0):
        super().__init__(num_classes, in_shape, mean, std, depth=28, widen=10, dropout=dropout)
