"""K independent models evaluated as one module.

The K nets' parameters and buffers are stacked along a new leading dimension
(``torch.func.stack_module_state``) and the forward pass is ``vmap`` of ``functional_call`` over
that dimension, which turns the K small matmuls/convolutions into batched ones. Each model keeps
its own initialisation, and — because the loss is the sum of the K models' losses and SGD is
elementwise — its own gradients and optimizer state. BatchNorm running statistics are stacked
buffers, updated per model.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class PackedNets(nn.Module):
    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        if not nets:
            raise ValueError("PackedNets needs at least one net")
        params, buffers = stack_module_state(list(nets))
        # The template holds the architecture only; its own tensors live on the meta device.
        self._template = [copy.deepcopy(nets[0]).to("meta")]
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.param_names])
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"buf{i}", buffers[n].clone())
        self.k = len(nets)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = dict(zip(self.param_names, self.stacked))
        buffers = {n: getattr(self, f"buf{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """``x`` is (K, B, ...) — one batch per model — or (B, ...) with ``shared_input=True``.
        Returns logits (K, B, classes)."""
        template = self._template[0]
        template.train(self.training)
        params, buffers = self._state()

        def one(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
            return functional_call(template, {**p, **b}, (xx,))

        return vmap(one, in_dims=(0, 0, None if shared_input else 0), randomness="different")(params, buffers, x)


class PackedMLP(nn.Module):
    """K :class:`memadv.nets.small.MLP` nets as batched matmuls (``torch.baddbmm``), no vmap.

    Same parameters as :class:`PackedNets` (stacked along a leading K axis, same names as a plain
    MLP's state dict), same forward contract. Why a hand-packed
    form: for small dense layers, ``vmap(functional_call)`` spends most of a step in per-op
    dispatch (measured in docs/benchmarks.md); K x (B x D_in x D_out) batched GEMMs with a fused
    bias add is what the arithmetic needs. Each model's output row depends on its own weights
    only, so gradients and SGD state stay per model, exactly as with separate nets.
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        from memadv.nets.small import MLP

        if not nets or not all(type(n) is MLP for n in nets):
            raise ValueError("PackedMLP packs a non-empty list of MLP nets")
        params, buffers = stack_module_state(list(nets))
        self.param_names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.param_names])
        norm = nets[0].body[0]
        self.register_buffer("mean", norm.mean.clone(), persistent=False)
        self.register_buffer("std", norm.std.clone(), persistent=False)
        self.buffer_names: list[str] = []
        self.k = len(nets)

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """``x`` is (K, B, C, H, W) or (B, C, H, W) with ``shared_input=True``; returns (K, B, classes)."""
        h = ((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)).flatten(-3)
        # parameters alternate weight (K, out, in), bias (K, out); ReLU between layers, not after the last
        layers = list(zip(self.stacked[0::2], self.stacked[1::2]))
        # The hand-written backward is float32/64 only; under autocast, autograd handles mixed dtypes.
        if not shared_input and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type):
            return _PackedDense.apply(h, *self.stacked)
        for i, (w, b) in enumerate(layers):
            if i == 0 and shared_input:
                # Same input for all K models (evaluation): one (B, in) x (in, K out) GEMM instead of
                # K small ones over an expanded copy of the input.
                kk, out, d = w.shape
                h = torch.addmm(b.reshape(1, kk * out), h, w.reshape(kk * out, d).t())
                h = h.view(-1, kk, out).transpose(0, 1)
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h


class _PackedDense(torch.autograd.Function):
    """Forward and backward of K stacked Linear-ReLU-...-Linear chains, written out by hand.

    Why not autograd of ``baddbmm(b, h, w.transpose(1, 2))``: its weight gradient comes out as
    the transpose of the parameter's layout and is copied once per layer and step, and its ReLU
    keeps a separate output; profiled, those copies were ~20% of a digits step. Here the weight
    gradient ``g^T h`` is computed directly in the (K, out, in) layout, ReLU runs in place on the
    pre-activation (which then serves as the mask), and no input gradient is computed for the
    first layer (the input is data). Math identical to autograd's (tests/estimate/test_packed.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n = len(params) // 2
        acts = [x]
        h = x
        for i in range(n):
            h = torch.baddbmm(params[2 * i + 1].unsqueeze(1), h, params[2 * i].transpose(1, 2))
            if i < n - 1:
                h.clamp_min_(0)
                acts.append(h)
        ctx.save_for_backward(*acts, *params[0::2])
        ctx.n = n
        return h

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        n = ctx.n
        saved = ctx.saved_tensors
        acts, weights = saved[:n], saved[n:]
        grads: list[torch.Tensor | None] = [None] * (2 * n)
        for i in reversed(range(n)):
            grads[2 * i] = torch.bmm(g.transpose(1, 2), acts[i])  # (K, out, in), the parameter's layout
            grads[2 * i + 1] = g.sum(1)
            if i > 0:
                # ReLU backward: acts[i] is the (in-place) ReLU output, > 0 exactly where the input was
                g = torch.ops.aten.threshold_backward(torch.bmm(g, weights[i]), acts[i], 0)
        return (None, *grads)


def pack(nets: Sequence[nn.Module]) -> nn.Module:
    """The fastest exact packed form of ``nets``: :class:`PackedMLP` for MLPs, else :class:`PackedNets`."""
    from memadv.nets.small import MLP

    if nets and all(type(n) is MLP for n in nets):
        return PackedMLP(nets)
    return PackedNets(nets)
