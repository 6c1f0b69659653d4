"""Sections 3.1 and 3.2 of the paper, and claim C3's controls, as data: the settings every Section 3
run shares, the plan of runs (method, seed, atypical percentage p, control arm), each run's name and
folder, and the training sets they are built from (D_typ plus p% of D_atyp; D_typ plus a half of
D_atyp or class-matched unused images), and the class-wise cosine measure (paper Sec. 3.2, footnote 2)
each Section 3.2 run records after every epoch. memadv.experiments trains these runs;
memadv.analysis reads them back and draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memadv.bat.evaluate import representations
from memadv.data.dataset import Dataset
from memadv.errors import MemadvError
from memadv.layout import RunLayout

SEC31_METHODS = ("erm", "pgd")  # the two training methods of Sections 3.1-3.2 (all methods: bat.methods.METHODS)
# attacks of the final evaluation of the Section 3 runs (final.parquet marks a run finished; the
# Section 3 figures only use the per-epoch metrics, so the costly attacks are left out)
SEC3_FINAL_ATTACKS = ["clean", "pgd"]


@dataclass
class Sec3Settings:
    """What the Section 3 runs share; ``None`` fields take :mod:`memadv.bat.train`'s per-dataset defaults."""

    dataset: str = "digits"
    data_root: str | None = None
    # the estimate's data-set options (classes, per_class, test_per_class): every run loads that data
    dataset_options: dict[str, Any] = field(default_factory=dict)
    net: str | None = None
    eps: float | None = None  # attack radius of training and evaluation (unset: the data set's default)
    epochs: int | None = None
    eval_every: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_max: int | None = None
    final_max: int | None = None
    device: str = "auto"
    ps: list[int] = field(default_factory=lambda: [0, 20, 100])

    def train_values(self, method: str, seed: int) -> dict[str, Any]:
        return {"method": method, "dataset": self.dataset, "data_root": self.data_root, "net": self.net,
                "epochs": self.epochs, "eval_every": self.eval_every, "seed": seed, "eval_max": self.eval_max,
                "final_max": self.final_max,
                "device": self.device, "final_attacks": list(SEC3_FINAL_ATTACKS), "progress": False,
                **self.dataset_options}

    def configs(self, method: str, seed: int, name: str, **extra: Any) -> tuple[Any, Any]:
        """(TrainConfig, ObjectiveConfig) of one Section 3 run named ``name`` (``extra``: more options)."""
        from memadv.bat.train_config import make_configs
        values = {**self.train_values(method, seed), "name": name, **extra}
        if self.eps is not None:
            values["eps"] = self.eps
        return make_configs(values)

    def stamp(self) -> dict[str, Any]:
        """The settings that decide results (for the pipeline's up-to-date check)."""
        d = dataclasses.asdict(self)
        d.pop("device", None)
        d["seeds"] = sorted(int(x) for x in d["seeds"])
        d.pop("data_root", None)
        if not d["dataset_options"]:
            d.pop("dataset_options")  # a full data set stamps as before the option existed
        for k, default in (("eps", None), ("eval_every", 1)):
            if d[k] == default:
                d.pop(k)  # a default stamps as before the option existed
        return d



def sec31_train_dir(run_dir: Path) -> Path:
    return RunLayout(run_dir).sec31_train



def sec31_plan(settings: Sec3Settings) -> list[tuple[str, int]]:
    return [(m, int(s)) for s in settings.seeds for m in SEC31_METHODS]



def sec31_run_names(settings: Sec3Settings) -> list[str]:
    return [f"{m}-seed{s}" for m, s in sec31_plan(settings)]


def run_label(p: int, method: str, seed: int) -> str:
    return f"p{p}-{method}-seed{seed}"



def sec32_plan(settings: Sec3Settings) -> list[tuple[int, str, int]]:
    return [(int(p), m, int(seed)) for seed in settings.seeds for p in settings.ps for m in SEC31_METHODS]



