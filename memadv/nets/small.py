"""Small nets: for the embedded data sets (digits 8x8, synthetic long-tail 8x8) and for
MNIST/Fashion-MNIST-sized images (28x28)."""

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


class TradesCNN(Net):
    """The small convnet of the TRADES reference code for MNIST (Zhang et al. 2019,
    github.com/yaodongyu/TRADES, ``models/small_cnn.py``), also used by MART for MNIST.

    Layers: conv3x3(C, 32) ReLU, conv3x3(32, 32) ReLU, maxpool 2, conv3x3(32, 64) ReLU,
    conv3x3(64, 64) ReLU, maxpool 2, flatten, Linear(64 h w, 200) ReLU, Linear(200, 200) ReLU
    = ``embed`` (B, 200), ``head`` Linear(200, classes). On 1x28x28 the flattened map is 64x4x4 as
    in the reference; on 3x32x32 it is 64x5x5.

    Deviations from the reference, and why:
    * convolutions are unpadded as in the reference only for inputs of at least 16x16; smaller
      inputs (digits 8x8) use padding 1, since four unpadded 3x3 convolutions and two poolings do
      not fit in 8x8;
    * dropout (0.5 in the reference, before the second linear layer) is left out: it would draw
      from torch's global RNG, so packed and one-by-one training would differ, and the
      estimator's seeds contract (model m depends only on (run seed, m)) would not hold;
    * ``Normalize`` is the first layer (the contract of :mod:`memadv.nets`).
    Initialisation as in the reference: convolutions Kaiming-normal (fan_in, ReLU gain) with zero
    bias, the last layer zero weight and bias, the other linear layers PyTorch's default.
    """

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        c, h, w = in_shape
        pad = 1 if min(h, w) < 16 else 0

        def out(size: int) -> int:  # two 3x3 convs (shrink by 2 each without padding), then pool 2
            return (size - 4 + 4 * pad) // 2

        fh, fw = out(out(h)), out(out(w))
        if fh < 1 or fw < 1:
            raise ValueError(f"TradesCNN needs inputs of at least 8x8, got {h}x{w}")
        self.body = nn.Sequential(
            Normalize(mean, std),
            nn.Conv2d(c, 32, 3, padding=pad), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=pad), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * fh * fw, 200), nn.ReLU(),
            nn.Linear(200, 200), nn.ReLU(),
        )
        self.head = nn.Linear(200, num_classes)
        self.embed_dim = 200
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class WongKolterCNN(Net):
    """The MNIST/Fashion-MNIST convnet of Wong, Rice & Kolter 2020, "Fast is better than free"
    (github.com/locuslab/fast_adversarial, ``MNIST/mnist_net.py``), with its widths scaled.

    Layers: conv4x4 stride 2 pad 1 (C, 16 k) ReLU, conv4x4 stride 2 pad 1 (16 k, 32 k) ReLU,
    flatten, Linear(32 k h/4 w/4, hidden) ReLU = ``embed`` (B, hidden), ``head`` Linear(hidden, classes);
    k = ``channels_scale``, hidden = ``hidden`` (1 and 100 = the reference: 166,406 parameters on
    1x28x28). Initialisation: PyTorch's default, as the reference. No normalisation layer beyond
    ``Normalize``, no dropout, so packed and one-by-one training agree.
    """

    channels_scale = 1
    hidden = 100

    def __init__(self, num_classes: int, in_shape: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        c, h, w = in_shape
        k = self.channels_scale

        def out(size: int) -> int:  # a 4x4 convolution, stride 2, padding 1
            return (size + 2 - 4) // 2 + 1

        fh, fw = out(out(h)), out(out(w))
        self.body = nn.Sequential(
            Normalize(mean, std),
            nn.Conv2d(c, 16 * k, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16 * k, 32 * k, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * k * fh * fw, self.hidden), nn.ReLU(),
        )
        self.head = nn.Linear(self.hidden, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class WongKolterCNNFC1024(WongKolterCNN):
    """:class:`WongKolterCNN` with a 1,024-unit hidden layer instead of 100 (1,625,402 parameters on
    1x28x28): the Fashion-MNIST study's net (README, "The conv-net study"). Chosen by measurement
    (docs/estimator.md, "Choosing the study's net"): under PGD-10 training at eps 0.05 on 2,000
    images it fits the training set (the premise of the paper's Section 3.1) where the ``mlp`` does
    not, at 3.1 s per epoch on one core; the reference width fits less, the 8x-channel net costs 10x
    more per epoch. Capacity goes into the cheap fully connected layer, as in the reference
    MNIST net's own 100-unit layer holding most of its parameters."""

    hidden = 1024


class WideWongKolterCNN(WongKolterCNN):
    """:class:`WongKolterCNN` with 8x the channels (128, 256; 1,782,230 parameters on 1x28x28), the
    shape of an earlier pilot. Measured here: 675 forward-backward passes per second on one core
    (32.6 s per PGD-10 epoch on 2,000 images), 10x ``wk-cnn-fc1024`` for about the same parameter
    count, so the study uses that one; this one stays for machines with a GPU."""

    channels_scale = 8
