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

    def unpacked_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """State dict of model k, loadable into a fresh net of the same architecture."""
        params, buffers = self._state()
        return {n: t[k].detach().clone() for n, t in {**params, **buffers}.items()}
