"""Significance decisions of the split definitions (``memadv splits --significance z``).

A threshold test "mem > t" or "infl > t" passes only when the bound of a score interval passes it.
The interval is Newcombe's hybrid score interval for a difference of two proportions (Newcombe 1998,
Statistics in Medicine 17:873-890, method 10), built from Wilson intervals of p_in and p_out: unlike
estimate +- z * SE it does not collapse to a point when every model agrees (p = 0 or 1), so 17 agreeing
models do not make "mem < 0.02" significant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def above(est: np.ndarray, lo: np.ndarray | None, t: float) -> np.ndarray:
    return (lo if lo is not None else est) > t


def below(est: np.ndarray, hi: np.ndarray | None, t: float) -> np.ndarray:
    return (hi if hi is not None else est) < t


def wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lower, upper) of a proportion p observed in n trials; NaN where n = 0."""
    p = np.asarray(p, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2n = z * z / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
        bad = ~(n > 0)
    return np.where(bad, np.nan, centre - half), np.where(bad, np.nan, centre + half)


def newcombe(p_in: np.ndarray, n_in: np.ndarray, p_out: np.ndarray, n_out: np.ndarray, z: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of Newcombe's hybrid score interval for p_in - p_out (Newcombe 1998, method 10)."""
    l1, u1 = wilson(p_in, n_in, z)
    l2, u2 = wilson(p_out, n_out, z)
    d = np.asarray(p_in, np.float64) - np.asarray(p_out, np.float64)
    return d - np.sqrt((p_in - l1) ** 2 + (u2 - p_out) ** 2), d + np.sqrt((u1 - p_in) ** 2 + (p_out - l2) ** 2)


def pair_proportions(c_train: np.ndarray, c_test: np.ndarray, c_infl: np.ndarray, mem: pd.DataFrame,
                     ta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p_in, n_in, p_out, n_out) of infl for the pairs (c_train, c_test), shape (pairs,).

    infl.parquet stores only the difference; its two proportions follow from n_in, n_out of the
    training example (mem.parquet) and P(correct) of the test example over all M = n_in + n_out
    subset models (test_acc.parquet): M p_correct = n_in p_in + n_out p_out and infl = p_in - p_out give
    p_out = p_correct - infl n_in / M. Where ``ta`` holds the full-data ERM models' rate
    (``--erm-models full``), its column ``p_correct_subset`` is the subset models' one used here.
    """
    tr_pos = pd.Index(mem["idx"].to_numpy(np.int64)).get_indexer(c_train)
    te_pos = pd.Index(ta["idx"].to_numpy(np.int64)).get_indexer(c_test)
    n_in = mem["n_in"].to_numpy(np.float64)[tr_pos]
    n_out = mem["n_out"].to_numpy(np.float64)[tr_pos]
    col = "p_correct_subset" if "p_correct_subset" in ta.columns else "p_correct"
    p_ok = ta[col].to_numpy(np.float64)[te_pos]
    p_out = np.clip(p_ok - c_infl * n_in / (n_in + n_out), 0.0, 1.0)
    p_in = np.clip(p_out + c_infl, 0.0, 1.0)
    return p_in, n_in, p_out, n_out


def infl_lower_bound(c_train: np.ndarray, c_test: np.ndarray, c_infl: np.ndarray, mem: pd.DataFrame,
                      ta: pd.DataFrame, z: float) -> np.ndarray:
    """Newcombe lower bound of infl for the pairs (c_train, c_test) (proportions: :func:`pair_proportions`)."""
    return newcombe(*pair_proportions(c_train, c_test, c_infl, mem, ta), z)[0]
