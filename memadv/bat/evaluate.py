"""Accuracy of a model on named index subsets, clean and under attack (clean, FGSM, PGD-20, CW, AA).

The subsets are the paper's: all / typical / atypical examples of the train and test splits
(``train/all``, ``test/atypical``, ...; keys of :func:`memadv.splits.files.read_split_sets` plus
``<split>/all``). Each example is attacked once, however many subsets hold it: per split, the union
of the requested indices is evaluated and every subset's accuracy is the mean over its members.

The model's train/eval mode is set to eval for the evaluation and restored afterwards; the only
randomness (PGD / CW random starts, AutoAttack's seed) comes from a ``torch.Generator`` seeded by
the caller, so evaluating the same weights twice gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from memadv.bat import attacks
from memadv.data.dataset import Dataset
from memadv.errors import ConfigError, UnknownChoiceError

ATTACK_NAMES = ("clean", "fgsm", "pgd", "cw", "aa")


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation attack. ``label`` names its metric column (``clean``, ``adv``, ``fgsm``, ...)."""

    name: str  # one of ATTACK_NAMES
    eps: float = 0.0
    step_size: float = 0.0
    steps: int = 0
    label: str = ""
    confidence: float = 50.0  # CW margin kappa

    def __post_init__(self) -> None:
        if self.name not in ATTACK_NAMES:
            raise UnknownChoiceError("attack", self.name, ATTACK_NAMES)
        if not self.label:
            object.__setattr__(self, "label", self.name)


def paper_attacks(eps: float, step_size: float, steps: int = 20, cw_confidence: float = 50.0,
                  cw_steps: int = 30, cw_step_size: float | None = None) -> list[AttackSpec]:
    """The columns of the paper's Table 4: clean, FGSM, PGD-20, CW-inf, AA.

    CW-inf is PGD on the CW margin (``attacks.cw_loss``) with ``cw_steps`` steps of ``cw_step_size``
    (default ``step_size``) from a uniform random start: 30 steps of eps/4 in the reference
    evaluation (Friendly-Adversarial-Training ``attack_test.py`` l. 62, ``perturb_steps=30,
    step_size=0.031 / 4, rand_init=True``)."""
    cw_step = step_size if cw_step_size is None else cw_step_size
    return [AttackSpec("clean"), AttackSpec("fgsm", eps), AttackSpec("pgd", eps, step_size, steps),
            AttackSpec("cw", eps, cw_step, cw_steps, confidence=cw_confidence), AttackSpec("aa", eps)]


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The attacked inputs for ``spec`` (``x`` itself for ``clean``)."""
    if spec.name == "clean":
        return x
    if spec.name == "fgsm":
        return attacks.fgsm(model, x, y, spec.eps)
    if spec.name == "pgd":
        return attacks.pgd(model, x, y, spec.eps, spec.step_size, spec.steps, random_start=True, generator=generator)
    if spec.name == "cw":
        return attacks.cw_inf(model, x, y, spec.eps, spec.step_size, spec.steps, confidence=spec.confidence,
                              generator=generator)
    return attacks.autoattack(model, x, y, spec.eps, version="standard", generator=generator)


def correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec, *,
            batch_size: int = 256, device: torch.device | str = "cpu",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-example correctness (bool, CPU) of ``model`` on uint8 ``images`` under ``spec``."""
    out = torch.zeros(images.shape[0], dtype=torch.bool)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device).float().div_(255.0)
            y = labels[start:start + batch_size].to(device)
            x_adv = perturb(model, x, y, spec, generator)
            with torch.no_grad():
                pred = model(x_adv).argmax(dim=1)
            out[start:start + x.shape[0]] = (pred == y).cpu()
    finally:
        model.train(was_training)
    return out


def subset_accuracy(model: nn.Module, dataset: Dataset, subsets: Mapping[str, np.ndarray],
                    specs: Sequence[AttackSpec], *, batch_size: int = 256, device: torch.device | str = "cpu",
                    seed: int = 0) -> dict[str, float]:
    """Accuracy per subset and attack: ``{"<split>/<set>/<label>": acc, "<split>/<set>/n": count}``.

    ``subsets`` maps ``"<split>/<set>"`` (split in train/test) to example ids of that split. An
    empty subset gets accuracy NaN. The generator is re-seeded with ``seed`` for every attack, so
    the numbers do not depend on which other subsets or attacks are evaluated alongside.
    """
    results: dict[str, float] = {}
    by_split: dict[str, dict[str, np.ndarray]] = {}
    for key, ids in subsets.items():
        split = key.split("/", 1)[0]
        if split not in ("train", "test"):
            raise ConfigError(f"subset name {key!r} must start with 'train/' or 'test/'")
        ids = np.asarray(ids, dtype=np.int64)
        n = dataset.labels(split).shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ConfigError(f"subset {key!r} names ids outside 0..{n - 1} of {dataset.name} {split}")
        by_split.setdefault(split, {})[key] = ids
    for split, named in by_split.items():
        union = np.unique(np.concatenate([ids for ids in named.values()])) if named else np.zeros(0, np.int64)
        index = torch.from_numpy(union)
        images, labels = dataset.images(split)[index], dataset.labels(split)[index]
        for spec in specs:
            gen = torch.Generator().manual_seed(seed)
            ok = correct(model, images, labels, spec, batch_size=batch_size, device=device, generator=gen).numpy()
            for key, ids in named.items():
                members = np.searchsorted(union, ids)  # positions of the subset's ids in the sorted union
                results[f"{key}/{spec.label}"] = float(ok[members].mean()) if ids.size else float("nan")
        for key, ids in named.items():
            results[f"{key}/n"] = float(ids.size)
    return results


def representations(model: torch.nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                    batch_size: int = 512) -> torch.Tensor:
    """``model.embed`` of uint8 images (eval mode, no grad), on the CPU."""
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, images.shape[0], batch_size):
                x = images[s:s + batch_size].to(device).float().div_(255.0)
                out.append(model.embed(x).flatten(1).double().cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 1, dtype=torch.float64)
