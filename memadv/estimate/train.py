"""ERM training of the estimator's models, each on its own subset, in its own order.

The recipe, top to bottom: for each model m, build the net with ``torch.manual_seed(init seed of
m)``; every epoch, each model draws its own permutation of its own subset from its own generator
("order" seed of m) and, per batch, its own crop/flip numbers from the same generator
(:func:`memadv.data.augment.draw_crop_flip`, in the order a plain loop would draw them); SGD
(momentum, weight decay) with the learning rate x0.1 at each of ``cfg.lr_milestones`` (fractions of
the epochs; default 50% and 75%, the paper's 80/120-of-160 schedule). So model m depends only on
(run seed, m), however it is trained.

One loop (:func:`_train_groups`, one epoch: :func:`_train_epoch`) trains a *group* of k models with one optimizer; a shard's K models
are one group or K, with the same results up to float summation order:

* **packed**: one group of all K in one module (:func:`memadv.nets.packed.pack`); batch b of the
  epoch is, for every model, its own next ``batch_size`` examples (all subsets have the same size,
  so the K models step together); loss = sum over models of each model's mean cross-entropy, so
  each model gets exactly its own gradient, and SGD is elementwise, so one optimizer over the
  stacked parameters equals K separate ones;
* **one-by-one**: K groups of one plain ``nn.Module`` each, trained one after the other.

``packing="auto"`` picks the faster one for the net and device, as measured by
``bench/packed_vs_single.py`` (table :data:`ONE_BY_ONE_ON_CPU`, numbers in docs/benchmarks.md).

The step is GPU-ready: the data set lives on the training device as uint8, each epoch's
permutations and crop/flip numbers are drawn on the CPU once per epoch and moved over in one
copy, augmentation runs batched for all K models on the device, and losses are accumulated on the
device — the only host synchronisation is one finiteness check per epoch (a non-finite loss fails
the shard with :class:`memadv.errors.NonFiniteLossError`).

With ``cfg.proxies`` every step also logs, from the loss and logits it computed anyway, each
example's training loss and correctness (:class:`memadv.estimate.proxy_log.ProxyLog`: cumulative
loss, forgetting events, first epoch learned); the final correctness pass also gives the held-out
loss. The logging reads detached values and draws no random number, so the models are unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memadv.data.augment import apply_crop_flip, draw_crop_flip
from memadv.data.dataset import Dataset
from memadv.estimate.checkpoints import ShardCheckpoint, rng_state, set_rng_state
from memadv.estimate.config import EstimateConfig
from memadv.estimate.proxy_log import ProxyLog
from memadv.errors import NonFiniteLossError
from memadv.estimate.seeds import model_seed, subset_mask
from memadv.nets.packed import PackedNets, pack
from memadv.nets.registry import build_net

# Nets whose packed form loses to a plain one-model loop on CPU (bench/packed_vs_single.py,
# docs/benchmarks.md): vmap turns their convolutions into grouped/batched kernels that oneDNN runs
# slower than K plain convolutions. On CUDA every net trains packed.
ONE_BY_ONE_ON_CPU = frozenset({"cnn", "trades-cnn", "resnet18", "preact-resnet18", "resnet32", "wrn-28-10"})
CROP_PAD = 4  # random-crop padding in pixels (He et al. 2016, Sec. 4.2; the CIFAR standard)


@dataclass
class TrainedModels:
    model_ids: list[int]
    masks: np.ndarray          # (K, n_train) bool
    train_correct: np.ndarray  # (K, n_train) bool
    test_correct: np.ndarray   # (K, n_test) bool
    final_loss: np.ndarray     # (K,) mean loss of each model's last epoch
    models: nn.Module | list[nn.Module]  # as trained: one packed module, or the K plain nets (one by one)
    # training-pass proxies, name -> (K, n_train) (ProxyLog.arrays), and the trained models' loss on
    # every training example (K, n_train) float32; None without cfg.proxies or for a shard resumed
    # from a checkpoint written without them
    proxies: dict[str, np.ndarray] | None = None
    train_loss: np.ndarray | None = None

    @functools.cached_property
    def packed(self) -> nn.Module:
        """The trained models as one packed module, forward(x, shared_input) -> (K, B, classes).

        For nets trained one by one it is stacked on first use (a copy of their parameters), not
        after every shard: the estimator itself needs only the correctness arrays, and stacking
        measured ~17% of a small ResNet-32 shard (docs/benchmarks.md)."""
        return self.models if not isinstance(self.models, list) else pack(self.models)


def train_models(cfg: EstimateConfig, dataset: Dataset, model_ids: Sequence[int],
                 dtype: torch.dtype = torch.float32, masks: np.ndarray | None = None,
                 checkpoint: ShardCheckpoint | None = None) -> TrainedModels:
    """Train models ``model_ids`` of the estimate ``cfg`` on ``dataset`` (see module docstring).

    ``masks`` ((K, n_train) bool, equal row sums) overrides the sampled subsets (the full-data models
    of :mod:`memadv.estimate.full_models`). Returns their subset masks (K, n_train), correctness on
    train (K, n_train) and test (K, n_test), mean loss of the last epoch (K,) and the models
    (``.packed``: as one packed module).
    With ``checkpoint`` (:class:`memadv.estimate.checkpoints.ShardCheckpoint`), training resumes from
    its last saved epoch and saves one at every epoch boundary (after epoch e of the group in
    training: all K models packed, or model j one by one), with results bit-identical to training
    without interruption. Raises NonFiniteLossError when a loss becomes NaN or infinite.
    """
    device = torch.device(cfg.device)
    model_ids = list(model_ids)
    n = dataset.x_train.shape[0]
    if masks is None:
        masks = np.stack([subset_mask(cfg.seed, m, n, cfg.subset_ratio) for m in model_ids])
    subsets = torch.from_numpy(np.stack([np.flatnonzero(row) for row in masks]))  # (K, n_in), equal sizes
    gens = [torch.Generator().manual_seed(model_seed(cfg.seed, m, "order")) for m in model_ids]
    nets = build_models(cfg, dataset, model_ids)
    # The whole training set on the device as uint8 (CIFAR: 150 MB): no host copy per step.
    x_dev, y_dev = dataset.x_train.to(device), dataset.y_train.to(device)
    packed = packing_for(cfg) == "packed"
    fmt = torch.channels_last if cfg.channels_last and not packed else torch.contiguous_format
    groups = [_Group(list(range(len(nets))), pack(nets), True, fmt)] if packed else \
        [_Group([j], net, False, fmt) for j, net in enumerate(nets)]
    log = ProxyLog(len(model_ids), n, device) if cfg.proxies else None
    final_loss, log = _train_groups(cfg, groups, gens, subsets, x_dev, y_dev, model_ids, device, dtype, checkpoint, log)
    trained: nn.Module | list[nn.Module] = groups[0].module if packed else [g.module for g in groups]
    train_correct, train_loss = predict(trained, dataset.x_train, dataset.y_train, device, dtype, loss=log is not None)
    return TrainedModels(
        model_ids=model_ids, masks=masks, train_correct=train_correct,
        test_correct=predict_correct(trained, dataset.x_test, dataset.y_test, device, dtype),
        final_loss=final_loss, models=trained, proxies=None if log is None else log.arrays(),
        train_loss=train_loss if log is not None else None)


@dataclass
class _Group:
    """Models trained together by one optimizer: positions ``members`` of the shard, as one packed
    module (``packed``: all K, :func:`memadv.nets.packed.pack`) or one plain net (one by one;
    ``fmt``: its memory format, channels-last or not)."""
    members: list[int]
    module: nn.Module
    packed: bool
    fmt: torch.memory_format

    @property
    def rows(self) -> slice:
        return slice(self.members[0], self.members[-1] + 1)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        """(k, B, C, H, W) -> (k, B, classes)."""
        if self.packed:
            return self.module(xb)
        return self.module(xb[0].contiguous(memory_format=self.fmt)).unsqueeze(0)


def _train_groups(cfg: EstimateConfig, groups: list[_Group], gens: list[torch.Generator], subsets: torch.Tensor,
                  x_dev: torch.Tensor, y_dev: torch.Tensor, model_ids: list[int], device: torch.device,
                  dtype: torch.dtype, ckpt: ShardCheckpoint | None, log: ProxyLog | None
                  ) -> tuple[np.ndarray, ProxyLog | None]:
    """Train every group in turn; returns each model's mean loss in its last epoch (K,) and the log.

    The checkpoint (one schema for both packings) holds the finished groups' states (``groups``), the
    group in training (``group``, ``model``, ``optimizer``, next ``epoch``), every model's last-epoch
    loss (``final``), every random stream and the proxy log."""
    final = np.zeros(len(model_ids))
    state = _upgrade(ckpt.load()) if ckpt is not None else None
    at_group, at_epoch = (int(state["group"]), int(state["epoch"])) if state is not None else (0, 0)
    if state is not None:
        if "final" in state:
            final[:] = state["final"].numpy()
        _restore_generators(gens, state, device)
        if log is not None and "proxies" not in state:
            log = None  # written without proxies: the epochs before it were not logged
        elif log is not None:
            log.load_state_dict(state["proxies"])
    total = len(groups) * cfg.epochs
    for g, group in enumerate(groups):
        if g < at_group:  # trained before the checkpoint
            group.module.to(device=device, dtype=dtype).load_state_dict(state["groups"][g])
            continue
        group.module.to(device=device, dtype=dtype, memory_format=group.fmt)
        opt = _sgd(group.module.parameters(), cfg, device)
        first = 0
        if state is not None and g == at_group:
            group.module.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            first = at_epoch
        for epoch in range(first, cfg.epochs):
            final[group.rows] = _train_epoch(cfg, group, opt, epoch, gens, subsets, x_dev, y_dev, model_ids, device,
                                             dtype, log)
            done = g * cfg.epochs + epoch + 1
            if ckpt is not None and done < total:
                ckpt.save({"groups": [h.module.state_dict() for h in groups[:g]], "group": g,
                           "model": group.module.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                           "final": torch.from_numpy(final.copy()), **_generator_state(gens, device),
                           **({} if log is None else {"proxies": log.state_dict()})}, done, total)
        group.module.to(memory_format=torch.contiguous_format)
    return final, log


def _train_epoch(cfg: EstimateConfig, group: _Group, opt: torch.optim.SGD, epoch: int, gens: list[torch.Generator],
                 subsets: torch.Tensor, x_dev: torch.Tensor, y_dev: torch.Tensor, model_ids: list[int],
                 device: torch.device, dtype: torch.dtype, log: ProxyLog | None) -> np.ndarray:
    """One epoch of ``group``: each model its own permutation and augmentation, its own mean
    cross-entropy; returns each model's mean loss over the epoch (k,)."""
    for param_group in opt.param_groups:
        param_group["lr"] = lr_at(epoch, cfg)
    group.module.train()
    k = len(group.members)
    draws = [draw_epoch(gens[j], subsets[j], cfg.batch_size, cfg.augment) for j in group.members]
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    n_batches = 0
    for ids, shifts, flips in _batches(draws, cfg.batch_size, device):
        xb = apply_crop_flip(x_dev[ids], shifts, flips, CROP_PAD)  # (k, B, C, H, W) uint8
        xb = xb.to(dtype).div_(255.0)
        yb = y_dev[ids]
        with _autocast(cfg, device):
            logits = group(xb)  # (k, B, classes)
        per_example = F.cross_entropy(logits.to(dtype).flatten(0, 1), yb.flatten(), reduction="none").view(k, -1)
        per_model = per_example.mean(1)
        opt.zero_grad(set_to_none=True)
        per_model.sum().backward()
        opt.step()
        loss_sum += per_model.detach()
        n_batches += 1
        if log is not None:
            # max(-1).indices: argmax's first-maximum rule, cheaper (1.5 vs 2.4 ms, (100, 64, 10), 1 thread)
            log.record(group.rows, ids, per_example.detach(), logits.detach().max(-1).indices == yb)
    _check_finite(loss_sum, epoch, [model_ids[j] for j in group.members], cfg)
    if log is not None:
        log.end_epoch(epoch, group.rows)
    return (loss_sum / max(n_batches, 1)).cpu().numpy()


