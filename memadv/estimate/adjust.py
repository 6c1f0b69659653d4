"""Regression adjustment of the memorization estimate (paper Eq. 1): fewer models for the same SE.

Plain estimate (``memadv.scores.equations.memorization``): mem_i = mean of c_mi over the models with i in their
subset minus the mean over the others, c_mi = 1 when model m is right on training example i.

Much of the noise of c_mi when i is *out* is not noise at all: whether an atypical example is
right without itself depends on whether its look-alikes (its nearest same-class neighbours) were
in model m's subset, and those mask bits are known. The adjustment subtracts their linear effect:

    r_mi = c_mi - theta_{g,i} . x~_mi,     x~_mi = x_mi - E[x_mi | s_mi]   (per model, K covariates)
    mem_adj_i = mean(r_mi | s_mi = 1) - mean(r_mi | s_mi = 0)

with x_mi = the mask bits of i's K nearest same-class neighbours (pixel space), g = i's group
(in / out: separate slopes per group, Lin 2013), and theta fitted by least squares.

Why it stays unbiased for Eq. 1 (not merely "consistent"):

* the covariates are *design* variables: their distribution given s_mi is known exactly. memadv
  draws fixed-size subsets (``seeds.subset_mask``: exactly k_m of n examples, uniformly), so
  E[s_mj | s_mi] = (k_m - s_mi) / (n - 1) for j != i (hypergeometric; under i.i.d. masks it would
  be the ratio r). Centring by that conditional mean gives E[x~_mi | s_mi] = 0 in *each* group,
  so a fixed theta changes neither group's expected mean: the estimand stays
  P(c | in) - P(c | out), including the (tiny) effect of fixed size on the neighbours' bits.
  Centring by the overall mean instead would shift the estimand by theta * K / (n - 1).
* theta is cross-fitted: models are split into ``folds`` folds by model id, and the residuals of
  fold f use the theta fitted on the other folds. Models are independent, so theta is independent
  of (c_m, x~_m) for every m it is applied to, and E[theta . x~_m | s_m] = E[theta] . 0 = 0
  exactly (Chernozhukov et al. 2018's cross-fitting; the plain CUPED plug-in has an O(1/M) bias).

The standard error is the difference-of-means SE of the residuals (sample variances, ddof 1):
it ignores theta's own noise, O(K / M) relative (coverage measured in tests/estimate/test_adjust.py
and docs/estimator.md). The variance falls by the share of Var(c | group) the neighbours' bits
explain (CUPED: Var(r) = Var(c)(1 - R^2)), so the models needed for one SE fall by 1 - R^2.

Sources: Deng, Xu, Kohavi & Walker 2013, "Improving the sensitivity of online controlled experiments
by utilizing pre-experiment data" (CUPED); Lin 2013, "Agnostic notes on regression adjustments to
experimental data", Ann. Appl. Stat. 7:295-318 (separate slopes per arm); Chernozhukov et al. 2018,
"Double/debiased machine learning", Econometrics J. 21:C1-C68 (cross-fitting).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from memadv.config import check_range, option
from memadv.errors import UnknownChoiceError

# --mem-adjust choices: none (the plain Eq. 1 difference only); influencers / neighbours (also
# mem_adj, mem_adj_se): the covariates are the subset bits of each example's strongest same-class
# influencers (chosen on the other folds' models) or of its nearest same-class neighbours in pixels.
ADJUST_CHOICES = ("none", "influencers", "neighbours")
# Folds of the cross-fit: theta of fold f comes from the other FOLDS - 1 folds (80% of the models).
FOLDS = 5
# Ridge added to the covariates' Gram matrix, in model units (one pseudo-model): keeps theta finite
# where a neighbour's bit is constant among a fold's models; any fixed theta keeps the estimate unbiased.
RIDGE = 1.0
# Class blocks below this many multiply-adds run on one BLAS thread (as aggregate.SMALL_GEMM: thread
# hand-offs cost more than they save on small products, worst on a loaded machine).
SMALL_GEMM = 1 << 27
# Examples per block of the vectorised least squares: M x rows x (K + 1) float64 at a time.
BLOCK_BYTES = 64 << 20


@dataclass
class AdjustConfig:
    mem_adjust: str = option("none", "regression adjustment of mem, written beside it as mem_adj, mem_adj_se in "
                                     "mem.parquet: none; influencers = subtract the linear effect of the subset bits "
                                     "of each example's strongest same-class influencers (chosen on other models); "
                                     "neighbours = of its nearest same-class examples in pixel space. Unbiased for "
                                     "Eq. 1 (design-centred covariates, cross-fitted slopes; docs/estimator.md, "
                                     "'Regression adjustment')",
                             choices=ADJUST_CHOICES, source="Deng et al. 2013 (CUPED); Lin 2013")
    adjust_covariates: int = option(4, "covariates per example of --mem-adjust (K)", unit="examples",
                                    source="memadv: K = 4 explained most on digits of 4/8/16 (docs/estimator.md)")

    def __post_init__(self) -> None:
        if self.mem_adjust not in ADJUST_CHOICES:
            raise UnknownChoiceError("mem adjust", self.mem_adjust, ADJUST_CHOICES)
        check_range("adjust_covariates", self.adjust_covariates, 1, 64)

    def apply(self, masks: np.ndarray, train_correct: np.ndarray, y: np.ndarray, x: np.ndarray) -> pd.DataFrame | None:
        """``mem_adj, mem_adj_se`` for the chosen adjustment (None for ``none``); x: (n, ...) training
        images, used by ``neighbours`` only."""
        if self.mem_adjust == "none":
            return None
        k = self.adjust_covariates
        cov = nearest_same_class(x, y, k) if self.mem_adjust == "neighbours" else "influencers"
        return adjusted_memorization(masks, train_correct, cov, y=y, k=k)

    def meta(self) -> dict[str, Any]:
        """Recorded in the score files' metadata."""
        return {"mem_adjust": self.mem_adjust,
                "mem_adjust_covariates": None if self.mem_adjust == "none" else self.adjust_covariates}


