"""A synthetic long-tailed data set after Feldman's model, with known ground truth.

Each class has one *frequent* sub-population (many examples spread around a centre) and many
*rare* sub-populations with 1-3 training examples each; some rare sub-populations also get a
test *twin*. Rare centres are drawn so that their nearest frequent centre belongs to another
class: a model that never saw the sub-population puts it in the wrong class, so the only way to
get it right is to memorize it — the situation Eq. 1 measures.

Images are 1x8x8 uint8 (the 64 features of a point in [0, 1]^64), so the nets of ``digits`` apply.

Ground truth (``Dataset.ground_truth``):

* ``rare_train``: bool per training example, True for members of rare sub-populations;
* ``train_subpop``, ``test_subpop``: sub-population id per example (``class`` for frequent ones,
  ``classes + k`` for the k-th rare one);
* ``subpop_train_count``: training examples per sub-population id;
* ``rare_pairs``: int64 array (P, 3) of (train id, test id, training examples in that
  sub-population) for every (train, test) pair sharing a rare sub-population.

:func:`expected_influence` gives the influence of a rare training example on its twin for an
ideal memorizer trained on random subsets of fraction r: the twin is lost only when all
k examples of its sub-population are left out, given that this one is, so infl = (1 - r)^(k-1)
(times the chance of being wrong without the sub-population, ~1 here by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memadv.config import check_range
from memadv.data.dataset import Dataset, channel_stats


@dataclass(frozen=True)
class LongTailSpec:
    seed: int = 0
    classes: int = 10
    dim: int = 64                 # features = pixels of a 1x8x8 image
    frequent_train: int = 80      # training examples of each frequent sub-population
    frequent_test: int = 30
    rare_per_class: int = 15      # rare sub-populations per class
    rare_size_probs: tuple[float, float, float] = (0.6, 0.25, 0.15)  # P(1, 2, 3 training examples)
    twin_prob: float = 0.7        # chance a rare sub-population has a test twin
    frequent_noise: float = 0.10  # per-feature std around a frequent centre
    rare_noise: float = 0.03      # per-feature std around a rare centre

    def __post_init__(self) -> None:
        check_range("classes", self.classes, 2)
        check_range("twin_prob", self.twin_prob, 0.0, 1.0)
        if len(self.rare_size_probs) != 3 or abs(sum(self.rare_size_probs) - 1.0) > 1e-9:
            raise ValueError("rare_size_probs must be three probabilities (1, 2, 3 examples) summing to 1")


def expected_influence(train_count: np.ndarray | int, subset_ratio: float) -> np.ndarray:
    """Influence of one of k rare training examples on its test twin, for an ideal memorizer."""
    return (1.0 - subset_ratio) ** (np.asarray(train_count, dtype=np.float64) - 1.0)


def _rare_centre(rng: np.random.Generator, label: int, frequent: np.ndarray) -> np.ndarray:
    while True:  # rejection: the nearest frequent centre must belong to another class
        c = rng.uniform(0.1, 0.9, size=frequent.shape[1])
        if int(np.argmin(((frequent - c) ** 2).sum(1))) != label:
            return c


def generate(spec: LongTailSpec = LongTailSpec()) -> Dataset:
    rng = np.random.default_rng(spec.seed)
    frequent = rng.uniform(0.1, 0.9, size=(spec.classes, spec.dim))
    tr_x, tr_y, tr_sp, te_x, te_y, te_sp = [], [], [], [], [], []
    counts: list[int] = []
    for c in range(spec.classes):
        for n, xs, ys, sps in ((spec.frequent_train, tr_x, tr_y, tr_sp), (spec.frequent_test, te_x, te_y, te_sp)):
            xs.append(frequent[c] + spec.frequent_noise * rng.standard_normal((n, spec.dim)))
            ys += [c] * n
            sps += [c] * n
        counts.append(spec.frequent_train)
    subpop = spec.classes
    for c in range(spec.classes):
        for _ in range(spec.rare_per_class):
            centre = _rare_centre(rng, c, frequent)
            k = int(rng.choice([1, 2, 3], p=list(spec.rare_size_probs)))
            tr_x.append(centre + spec.rare_noise * rng.standard_normal((k, spec.dim)))
            tr_y += [c] * k
            tr_sp += [subpop] * k
            if rng.random() < spec.twin_prob:
                te_x.append(centre + spec.rare_noise * rng.standard_normal((1, spec.dim)))
                te_y.append(c)
                te_sp.append(subpop)
            counts.append(k)
            subpop += 1

    def finish(xs, ys, sps):
        x, y, sp = np.concatenate(xs), np.asarray(ys, np.int64), np.asarray(sps, np.int64)
        order = rng.permutation(len(y))  # canonical order: shuffled once, fixed by the seed
        img = np.rint(np.clip(x[order], 0.0, 1.0) * 255).astype(np.uint8).reshape(-1, 1, 8, spec.dim // 8)
        return img, y[order], sp[order]

    xtr, ytr, sptr = finish(tr_x, tr_y, tr_sp)
    xte, yte, spte = finish(te_x, te_y, te_sp)
    counts_arr = np.asarray(counts, np.int64)
    rare_train = sptr >= spec.classes
    pairs = [(i, j, counts_arr[sptr[i]]) for j in np.flatnonzero(spte >= spec.classes)
             for i in np.flatnonzero(sptr == spte[j])]
    x_train = torch.from_numpy(xtr)
    mean, std = channel_stats(x_train)
    return Dataset(
        name="synthetic-longtail", x_train=x_train, y_train=torch.from_numpy(ytr),
        x_test=torch.from_numpy(xte), y_test=torch.from_numpy(yte), num_classes=spec.classes,
        mean=mean, std=std,
        ground_truth={"rare_train": rare_train, "train_subpop": sptr, "test_subpop": spte,
                      "subpop_train_count": counts_arr,
                      "rare_pairs": np.asarray(pairs, np.int64).reshape(-1, 3), "spec": spec})


def load_synthetic_longtail(seed: int = 0) -> Dataset:
    return generate(LongTailSpec(seed=seed))
