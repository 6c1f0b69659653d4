"""Net registry: name -> constructor. All nets follow the embed/head contract in ``memadv.nets``."""

from __future__ import annotations

import importlib
from typing import Sequence

from torch import nn

from memadv.errors import UnknownChoiceError

# name -> (module, class). Modules import lazily so the embedded sets never load ResNet code.
NETS: dict[str, tuple[str, str]] = {
    "mlp": ("memadv.nets.small", "MLP"),
    "cnn": ("memadv.nets.small", "SmallCNN"),
    "trades-cnn": ("memadv.nets.small", "TradesCNN"),
    "wk-cnn": ("memadv.nets.small", "WongKolterCNN"),
    "wk-cnn-fc1024": ("memadv.nets.small", "WongKolterCNNFC1024"),
    "wk-cnn-wide": ("memadv.nets.small", "WideWongKolterCNN"),
    "resnet18": ("memadv.nets.resnet", "ResNet18"),
    "preact-resnet18": ("memadv.nets.resnet", "PreActResNet18"),
    "resnet32": ("memadv.nets.resnet", "ResNet32"),
    "wrn-28-10": ("memadv.nets.wrn", "WideResNet28_10"),
}


def build_net(name: str, num_classes: int, in_shape: Sequence[int], mean: Sequence[float],
              std: Sequence[float]) -> nn.Module:
    """Build a freshly initialised net (initialisation follows torch's global RNG)."""
    if name not in NETS:
        raise UnknownChoiceError("net", name, NETS)
    module, cls = NETS[name]
    return getattr(importlib.import_module(module), cls)(num_classes, tuple(in_shape), tuple(mean), tuple(std))