def nearest_same_class(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Positions of each example's ``k`` nearest other examples of its class (Euclidean distance,
    scikit-learn's exact ``NearestNeighbors``).

    x: (n, ...) features (e.g. images, flattened here), y: (n,) labels. Returns (n, k) int64, nearest
    first, -1 where a class has fewer than k + 1 examples.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, np.float32).reshape(len(x), -1)
    y = np.asarray(y)
    out = np.full((len(y), k), -1, np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        kk = min(k, len(idx) - 1)
        if kk < 1:
            continue
        _, nb = NearestNeighbors(n_neighbors=kk + 1).fit(x[idx]).kneighbors(x[idx])
        # drop the example itself (first unless an exact duplicate ties with it), keep kk others
        not_self = nb != np.arange(len(idx))[:, None]
        keep = np.where(not_self.all(1)[:, None], np.arange(kk + 1) < kk, not_self)
        out[idx, :kk] = idx[nb[keep].reshape(len(idx), kk)]
    return out


def design_centred(masks: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x~ = s_mj - E[s_mj | s_mi] for j = cols[i, k]: (M, b, K) float64, 0 where cols is -1.

    masks: (M, n) bool, fixed-size subsets (row m holds k_m ones, drawn uniformly):
    E[s_mj | s_mi] = (k_m - s_mi) / (n - 1). rows: (b,) the examples i, cols: (b, K).
    """
    m, n = masks.shape
    k_m = masks.sum(1, dtype=np.float64)
    s_i = masks[:, rows].astype(np.float64)                               # (M, b)
    mean = (k_m[:, None] - s_i) / (n - 1)
    valid = cols >= 0
    x = masks[:, np.where(valid, cols, 0)].astype(np.float64)             # (M, b, K)
    x -= mean[:, :, None]
    x *= valid[None]
    return x


def _solve(z: np.ndarray, c: np.ndarray, w: np.ndarray, ridge_models: float) -> np.ndarray:
    """Ridge least-squares slopes (b, K) of c on z = [1, x] per example, models weighted by w (0/1).
    z: (M, b, K + 1), c and w: (M, b). The intercept is not penalised; an empty group gives 0."""
    k1 = z.shape[2]
    zw = z * w[:, :, None]
    gram = np.einsum("mbk,mbl->bkl", zw, z, optimize=True)
    rhs = np.einsum("mbk,mb->bk", zw, c, optimize=True)
    pen = ridge_models * np.eye(k1)
    pen[0, 0] = 1e-9
    return np.linalg.solve(gram + pen, rhs[:, :, None])[:, 1:, 0]


def top_influencers(masks: np.ndarray, train_correct: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """For each example i, the ``k`` same-class examples j (j != i) whose subset bit covaries most
    with c_mi among the models that left i out: |cov(s_mj, c_mi | s_mi = 0)| (the Eq. 2-like
    influence of j on i's training correctness). masks, train_correct: (M, n) bool of the models to
    select from (cross-fitting: never those the result is applied to). Returns (n, k) int64, -1
    where a class has fewer than k + 1 examples."""
    y = np.asarray(y)
    out = np.full((len(y), k), -1, np.int64)
    classes, sizes = np.unique(y, return_counts=True)
    small = masks.shape[0] * int(sizes.max(initial=0)) ** 2 < SMALL_GEMM
    with threadpool_limits(1, user_api="blas") if small else contextlib.nullcontext():
        for cl in classes:
            idx = np.flatnonzero(y == cl)
            out[idx] = _top_in_class(masks[:, idx], train_correct[:, idx], idx, k)
    return out


def _top_in_class(masks: np.ndarray, train_correct: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_influencers` within one class (columns ``idx`` of the full set): (len(idx), k)."""
    out = np.full((len(idx), k), -1, np.int64)
    s = masks.astype(np.float64)
    off = 1.0 - s
    cc = train_correct * off                                               # c_mi where i is out
    n_out = np.maximum(off.sum(0), 1.0)
    cov = (s.T @ cc) / n_out - (s.T @ off) / n_out * (cc.sum(0) / n_out)   # (j, i)
    cov = np.abs(cov.T)                                                     # (i, j)
    np.fill_diagonal(cov, -np.inf)
    kk = min(k, len(idx) - 1)
    order = np.argsort(-cov, axis=1, kind="stable")[:, :kk]
    out[:, :kk] = idx[order]
    return out


def _group_stats(r: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance (ddof 1), count) of r over the models with s, per column; NaN below 2 models."""
    n = s.sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 1, (r * s).sum(0) / n, np.nan)              # no SE from one model: undefined
        var = np.where(n > 1, (((r - mean) * s) ** 2).sum(0) / (n - 1), np.nan)
    return mean, var, n


def adjusted_memorization(masks: np.ndarray, train_correct: np.ndarray, covariates: str | np.ndarray, *,
                          y: np.ndarray | None = None, k: int = 8, folds: int = FOLDS,
                          ridge: float = RIDGE) -> pd.DataFrame:
    """Regression-adjusted Eq. 1 (module docstring) for every training example.

    masks, train_correct: (M, n) bool. ``covariates``: an (n, K) int64 array of covariate columns
    per example (-1: none), e.g. :func:`nearest_same_class`, or "influencers": per fold, the ``k``
    :func:`top_influencers` (labels ``y``) chosen on the other folds' models. Models are assigned to
    folds by row (row % folds). Returns columns ``mem_adj, mem_adj_se`` (n rows, in example order);
    NaN where fewer than 2 models had i in, or out, of their subset. Raises ValueError for
    mismatched shapes or folds < 2.
    """
    masks = np.asarray(masks, bool)
    train_correct = np.asarray(train_correct, bool)
    m, n = masks.shape
    fixed = not isinstance(covariates, str)
    if train_correct.shape != (m, n) or (fixed and np.shape(covariates)[0] != n) or (not fixed and y is None):
        raise ValueError(f"masks {masks.shape}, train_correct {train_correct.shape} and covariates "
                         f"{np.shape(covariates)} do not match (influencers need y)")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    fold = np.arange(m) % folds
    kk = np.shape(covariates)[1] if fixed else k
    cols = [covariates if fixed else top_influencers(masks[fold != f], train_correct[fold != f], y, k)
            for f in range(folds)]                                      # chosen without fold f's models
    mi, mo, se = (np.full(n, np.nan) for _ in range(3))
    step = max(1, BLOCK_BYTES // (8 * m * (kk + 1) * 3))
    for s0 in range(0, n, step):
        rows = np.arange(s0, min(s0 + step, n))
        s = masks[:, rows]
        c = train_correct[:, rows].astype(np.float64)
        r = c.copy()
        x = z = None
        for f in range(folds):
            fit, use = fold != f, fold == f
            if x is None or not fixed:
                x = design_centred(masks, cols[f][rows], rows)
                z = np.concatenate([np.ones((*s.shape, 1)), x], axis=2)
            for g in (False, True):
                theta = _solve(z[fit], c[fit], (s[fit] == g).astype(np.float64), ridge)   # other folds only
                r[use] -= np.einsum("mbk,bk->mb", x[use], theta) * (s[use] == g)
        mean_in, var_in, n_in = _group_stats(r, s)
        mean_out, var_out, n_out = _group_stats(r, ~s)
        mi[rows], mo[rows] = mean_in, mean_out
        with np.errstate(invalid="ignore"):
            se[rows] = np.sqrt(var_in / n_in + var_out / n_out)
    return pd.DataFrame({"mem_adj": mi - mo, "mem_adj_se": se})
