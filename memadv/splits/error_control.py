"""Error-controlled labels of the split rules: decided above / below a threshold, or undecided.

Every split rule compares a noisy difference of two binomial means (mem, or infl of some pairs)
with a threshold. This module turns the per-estimate Newcombe-Wilson interval
(:func:`memadv.splits.significance.newcombe`) into one p-value per *example* and rule, and controls the
error over all examples at once:

* ``fdr``: Benjamini & Hochberg (1995, JRSS-B 57:289) step-up, valid for independent or positively
  dependent p-values (PRDS, Benjamini & Yekutieli 2001);
* ``fdr-by``: Benjamini & Yekutieli (2001, Ann. Stat. 29:1165), BH at alpha / sum_{k<=m} 1/k, valid
  under any dependence (the estimates share their models);
* ``fwer``: Holm (1979, Scand. J. Stat. 6:65) step-down, family-wise error under any dependence;
* ``none``: today's paper reading (compare the estimates themselves).

Per-estimate p-values: p(d > t) is the one-sided level at which the Newcombe lower bound equals t,
Phi(-z*) with lower(z*) = t (regula falsi in z; 1 where the estimate itself is not above t, or undefined).

Rules (``kind``):

* ``three-way`` (training examples, thresholds t_typ < t_atyp): the regions mem < t_typ (typical),
  [t_typ, t_atyp] (in between), mem > t_atyp (atypical) partition the line; the label is the region
  that holds the whole two-sided interval at level 1 - c (c the procedure's cutoff). A wrong label means
  that interval missed the true mem, which happens with probability <= c, so the example p-value is
  2 x the smallest one-sided p-value of a region (the factor 2 is the price of a middle region:
  Finner & Strassburger 2002, "The partitioning principle", Ann. Stat. 30:1194).
* ``exists`` (test examples, threshold t, the estimates of the example's pairs i = 1..k): "infl > t for
  some i" is an intersection null ("all <= t"), tested by Bonferroni within the example,
  p = min(1, k min_i p_i(> t)); "infl < t for every i" is a union null, tested by the
  intersection-union test, p = max_i p_i(< t) (Berger 1982, Technometrics 24:295), which needs no
  correction. The truth is on one side, so only one of the two can be wrong: the example p-value is the
  smaller one. An example with no pair (no same-class atypical training example) is "below" without a
  test and is not counted among the hypotheses; so are examples a ``fixed`` label decides (the
  accuracy rule of D'_typ, which is never shifted).

Repeated looks (``memadv estimate --until-decided``): each of K planned looks spends alpha / K
(a Bonferroni split of alpha over the looks, the simplest alpha-spending plan: Lan & DeMets 1983,
Biometrika 70:659; E[FDP at the stopping look] <= sum_k E[FDP_k] <= K alpha / K).

Projection (:func:`models_needed`): the plug-in assumption that every example's p_in and p_out stay
at their current estimates while the counts n_in, n_out grow in proportion to the models M, so each
standard error shrinks as 1/sqrt(M); the procedure is re-run on the scaled counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
from scipy.special import ndtr, ndtri  # scipy comes with scikit-learn, a dependency

from memadv.config import check_range
from memadv.splits.significance import newcombe
from memadv.errors import ConfigError, UnknownChoiceError

CONTROL_METHODS = ("none", "fdr", "fdr-by", "fwer")
UNDECIDED = "undecided"
# Range of the critical value z: Phi(-12) = 1.8e-33 is far below any cutoff alpha / m.
Z_MAX = 12.0
ROOT_STEPS = 12  # Illinois steps: superlinear; measured max error of the bound at z*: 1e-9 or less on random counts


@dataclass(frozen=True)
class ErrorControl:
    """``--error-control`` parsed: ``method`` (CONTROL_METHODS) and ``alpha`` (the error rate)."""
    method: str = "none"
    alpha: float = 0.05

    @classmethod
    def parse(cls, text: str) -> "ErrorControl":
        """``none``, ``fdr:0.05``, ``fdr-by:0.05``, ``fwer:0.05`` (a bare method means alpha 0.05).
        Raises UnknownChoiceError / ConfigError with the valid forms."""
        method, _, level = str(text).strip().partition(":")
        if method not in CONTROL_METHODS:
            raise UnknownChoiceError("error control", method, CONTROL_METHODS)
        if method == "none":
            if level:
                raise ConfigError(f"--error-control none takes no level, got {text!r}")
            return cls("none", 0.0)
        try:
            alpha = float(level) if level else 0.05
        except ValueError:
            raise ConfigError(f"--error-control {text!r}: the level after ':' must be a number, e.g. "
                              f"{method}:0.05") from None
        check_range("error_control", alpha, 0.0, 0.5, lo_open=True, hi_open=True)
        return cls(method, alpha)

    @property
    def active(self) -> bool:
        return self.method != "none"

    def per_look(self, looks: int) -> "ErrorControl":
        """The control each of ``looks`` planned looks may spend (alpha / looks)."""
        return ErrorControl(self.method, self.alpha / max(1, int(looks)))

    def __str__(self) -> str:
        return "none" if not self.active else f"{self.method}:{self.alpha:g}"


def norm_sf(z: np.ndarray) -> np.ndarray:
    """1 - Phi(z), elementwise (exact in the far tail, unlike 1 - cdf)."""
    return ndtr(-np.asarray(z, np.float64))


def norm_isf(p: float | np.ndarray) -> np.ndarray:
    """z with 1 - Phi(z) = p (p clipped to [Phi(-Z_MAX), 0.5]: z in [0, Z_MAX])."""
    return -ndtri(np.clip(np.asarray(p, np.float64), float(ndtr(-Z_MAX)), 0.5))


def _wilson_side(p: np.ndarray, n: np.ndarray, z: np.ndarray, upper: bool) -> np.ndarray:
    """One limit of the Wilson score interval (:func:`memadv.splits.significance.wilson`), elementwise in z."""
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return centre + half if upper else centre - half


def bound_p(p_in: np.ndarray, n_in: np.ndarray, p_out: np.ndarray, n_out: np.ndarray, t: float,
            side: str) -> np.ndarray:
    """One-sided p-value of p_in - p_out > t (``side`` "above") or < t ("below"), any shape.

    The level at which the Newcombe bound reaches t: Phi(-z*), with z* the root of
    f(z) = lower(z) - t ("above"; t - upper(z) for "below"), which falls as the interval widens with z.
    Found by the Illinois variant of regula falsi (Dowell & Jarratt 1971, BIT 11:168) on [0, Z_MAX],
    only where the estimate itself is past t; 1 elsewhere and where it is undefined (NaN).
    """
    p1, n1, p2, n2 = (np.broadcast_to(np.asarray(x, np.float64), np.broadcast_shapes(
        np.shape(p_in), np.shape(n_in), np.shape(p_out), np.shape(n_out))) for x in (p_in, n_in, p_out, n_out))
    d = p1 - p2
    with np.errstate(invalid="ignore"):
        past = ((d > t) if side == "above" else (d < t)) & np.isfinite(d) & (n1 > 0) & (n2 > 0)
    out = np.ones(d.shape)
    if not past.any():
        return out
    p1, n1, p2, n2, d = (x[past] for x in (p1, n1, p2, n2, d))

    def f(z: np.ndarray) -> np.ndarray:  # decreasing in z, f(0) > 0
        if side == "above":
            return d - np.sqrt((p1 - _wilson_side(p1, n1, z, False)) ** 2 + (_wilson_side(p2, n2, z, True) - p2) ** 2) - t
        return t - d - np.sqrt((_wilson_side(p1, n1, z, True) - p1) ** 2 + (p2 - _wilson_side(p2, n2, z, False)) ** 2)
    a, b = np.zeros(d.shape), np.full(d.shape, Z_MAX)
    fa, fb = f(a), f(b)
    beyond = fb > 0  # still past t at Z_MAX: p below Phi(-Z_MAX)
    for _ in range(ROOT_STEPS):
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(fb != fa, b - fb * (b - a) / (fb - fa), b)
        c = np.clip(np.where(np.isfinite(c), c, (a + b) / 2), np.minimum(a, b), np.maximum(a, b))
        fc = f(c)
        flip = np.sign(fc) != np.sign(fb)  # the root lies between b and c: a takes b's place
        a, fa = np.where(flip, b, a), np.where(flip, fb, fa / 2)  # else Illinois: halve the kept end's value
        b, fb = c, fc
    z = np.where(beyond, Z_MAX, b)
    out[past] = norm_sf(z)
    return out


def reject(p: np.ndarray, ctrl: ErrorControl, tested: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which hypotheses ``ctrl`` rejects, along the last axis of ``p`` (rows are independent families).

    ``tested``: mask of the hypotheses in the family (others are never rejected and not counted in m).
    NaN p-values count in m and are never rejected. Returns (rejected mask, cutoff per row): every
    p <= cutoff is rejected; the cutoff is alpha / m where nothing is (the level the first rejection needs).
    """
    p = np.asarray(p, np.float64)
    tested = np.ones(p.shape, bool) if tested is None else np.broadcast_to(tested, p.shape)
    q = np.where(tested, np.nan_to_num(p, nan=1.0), np.inf)  # untested sort last and never pass
    mm = np.maximum(tested.sum(-1, keepdims=True), 1).astype(np.float64)
    srt = np.sort(q, -1)
    rank = np.arange(1, p.shape[-1] + 1, dtype=np.float64)
    if ctrl.method in ("fdr", "fdr-by"):
        a = np.full(mm.shape, ctrl.alpha)
        if ctrl.method == "fdr-by":  # alpha / (1 + 1/2 + ... + 1/m)
            harmonic = np.cumsum(1.0 / np.arange(1, p.shape[-1] + 1))
            a = ctrl.alpha / harmonic[mm.astype(np.int64) - 1]
        ok = srt <= a * rank / mm
        n_rej = np.where(ok.any(-1), ok.shape[-1] - np.argmax(ok[..., ::-1], -1), 0)  # step-up: the largest k
        first = a[..., 0] / mm[..., 0]
    elif ctrl.method == "fwer":
        ok = srt <= ctrl.alpha / np.maximum(mm - rank + 1, 1.0)
        n_rej = np.where(ok.all(-1), ok.shape[-1], np.argmin(ok, -1))  # step-down: the first failure stops
        first = ctrl.alpha / mm[..., 0]
    else:
        raise UnknownChoiceError("error control", ctrl.method, CONTROL_METHODS[1:])
    idx = np.maximum(n_rej - 1, 0)[..., None]
    cut = np.where(n_rej > 0, np.take_along_axis(srt, idx, -1)[..., 0], first)
    return (q <= cut[..., None]) & tested, cut


