"""Packed ERM training of many models, each on its own subset, in its own order.

The recipe, top to bottom: for each model m, build the net with ``torch.manual_seed(init seed of
m)``; pack the K nets; every epoch, each model draws its own permutation of its own subset from
its own generator; batch b of the epoch is, for every model, its own next ``batch_size`` examples
(all subsets have the same size, so the K models step together); augmentation per model from the
same generator; loss = sum over models of each model's mean cross-entropy, so each model gets
exactly its own gradient; SGD (momentum, weight decay) is elementwise, so one optimizer over the
stacked parameters equals K separate ones. The learning rate drops x0.1 at 50% and 75% of the
epochs (the paper's 80/120-of-160 schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from memadv.data.augment import random_crop_flip
from memadv.data.dataset import Dataset
from memadv.estimate.config import EstimateConfig
from memadv.estimate.seeds import model_seed, subset_mask
from memadv.nets.packed import PackedNets
from memadv.nets.registry import build_net


@dataclass
class TrainedModels:
    model_ids: list[int]
    masks: np.ndarray          # (K, n_train) bool
    train_correct: np.ndarray  # (K, n_train) bool
    test_correct: np.ndarray   # (K, n_test) bool
    final_loss: np.ndarray     # (K,) mean loss of each model's last epoch
    packed: PackedNets         # the trained models, for callers that want more than correctness


def lr_at(epoch: int, cfg: EstimateConfig) -> float:
    """Step schedule: x0.1 at 50% and at 75% of the epochs."""
    return cfg.lr * (0.1 ** sum(epoch >= int(cfg.epochs * f) for f in (0.5, 0.75)))


def build_models(cfg: EstimateConfig, dataset: Dataset, model_ids: Sequence[int]) -> list[torch.nn.Module]:
    nets = []
    for m in model_ids:
        torch.manual_seed(model_seed(cfg.seed, m, "init"))
        nets.append(build_net(cfg.net, dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std))
    return nets


def epoch_batches(order_gens: list[torch.Generator], subsets: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Each model's own permutation of its own subset, cut into batches: list of (K, B) id tensors."""
    perms = torch.stack([subsets[k][torch.randperm(subsets.shape[1], generator=g)] for k, g in enumerate(order_gens)])
    return list(perms.split(batch_size, dim=1))


@torch.no_grad()
def predict_correct(packed: PackedNets, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    dtype: torch.dtype, chunk: int = 1024) -> np.ndarray:
    """(K, N) bool: whether each model classifies each example correctly."""
    packed.eval()
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(device=device, dtype=dtype).div_(255.0)
        pred = packed(xb, shared_input=True).argmax(-1).cpu()
        out.append(pred == y[start:start + chunk].view(1, -1))
    return torch.cat(out, dim=1).numpy()


def train_models(cfg: EstimateConfig, dataset: Dataset, model_ids: Sequence[int],
                 dtype: torch.dtype = torch.float32, masks: np.ndarray | None = None) -> TrainedModels:
    """Train models ``model_ids`` on their subsets; ``masks`` ((K, n_train) bool, equal row sums)
    overrides the sampled subsets (issue 9 hook: full-data models, memadv.estimate.full_models)."""
    device = torch.device(cfg.device)
    model_ids = list(model_ids)
    n = dataset.x_train.shape[0]
    if masks is None:
        masks = np.stack([subset_mask(cfg.seed, m, n, cfg.subset_ratio) for m in model_ids])
    subsets = torch.from_numpy(np.stack([np.flatnonzero(row) for row in masks]))  # (K, n_in), equal sizes
    order_gens = [torch.Generator().manual_seed(model_seed(cfg.seed, m, "order")) for m in model_ids]

    packed = PackedNets(build_models(cfg, dataset, model_ids)).to(device=device, dtype=dtype)
    opt = torch.optim.SGD(packed.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    x_all, y_all = dataset.x_train, dataset.y_train
    k = len(model_ids)
    final_loss = np.zeros(k)
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch, cfg)
        packed.train()
        loss_sum = torch.zeros(k, dtype=torch.float64)
        n_batches = 0
        for ids in epoch_batches(order_gens, subsets, cfg.batch_size):
            xb = x_all[ids]  # (K, B, C, H, W) uint8
            if cfg.augment:
                xb = torch.stack([random_crop_flip(xb[j], order_gens[j]) for j in range(k)])
            xb = xb.to(device=device, dtype=dtype).div_(255.0)
            yb = y_all[ids].to(device)
            logits = packed(xb)  # (K, B, classes)
            per_model = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(k, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()
            opt.step()
            loss_sum += per_model.detach().double().cpu()
            n_batches += 1
        final_loss = (loss_sum / max(n_batches, 1)).numpy()
    return TrainedModels(
        model_ids=model_ids, masks=masks,
        train_correct=predict_correct(packed, dataset.x_train, dataset.y_train, device, dtype),
        test_correct=predict_correct(packed, dataset.x_test, dataset.y_test, device, dtype),
        final_loss=final_loss, packed=packed)
