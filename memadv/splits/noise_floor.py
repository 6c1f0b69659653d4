"""The noise floor of the split rules: each threshold against the run's standard errors (``summary.md``,
"Noise floor"; docs/splits.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from memadv.splits.significance import norm_cdf


def _median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def noise_report(cfg: Any, m_se: np.ndarray, c_test: np.ndarray, c_se: np.ndarray, te_idx: np.ndarray,
                  se_known: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Compare each threshold with the run's standard errors.

    For the test rules test example j is compared with every atypical training example it is paired
    with (m_j comparisons, counting pairs with a non-zero SE); if all its true influences were 0, noise
    alone would cross threshold t at least once with probability 1 - Phi(t/SE + z)^m_j (normal
    approximation, independent pairs, the median SE). ``p_noise`` is the mean of that over the test
    set: the expected share of test examples the rule would hit by noise alone; ``comparisons`` is
    the mean m_j.
    """
    z = cfg.significance or 0.0
    if not se_known:
        note = "unknown: the scores carry no standard errors (imported Feldman & Zhang estimates)"
        return ([{"rule": r, "threshold": t, "se": None, "ratio": None, "comparisons": None, "p_noise": None,
                  "zero_se": None, "note": note}
                 for r, t in (("mem > atypical", cfg.mem_atypical), ("mem < typical", cfg.mem_typical),
                              ("infl > atypical (test)", cfg.infl_atypical),
                              ("infl > typical (test exclusion)", cfg.infl_typical))],
                ["noise floor unknown: the scores carry no standard errors, so no threshold can be compared with "
                 "the noise of the estimate"])
    # An estimate whose models all agree (p_in, p_out in {0, 1}) has a plug-in SE of 0 and cannot cross
    # a threshold by noise; summarise the noise of the others and report how many are degenerate.
    m_fin = m_se[np.isfinite(m_se)]
    c_fin = np.isfinite(c_se)
    mem_se = _median(m_fin[m_fin > 0])
    infl_se = _median(c_se[c_fin & (c_se > 0)])
    zero = {"mem": float((m_fin == 0).mean()) if m_fin.size else None,
            "infl": float((c_se[c_fin] == 0).mean()) if c_fin.any() else None}
    noisy_test = c_test[c_fin & (c_se > 0)]
    sorted_te = np.sort(te_idx)
    per_test = (np.bincount(np.searchsorted(sorted_te, noisy_test), minlength=len(te_idx)) if noisy_test.size
                else np.zeros(len(te_idx), np.int64))
    comps = float(per_test.mean()) if per_test.size else 0.0
    rows, warns = [], []
    for rule, t, se, k, zs in (("mem > atypical", cfg.mem_atypical, mem_se, None, zero["mem"]),
                               ("mem < typical", cfg.mem_typical, mem_se, None, zero["mem"]),
                               ("infl > atypical (test)", cfg.infl_atypical, infl_se, comps, zero["infl"]),
                               ("infl > typical (test exclusion)", cfg.infl_typical, infl_se, comps, zero["infl"])):
        ratio = t / se if se and np.isfinite(se) and se > 0 else float("nan")
        p_noise = None
        if k is not None and np.isfinite(ratio):
            p_noise = float(np.mean(1.0 - norm_cdf(ratio + z) ** per_test)) if per_test.size else 0.0
        note = ""
        if np.isfinite(ratio) and ratio < 2.0:
            note = "within 2 SE of zero"
            warns.append(f"threshold {t} of '{rule}' is within 2 standard errors of zero (median SE {se:.3g}): "
                         f"noise alone decides many memberships; use more models or --significance"
                         + (f"; were all true influences zero, noise alone would cross it for {p_noise:.0%} of the "
                            f"test examples ({k:.3g} comparisons each on average)" if p_noise is not None else ""))
        elif not np.isfinite(ratio):
            note = "no estimate with a non-zero SE"
        if p_noise is not None and p_noise > 0.1 and not note:
            note = "multiple comparisons: noise crosses it often"
            warns.append(f"'{rule}' compares each test example with {k:.3g} atypical training examples on "
                         f"average; with median SE {se:.3g}, were all true influences zero, noise alone would cross "
                         f"threshold {t} for {p_noise:.0%} of the test examples, which can empty the set; use more "
                         f"models or --significance")
        rows.append({"rule": rule, "threshold": t, "se": None if not np.isfinite(se) else se,
                     "ratio": None if not np.isfinite(ratio) else ratio, "comparisons": k, "p_noise": p_noise,
                     "zero_se": zs, "note": note})
    return rows, warns