def subset_ids(sets: dict[str, np.ndarray], p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training ids D_typ ∪ first p% of a seeded order of D_atyp, test ids D'_typ), sorted."""
    if not 0 <= p <= 100:
        raise MemadvError(f"sec32: atypical percentage {p} is outside 0..100")
    atyp = np.asarray(sets["train/atypical"], np.int64)
    order = np.random.default_rng(int(seed)).permutation(atyp)
    k = int(round(p / 100.0 * atyp.size))
    train = np.union1d(np.asarray(sets["train/typical"], np.int64), order[:k])
    return train.astype(np.int64), np.asarray(sets["test/typical"], np.int64)



def subset_dataset(ds: Dataset, train_ids: np.ndarray, test_ids: np.ndarray) -> Dataset:
    """The dataset restricted to ``train_ids`` / ``test_ids`` (same name, normalisation and classes)."""
    tr, te = torch.from_numpy(np.asarray(train_ids, np.int64)), torch.from_numpy(np.asarray(test_ids, np.int64))
    return Dataset(ds.name, ds.x_train[tr].clone(), ds.y_train[tr].clone(), ds.x_test[te].clone(),
                   ds.y_test[te].clone(), ds.num_classes, ds.mean, ds.std, list(ds.class_names))



def sec32_run_dirs(run_dir: Path, settings: Sec3Settings) -> list[Path]:
    return [RunLayout(run_dir).sec32_train / run_label(p, m, seed) for p, m, seed in sec32_plan(settings)]


HALVES = ("high", "low")
RANDOM = "random"  # D_typ + class-matched unused training images (C3-R)
METHOD = "pgd"  # the control is of C3, which is about adversarial training



def has_unused_images(settings: Sec3Settings) -> bool:
    """Whether the estimate left training images out (``--per-class``), so the random arm can draw them."""
    return settings.dataset_options.get("per_class") is not None



def control_plan(settings: Sec3Settings) -> list[tuple[str, int]]:
    """(arm, seed) of every control run: both halves, and the random arm where there are unused
    images, for each of the Section 3 seeds."""
    arms = HALVES + ((RANDOM,) if has_unused_images(settings) else ())
    return [(arm, int(seed)) for seed in settings.seeds for arm in arms]



def control_label(arm: str, seed: int) -> str:
    return f"{RANDOM}-{METHOD}-seed{seed}" if arm == RANDOM else f"poison-{arm}-{METHOD}-seed{seed}"



def class_matched_draw(labels: np.ndarray, pool: np.ndarray, pool_labels: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Ids drawn from ``pool`` (int64 (P,), labels ``pool_labels``) without replacement, as many of each
    class as ``labels`` (int (N,)) has; sorted. ValueError naming the class where the pool is short."""
    labels, pool, pool_labels = (np.asarray(a, np.int64) for a in (labels, pool, pool_labels))
    out = []
    for c, need in zip(*np.unique(labels, return_counts=True)):
        have = pool[pool_labels == c]
        if have.size < need:
            raise ValueError(f"class {int(c)} needs {int(need)} unused training images, the data set leaves "
                             f"{have.size}; use a smaller --per-class")
        out.append(rng.choice(have, size=int(need), replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)



def control_run_dirs(run_dir: Path, settings: Sec3Settings) -> list[Path]:
    return [RunLayout(run_dir).sec32_controls_train / control_label(h, s) for h, s in control_plan(settings)]



def poisoning_halves(atypical_ids: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """``{"high": ids, "low": ids}``: the atypical training ids (int64 (N,)) split by their poisoning
    scores ``q`` (float (N,), same order) into two halves of floor(N / 2) ids each, the highest scores
    in "high" (ties broken by id, so the split is a function of the scores); sorted ids."""
    ids = np.asarray(atypical_ids, np.int64)
    q = np.asarray(q, float)
    if ids.shape != q.shape:
        raise ValueError(f"poisoning_halves: {ids.size} ids but {q.size} scores")
    order = np.lexsort((ids, -q))  # by q descending, then id ascending
    k = ids.size // 2
    return {"high": np.sort(ids[order[:k]]), "low": np.sort(ids[order[ids.size - k:]])}


def class_cosine(h: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Mean cosine similarity of the representations ``h`` (n, d) over all pairs of different labels."""
    h = torch.as_tensor(h, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if h.ndim != 2 or y.shape != (h.shape[0],):
        raise ValueError(f"class_cosine: h must be (n, d) and labels (n,), got {tuple(h.shape)} and {tuple(y.shape)}")
    norm = h.norm(dim=1, keepdim=True)
    u = torch.where(norm > 0, h / norm.clamp_min(1e-300), torch.zeros_like(h))
    total = u.sum(dim=0).square().sum()
    same = torch.zeros((), dtype=torch.float64)
    n = h.shape[0]
    counts_sq = 0
    for c in torch.unique(y):
        sel = y == c
        same = same + u[sel].sum(dim=0).square().sum()
        counts_sq += int(sel.sum()) ** 2
    pairs = n * n - counts_sq
    if pairs == 0:
        return float("nan")
    return float((total - same) / pairs)



def cosine_metrics(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512):
    """An ``epoch_metrics`` callback for :func:`memadv.bat.train.train`: the class-wise cosine measure
    of ``images`` (clean typical training examples) joins every evaluated epoch's metrics row as
    ``cos_sim``, ``cos_dist`` (= 1 - cos_sim) and ``cos_n``."""

    def measure(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        device = next(model.parameters()).device
        s = class_cosine(representations(model, images, device, batch_size), labels)
        return {"cos_sim": s, "cos_dist": 1.0 - s, "cos_n": float(images.shape[0])}

    return measure