@dataclass
class Rule:
    """One split rule over ``n`` examples, from its estimates (differences p_in - p_out).

    ``group`` (P,) is the example position of each estimate (``arange(n)`` for mem: one each);
    ``thresholds``: (t_typ, t_atyp) for ``kind`` "three-way", (t,) for "exists"; ``names``: the labels,
    lowest region first ("typical", "in between", "atypical" / e.g. "not atypical", "atypical");
    ``fixed`` (n,) object: a label decided without a test ("" where tested); ``witness`` (P,) bool, "exists"
    rules: the estimates that may show "above" (pairs of a decided atypical training example), while
    "below" must hold for every estimate of the example (also those of possibly atypical, undecided
    training examples); None: all.
    """
    name: str
    split: str
    kind: str
    ids: np.ndarray
    classes: np.ndarray
    group: np.ndarray
    p_in: np.ndarray
    n_in: np.ndarray
    p_out: np.ndarray
    n_out: np.ndarray
    thresholds: tuple[float, ...]
    names: tuple[str, ...]
    fixed: np.ndarray | None = None
    witness: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(len(self.ids))

    @property
    def estimate(self) -> np.ndarray:
        return self.p_in - self.p_out


@dataclass
class Decision:
    """Per example (n,): ``label``, ``p`` (its p-value; NaN without a test), ``estimate`` (mem, or the
    largest infl over the pairs), ``lo``/``hi`` (the interval at the cutoff: the label's evidence; see
    :func:`decide`), and the procedure's ``cutoff``, ``alpha`` and number of hypotheses ``m``."""
    label: np.ndarray
    p: np.ndarray
    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    cutoff: float
    alpha: float
    m: int

    @property
    def share_decided(self) -> float:
        return float(np.mean(self.label != UNDECIDED)) if self.label.size else 1.0


