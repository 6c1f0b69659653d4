"""Effects with 95% confidence intervals over paired seeds, and three-valued verdicts.

A claim of the paper is decided from an *effect* — a mean over seeds, or the mean of paired
differences between two arms trained with the same seed (same initialisation and data order where
the arms allow it) — and its two-sided 95% Student-t confidence interval over those seeds:

* "effect > margin" is **supported** when the interval lies above the margin, **contradicted** when
  it lies below, **inconclusive** when it contains the margin (or when fewer than two seeds give
  no interval); "effect < margin" mirrors it.
* A claim made of several parts is supported when every part is, contradicted when any part is,
  inconclusive otherwise.
* "not decided" is kept for claims whose runs are missing or whose premise fails
  (:mod:`memadv.analysis.paper_claims`).

The number of seeds a comparison needs is the smallest n whose paired t-test (two-sided, level
0.05) detects a true difference ``delta`` with 80% power, given the standard deviation of the
paired differences seen so far (noncentral t; e.g. Julious 2004, Statistics in Medicine 23:1921,
"Sample sizes for clinical trials with normal data", Section 3.1). It is a planning figure: the sd
of 2-3 seeds is itself uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95                # two-sided confidence level of every interval
POWER = 0.80                # power the seed-count planning asks for
MAX_SEEDS_PLANNED = 1000    # the planner gives up above this (says "> 1000")

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_DECIDED = "not decided"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_DECIDED)


@dataclass(frozen=True)
class Effect:
    """A mean (or mean paired difference) over seeds with its 95% interval.

    ``estimate``, ``lo``, ``hi`` and ``sd`` are in ``unit`` (percentage points for accuracies);
    ``lo``/``hi``/``sd`` are NaN with fewer than two seeds. ``seeds`` are the seeds that entered.
    """

    what: str
    estimate: float
    lo: float
    hi: float
    sd: float
    seeds: tuple[int, ...]
    unit: str = "pts"

    @property
    def n(self) -> int:
        return len(self.seeds)

    def text(self, fmt: str = "{:+.1f}") -> str:
        if not math.isfinite(self.estimate):
            return f"{self.what}: no value"
        ci = (f"95% CI [{fmt.format(self.lo)}, {fmt.format(self.hi)}]" if math.isfinite(self.lo)
              else "no CI with one seed")
        unit = self.unit if self.unit in ("", "%") else f" {self.unit}"
        return f"{self.what}: {fmt.format(self.estimate)}{unit} ({ci}, n = {self.n} seed{'s' if self.n != 1 else ''})"


def mean_effect(values: Mapping[int, float], what: str, unit: str = "pts") -> Effect:
    """Mean over seeds of ``values`` (seed -> value; NaN values are left out) with its t interval."""
    seeds = tuple(sorted(s for s, v in values.items() if v is not None and math.isfinite(v)))
    x = np.array([values[s] for s in seeds], dtype=np.float64)
    if x.size == 0:
        return Effect(what, math.nan, math.nan, math.nan, math.nan, (), unit)
    est = float(x.mean())
    if x.size < 2:
        return Effect(what, est, math.nan, math.nan, math.nan, seeds, unit)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Effect(what, est, est - half, est + half, sd, seeds, unit)


def paired_effect(a: Mapping[int, float], b: Mapping[int, float], what: str, unit: str = "pts") -> Effect:
    """``b - a`` over the seeds both arms have (finite values), with the paired t interval."""
    common = {s: b[s] - a[s] for s in set(a) & set(b)
              if a[s] is not None and b[s] is not None and math.isfinite(a[s]) and math.isfinite(b[s])}
    return mean_effect(common, what, unit)


def above(effect: Effect, margin: float = 0.0) -> str:
    """Verdict of "effect > margin" (see the module docstring)."""
    if math.isfinite(effect.lo) and effect.lo > margin:
        return SUPPORTED
    if math.isfinite(effect.hi) and effect.hi < margin:
        return CONTRADICTED
    return INCONCLUSIVE


def below(effect: Effect, margin: float = 0.0) -> str:
    """Verdict of "effect < margin"."""
    if math.isfinite(effect.hi) and effect.hi < margin:
        return SUPPORTED
    if math.isfinite(effect.lo) and effect.lo > margin:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: Iterable[str]) -> str:
    """All parts supported -> supported; any contradicted -> contradicted; else inconclusive."""
    vs = list(verdicts)
    if vs and all(v == SUPPORTED for v in vs):
        return SUPPORTED
    if any(v == CONTRADICTED for v in vs):
        return CONTRADICTED
    return INCONCLUSIVE


def seeds_for_power(sd: float, delta: float, alpha: float = 1 - LEVEL, power: float = POWER) -> int | None:
    """Smallest number of paired seeds n >= 2 whose two-sided paired t-test at level ``alpha`` has
    ``power`` against a true mean difference ``delta`` when the differences have standard deviation
    ``sd`` (noncentral t with n - 1 degrees of freedom). None when ``sd`` is unknown (NaN) or
    ``delta`` is 0; ``MAX_SEEDS_PLANNED + 1`` when even that many seeds would not do."""
    if not (math.isfinite(sd) and math.isfinite(delta)) or delta == 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, MAX_SEEDS_PLANNED + 1):
        df = n - 1
        crit = stats.t.ppf(1 - alpha / 2, df)
        nc = abs(delta) / sd * math.sqrt(n)
        if stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) >= power:
            return n
    return MAX_SEEDS_PLANNED + 1
