"""CIFAR-style residual networks: ResNet-18, PreAct-ResNet-18, ResNet-32.

All three follow the :class:`memadv.nets.base.Net` contract: ``Normalize`` is the first layer,
``embed(x)`` is the globally average-pooled output of the last stage (B, D), ``head`` is one
``nn.Linear``. Global pooling is adaptive, so the same net runs on 32x32 (CIFAR) and 64x64
(Tiny ImageNet) inputs, and the stem takes any number of input channels.

* :class:`ResNet18` — He et al. 2016 (arXiv:1512.03385) ResNet-18 in its usual CIFAR form: a 3x3
  stride-1 stem without max-pooling, BasicBlocks [2, 2, 2, 2] of widths 64/128/256/512 (strides
  1/2/2/2), 1x1 convolution + BN projection shortcuts where the shape changes. D = 512;
  about 11.2M parameters with 100 classes. ``base_width`` (default 64) scales all widths, e.g.
  for cheap tests of the same code.
* :class:`PreActResNet18` — the same stages with pre-activation blocks (He et al. 2016,
  arXiv:1603.05027: BN-ReLU-conv, 1x1 convolution shortcuts without BN) and a final BN-ReLU
  before pooling, as used in the adversarial-training literature. D = 512.
* :class:`ResNet32` — He et al.'s CIFAR ResNet with n = 5: a 3x3 stem of 16 channels, 3 stages of
  5 BasicBlocks with widths 16/32/64 (strides 1/2/2) and parameter-free "option A" shortcuts
  (stride-2 subsampling and zero-padding of the new channels), as in the paper's Sec. 4.2.
  D = 64; about 0.47M parameters with 100 classes.

Initialisation: convolutions Kaiming-normal (fan_out, ReLU gain), BatchNorm weight 1 and bias 0,
the linear head PyTorch's default. Everything is plain ``nn`` modules and functional ops without
in-place tricks, so the nets run under ``torch.func.functional_call`` + ``vmap`` with stacked
parameters and BatchNorm buffers (packed training).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memadv.nets.base import Net, Normalize


def init_weights(module: nn.Module) -> None:
    """Standard ResNet initialisation (see module docstring)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(c_in, c_out, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: conv(relu(bn(conv(relu(bn(x)))))) + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input (He et al., Identity Mappings, Fig. 4e).
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        if c_out < c_in:
            raise ValueError("option A shortcuts can only add channels")
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., :: self.stride, :: self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


def _stage(block: type[nn.Module], c_in: int, c_out: int, n: int, stride: int, **kw) -> tuple[nn.Sequential, int]:
    layers = [block(c_in, c_out, stride, **kw)]
    layers += [block(c_out, c_out, 1, **kw) for _ in range(n - 1)]
    return nn.Sequential(*layers), c_out


class ResNet18(Net):
    """CIFAR-style ResNet-18 (see module docstring)."""

    blocks = (2, 2, 2, 2)

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 base_width: int = 64):
        super().__init__()
        widths = tuple(base_width * m for m in (1, 2, 4, 8))
        self.normalize = Normalize(mean, std)
        c = widths[0]
        self.stem = nn.Sequential(conv3x3(in_shape[0], c), nn.BatchNorm2d(c), nn.ReLU())
        stages = []
        for i, (w, n) in enumerate(zip(widths, self.blocks)):
            stage, c = _stage(BasicBlock, c, w, n, 1 if i == 0 else 2)
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)
        self.embed_dim = c
        init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(self.normalize(x))))


class PreActResNet18(Net):
    """CIFAR-style pre-activation ResNet-18 (see module docstring)."""

    blocks = (2, 2, 2, 2)

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 base_width: int = 64):
        super().__init__()
        widths = tuple(base_width * m for m in (1, 2, 4, 8))
        self.normalize = Normalize(mean, std)
        c = widths[0]
        self.stem = conv3x3(in_shape[0], c)
        stages = []
        for i, (w, n) in enumerate(zip(widths, self.blocks)):
            stage, c = _stage(PreActBlock, c, w, n, 1 if i == 0 else 2)
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)
        self.embed_dim = c
        init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.final(self.stages(self.stem(self.normalize(x)))))


class CifarResNet(Net):
    """He et al.'s CIFAR ResNet of depth 6n + 2: stages of n BasicBlocks with widths 16/32/64, option A shortcuts."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 n: int = 5, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        c = widths[0]
        self.stem = nn.Sequential(conv3x3(in_shape[0], c), nn.BatchNorm2d(c), nn.ReLU())
        stages = []
        for i, w in enumerate(widths):
            stage, c = _stage(BasicBlock, c, w, n, 1 if i == 0 else 2, shortcut="A")
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)
        self.embed_dim = c
        init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(self.normalize(x))))


class ResNet32(CifarResNet):
    """ResNet-32: :class:`CifarResNet` with n = 5 (3 stages x 5 blocks, widths 16/32/64)."""

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        super().__init__(num_classes, in_shape, mean, std, n=5)