def _group_reduce(values: np.ndarray, group: np.ndarray, n: int, how: str, empty: float) -> np.ndarray:
    out = np.full(n, empty)
    (np.minimum if how == "min" else np.maximum).at(out, group, values)
    return out


def example_p(rule: Rule, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, label index, tested) per example of ``rule`` with counts scaled by ``scale`` (projections)."""
    n_in, n_out = rule.n_in * scale, rule.n_out * scale
    args = (rule.p_in, n_in, rule.p_out, n_out)
    if rule.kind == "three-way":
        t_typ, t_atyp = rule.thresholds
        cand = np.stack([bound_p(*args, t_typ, "below"),
                         np.maximum(bound_p(*args, t_typ, "above"), bound_p(*args, t_atyp, "below")),
                         bound_p(*args, t_atyp, "above")])
        cand = np.minimum(2.0 * cand, 1.0)  # two-sided interval: see the module docstring
        tested = np.ones(rule.n, bool)
    else:
        (t,) = rule.thresholds
        w = np.ones(rule.group.shape, bool) if rule.witness is None else rule.witness
        k = np.bincount(rule.group[w], minlength=rule.n)
        p_above = np.where(w, bound_p(*args, t, "above"), 1.0)
        p_any = np.where(k > 0, np.minimum(k * _group_reduce(p_above, rule.group, rule.n, "min", 1.0), 1.0), 1.0)
        p_all = _group_reduce(bound_p(*args, t, "below"), rule.group, rule.n, "max", 0.0)
        cand = np.stack([p_all, p_any])
        tested = np.bincount(rule.group, minlength=rule.n) > 0
    if rule.fixed is not None:
        tested &= rule.fixed == ""
    return cand.min(0), np.argmin(cand, 0), tested


def decide(rule: Rule, ctrl: ErrorControl, scale: float = 1.0) -> Decision:
    """Label every example of ``rule`` under ``ctrl``.

    ``none``: the paper's reading (the estimates compared with the thresholds; undefined -> undecided).
    Otherwise the procedure's decisions; ``lo``/``hi`` are, for "three-way", the two-sided interval at
    level 1 - cutoff (the label is the region holding it); for "exists", ``lo`` = the largest lower
    bound over the pairs at one-sided level cutoff / k ("above" when > t) and ``hi`` = the largest
    upper bound at level cutoff ("below" when < t).
    """
    n = rule.n
    est = rule.estimate
    ex_est = est if rule.kind == "three-way" else _group_reduce(np.nan_to_num(est, nan=-np.inf), rule.group, n, "max",
                                                                 -np.inf)
    label = np.full(n, UNDECIDED, dtype=object)
    nan = np.full(n, np.nan)
    if not ctrl.active:
        if rule.kind == "three-way":
            t_typ, t_atyp = rule.thresholds
            region = np.where(est < t_typ, 0, np.where(est > t_atyp, 2, 1))
            ok = np.isfinite(est)
        else:
            region = (ex_est > rule.thresholds[0]).astype(np.int64)
            ok = np.ones(n, bool)
        label[ok] = np.asarray(rule.names, dtype=object)[region[ok]]
        if rule.fixed is not None:
            label = np.where(rule.fixed != "", rule.fixed, label)
        return Decision(label, nan, np.where(np.isfinite(ex_est), ex_est, np.nan), nan, nan, float("nan"), 0.0, 0)
    p, which, tested = example_p(rule, scale)
    rej, cut = reject(p, ctrl, tested)
    c = float(cut)
    label[rej] = np.asarray(rule.names, dtype=object)[which[rej]]
    untested = ~tested
    if rule.kind == "exists":
        label[untested] = rule.names[0]  # no pair: "below" for every i, vacuously
    if rule.fixed is not None:
        label = np.where(rule.fixed != "", rule.fixed, label)
    n_in, n_out = rule.n_in * scale, rule.n_out * scale
    if rule.kind == "three-way":
        lo, hi = newcombe(rule.p_in, n_in, rule.p_out, n_out, float(norm_isf(c / 2)))
    else:
        w = np.ones(rule.group.shape, bool) if rule.witness is None else rule.witness
        k = np.bincount(rule.group[w], minlength=n)
        z_lo = norm_isf(np.minimum(c / np.maximum(k, 1), 0.5))[rule.group]
        lo_pair = np.where(w, np.nan_to_num(newcombe(rule.p_in, n_in, rule.p_out, n_out, z_lo)[0], nan=-np.inf), -np.inf)
        lo = _group_reduce(lo_pair, rule.group, n, "max", -np.inf)
        k = np.bincount(rule.group, minlength=n)
        hi = _group_reduce(np.nan_to_num(newcombe(rule.p_in, n_in, rule.p_out, n_out, float(norm_isf(c)))[1],
                                         nan=np.inf), rule.group, n, "max", -np.inf)
        lo, hi = np.where(k > 0, lo, np.nan), np.where(k > 0, hi, np.nan)
    lo = np.where(np.isfinite(lo), lo, np.nan)
    hi = np.where(np.isfinite(hi), hi, np.nan)
    return Decision(label, np.where(tested, p, np.nan), np.where(np.isfinite(ex_est), ex_est, np.nan), lo, hi, c,
                    ctrl.alpha, int(tested.sum()))


# Projection grid: models x 2^(i/8), i = 0..80 (up to 1024 times the current models; 9% resolution).
GRID_STEPS_PER_DOUBLING = 8
GRID_MAX_DOUBLINGS = 10


def models_needed(rule: Rule, ctrl: ErrorControl, models: int, targets: tuple[float, ...] = (0.9, 0.95, 0.99)
                  ) -> dict[float, int | None]:
    """Projected models to decide each target share of ``rule``'s examples (None: not within 1024 x).

    Plug-in assumption (module docstring): p_in, p_out stay at their estimates and n_in, n_out grow
    with the models; the smallest grid point models x 2^(i/8) where :func:`decide` reaches the share
    (binary search over the grid, about 8 evaluations per target).
    With ``none`` every defined estimate is "decided": the current models answer every target.
    """
    top = GRID_STEPS_PER_DOUBLING * GRID_MAX_DOUBLINGS
    shares: dict[int, float] = {}

    def share(i: int) -> float:
        if i not in shares:
            shares[i] = decide(rule, ctrl, 2.0 ** (i / GRID_STEPS_PER_DOUBLING)).share_decided
        return shares[i]
    out: dict[float, int | None] = {}
    for t in targets:  # binary search on the grid: the decided share grows with the models
        if share(top) < t:
            out[t] = None
            continue
        lo, hi = -1, top  # share(lo) < t (lo = -1: below the grid), share(hi) >= t
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if share(mid) >= t else (mid, hi)
        out[t] = int(math.ceil(models * 2.0 ** (hi / GRID_STEPS_PER_DOUBLING) - 1e-9))
    return out
