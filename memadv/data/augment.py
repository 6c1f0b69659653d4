"""Batched augmentation on uint8/float image tensors (no per-image PIL): random crop with zero
padding and random horizontal flip, the standard CIFAR recipe, drawn from an explicit generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Augment a batch (..., C, H, W): each image gets its own shift in [-pad, pad]^2 and flip.

    Leading dimensions (e.g. (K, B) for K packed models) are flattened, so one call serves any
    number of models; the draws depend only on ``generator`` and the batch shape.
    """
    if pad == 0 and not flip:
        return x
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    xb = x.reshape(-1, c, h, w)
    n = xb.shape[0]
    if pad > 0:
        # One gather per axis picks each image's window out of the zero-padded batch.
        shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
        padded = F.pad(xb, (pad, pad, pad, pad))
        rows = (torch.arange(h).view(1, h) + shifts[:, :1]).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        cols = (torch.arange(w).view(1, w) + shifts[:, 1:]).view(n, 1, 1, w).expand(n, c, h, w)
        xb = padded.gather(2, rows).gather(3, cols)
    if flip:
        do_flip = torch.rand(n, generator=generator) < 0.5
        xb = torch.where(do_flip.view(n, 1, 1, 1), xb.flip(-1), xb)
    return xb.reshape(*lead, c, h, w)