def lr_at(epoch: int, cfg: EstimateConfig) -> float:
    """Step schedule: x0.1 at each of ``cfg.lr_milestones`` (fractions of the epochs)."""
    return cfg.lr * (0.1 ** sum(epoch >= int(cfg.epochs * f) for f in cfg.lr_milestones))


def build_models(cfg: EstimateConfig, dataset: Dataset, model_ids: Sequence[int]) -> list[torch.nn.Module]:
    nets = []
    for m in model_ids:
        torch.manual_seed(model_seed(cfg.seed, m, "init"))
        nets.append(build_net(cfg.net, dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std))
    return nets


def packing_for(cfg: EstimateConfig) -> str:
    """'packed' or 'one-by-one': ``cfg.packing``, or for 'auto' the faster path measured for the net/device."""
    if cfg.packing != "auto":
        return cfg.packing
    on_cpu = torch.device(cfg.device).type == "cpu"
    return "one-by-one" if on_cpu and cfg.net in ONE_BY_ONE_ON_CPU else "packed"


@dataclass
class EpochDraws:
    """One model's random numbers for one epoch (all on the CPU, drawn from its own generator).

    ids (n_in,) int64: its subset in this epoch's order; shifts (n_in, 2) / flips (n_in,): the crop
    and flip of each position, or None without augmentation.
    """
    ids: torch.Tensor
    shifts: torch.Tensor | None
    flips: torch.Tensor | None


