"""Batched augmentation on uint8/float image tensors (no per-image PIL): random crop with zero
padding and random horizontal flip, the standard CIFAR recipe (He et al. 2016, Sec. 4.2: pad 4,
random 32x32 crop, random flip), drawn from an explicit generator.

Drawing and applying are split so that the training step can draw each model's random numbers
from that model's own CPU generator (the seeds contract) and then apply them to all K models'
batches at once on the training device: :func:`draw_crop_flip` + :func:`apply_crop_flip` equal
:func:`random_crop_flip` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_crop_flip(generator: torch.Generator, n: int, pad: int = 4,
                   flip: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Random numbers of :func:`random_crop_flip` for ``n`` images, in the order it draws them.

    Returns ``(shifts, flips)``: shifts (n, 2) int64 in [0, 2 pad] (row, column offset into the
    padded image), or None when ``pad == 0``; flips (n,) bool, or None when ``flip`` is False.
    """
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator) if pad > 0 else None
    flips = (torch.rand(n, generator=generator) < 0.5) if flip else None
    return shifts, flips


def apply_crop_flip(x: torch.Tensor, shifts: torch.Tensor | None, flips: torch.Tensor | None,
                    pad: int = 4) -> torch.Tensor:
    """Apply drawn crops/flips to a batch (..., C, H, W) whose leading dims flatten to n images.

    ``shifts`` (n, 2) and ``flips`` (n,) must be on ``x``'s device (or None to skip that part).
    Runs as two gathers and one ``where`` for any number of images and models, so it needs no
    Python loop and no host synchronisation.
    """
    if shifts is None and flips is None:
        return x
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    xb = x.reshape(-1, c, h, w)
    n = xb.shape[0]
    dev = xb.device
    if shifts is not None and pad > 0:
        # One gather per axis picks each image's window out of the zero-padded batch.
        padded = F.pad(xb, (pad, pad, pad, pad))
        rows = (torch.arange(h, device=dev).view(1, h) + shifts[:, :1]).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        cols = (torch.arange(w, device=dev).view(1, w) + shifts[:, 1:]).view(n, 1, 1, w).expand(n, c, h, w)
        xb = padded.gather(2, rows).gather(3, cols)
    if flips is not None:
        xb = torch.where(flips.view(n, 1, 1, 1), xb.flip(-1), xb)
    return xb.reshape(*lead, c, h, w)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Augment a batch (..., C, H, W): each image gets its own shift in [-pad, pad]^2 and flip.

    Leading dimensions (e.g. (K, B) for K packed models) are flattened, so one call serves any
    number of models; the draws depend only on ``generator`` and the batch shape.
    """
    if pad == 0 and not flip:
        return x
    n = x[..., 0, 0, 0].numel()
    shifts, flips = draw_crop_flip(generator, n, pad, flip)
    return apply_crop_flip(x, None if shifts is None else shifts.to(x.device),
                           None if flips is None else flips.to(x.device), pad)