def draw_epoch(gen: torch.Generator, subset: torch.Tensor, batch_size: int, augment: bool) -> EpochDraws:
    """Draw in the order a plain loop does: the permutation, then per batch its crops and flips."""
    ids = subset[torch.randperm(subset.shape[0], generator=gen)]
    if not augment:
        return EpochDraws(ids, None, None)
    draws = [draw_crop_flip(gen, len(b), CROP_PAD, True) for b in ids.split(batch_size)]
    return EpochDraws(ids, torch.cat([s for s, _ in draws]), torch.cat([f for _, f in draws]))


def _sgd(params: Iterator[nn.Parameter], cfg: EstimateConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum and weight decay (the estimator's recipe, docs/estimator.md), as PyTorch's
    fused kernel where it exists (CPU, CUDA): one pass over the parameters instead of several.
    Measured for a digits shard's packed MLP (1.9M parameters, 2 threads): optimizer step 2.9 ms ->
    1.1 ms, whole training step 1.2x faster. Same update rule; results equal up to float rounding."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           fused=fused or None)


def _autocast(cfg: EstimateConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if not cfg.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _check_finite(loss_sum: torch.Tensor, epoch: int, model_ids: Sequence[int], cfg: EstimateConfig) -> None:
    """One host synchronisation per epoch: fail the shard when any model's loss is NaN or infinite."""
    bad = ~torch.isfinite(loss_sum.cpu())
    if bool(bad.any()):

        which = [model_ids[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise NonFiniteLossError(f"training loss became NaN or infinite in epoch {epoch} for model(s) "
                                 f"{', '.join(map(str, which[:5]))}{' ...' if len(which) > 5 else ''} "
                                 f"(net {cfg.net}, lr {lr_at(epoch, cfg):g}); lower --lr")


def _batches(draws: Sequence[EpochDraws], batch_size: int, device: torch.device
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """(K, B) ids and (K*B, 2) shifts / (K*B,) flips per batch, moved to the device once per epoch."""
    ids = torch.stack([d.ids for d in draws]).to(device, non_blocking=True)
    shifts = flips = None
    if draws[0].shifts is not None:
        shifts = torch.stack([d.shifts for d in draws]).to(device, non_blocking=True)  # (K, n_in, 2)
        flips = torch.stack([d.flips for d in draws]).to(device, non_blocking=True)    # (K, n_in)
    for start in range(0, ids.shape[1], batch_size):
        sl = slice(start, start + batch_size)
        yield (ids[:, sl],
               None if shifts is None else shifts[:, sl].reshape(-1, 2),
               None if flips is None else flips[:, sl].reshape(-1))


def _generator_state(gens: Sequence[torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every random stream training reads, as tensors: each model's generator and torch's global RNG
    (dropout-like layers under vmap draw from it), so a resumed shard draws what an uninterrupted one would."""
    return {"generators": [g.get_state() for g in gens], "rng": rng_state(device)}


def _restore_generators(gens: Sequence[torch.Generator], state: dict[str, Any], device: torch.device) -> None:
    for g, s in zip(gens, state["generators"]):
        g.set_state(s)
    set_rng_state(state["rng"], device)


def _upgrade(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint of an older memadv in the one schema of :func:`_train_groups`: its packed form
    (``model`` of all K, no ``group``) or its one-by-one form (``models`` of nets 0..j, ``model_index`` j)."""
    if state is None or "group" in state:
        return state
    if "model_index" in state:
        j = int(state["model_index"])
        return {**state, "groups": state["models"][:j], "group": j, "model": state["models"][j]}
    return {**state, "groups": [], "group": 0}  # its "final" comes from the epochs still to train


@torch.no_grad()
def predict(models: nn.Module | list[nn.Module], x: torch.Tensor, y: torch.Tensor, device: torch.device,
            dtype: torch.dtype, chunk: int = 1024, loss: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, N) bool: whether each model classifies each example correctly, and with ``loss`` its
    (K, N) float32 cross-entropy on it (else None), from the same forward pass.

    ``models`` is a packed module (``forward(x, shared_input=True)`` -> (K, B, classes)) or a list
    of K plain nets, evaluated one by one (for nets whose packed form is slower on the device).
    """
    plain = isinstance(models, list)
    for m in (models if plain else [models]):
        m.eval()
    out, losses = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(device=device, dtype=dtype).div_(255.0)
        yb = y[start:start + chunk].to(device)
        logits = torch.stack([m(xb) for m in models]) if plain else models(xb, shared_input=True)
        out.append(logits.argmax(-1) == yb.view(1, -1))
        if loss:
            losses.append(F.cross_entropy(logits.float().flatten(0, 1), yb.repeat(logits.shape[0]),
                                          reduction="none").view(logits.shape[0], -1))
    return torch.cat(out, dim=1).cpu().numpy(), torch.cat(losses, dim=1).cpu().numpy() if loss else None


def predict_correct(models: nn.Module | list[nn.Module], x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    dtype: torch.dtype, chunk: int = 1024) -> np.ndarray:
    """(K, N) bool: :func:`predict` without the loss."""
    return predict(models, x, y, device, dtype, chunk)[0]


__all__ = ["TrainedModels", "train_models", "build_models", "lr_at", "packing_for", "predict", "predict_correct",
           "PackedNets", "ONE_BY_ONE_ON_CPU"]
