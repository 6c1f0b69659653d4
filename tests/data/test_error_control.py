"""Error control of the split labels (issue 19): the procedures, and simulations with known mem.

The simulations draw synthetic Bernoulli outcomes (each model holds an example with probability 0.7;
it is right with probability p_in when it holds it, p_out when not) for many replications, look at
the running counts after each wave of models and measure the false-decision rate (the mean false
decision proportion among decided examples, FDR) of the labels at the stopping look. Each scenario
also runs with one correction removed and must then exceed the nominal level: the test fails if
the correction is dropped. numpy only, a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from memadv.splits.error_control import (UNDECIDED, ErrorControl, Rule, bound_p, decide, example_p, models_needed,
                                       norm_isf, reject)
from memadv.splits.significance import newcombe
from memadv.errors import ConfigError, UnknownChoiceError

ALPHA = 0.05
NAMES = ("typical", "in between", "atypical")


def test_parse_and_refuse() -> None:
    assert ErrorControl.parse("fdr:0.1") == ErrorControl("fdr", 0.1)
    assert ErrorControl.parse("fwer") == ErrorControl("fwer", 0.05)
    assert not ErrorControl.parse("none").active
    assert ErrorControl.parse("fdr:0.06").per_look(3).alpha == pytest.approx(0.02)
    with pytest.raises(UnknownChoiceError, match="fdr-by"):
        ErrorControl.parse("bonf:0.05")
    for bad in ("fdr:x", "fdr:0", "fdr:0.7", "none:0.05"):
        with pytest.raises(ConfigError):
            ErrorControl.parse(bad)


def test_reject_against_hand_computed_procedures() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # BH at 0.05: the largest k with p_(k) <= 0.05 k / 10 is k = 2 (0.039 > 0.015, ..., 0.074 > 0.035)
    rej, cut = reject(p, ErrorControl("fdr", ALPHA))
    assert rej.tolist() == [True, True] + [False] * 8 and cut == pytest.approx(0.008)
    # Holm: 0.001 <= 0.005, 0.008 <= 0.0056? no -> one rejection
    rej, _ = reject(p, ErrorControl("fwer", ALPHA))
    assert rej.sum() == 1
    # BY: BH at 0.05 / (1 + 1/2 + ... + 1/10) = 0.01708: 0.001 <= 0.0017, 0.008 > 0.0034 -> one
    rej, _ = reject(p, ErrorControl("fdr-by", ALPHA))
    assert rej.sum() == 1
    # an untested hypothesis is neither rejected nor counted in m: 9 tests make BH's bar 0.05 k / 9
    tested = np.ones(10, bool)
    tested[-1] = False
    rej, cut = reject(p, ErrorControl("fdr", ALPHA), tested)
    assert rej.sum() == 2 and not rej[-1]


def test_bound_p_inverts_the_newcombe_interval() -> None:
    p_in, p_out, n_in, n_out = np.array([0.9, 0.6]), np.array([0.5, 0.35]), np.array([70.0, 560.0]), np.array([30.0, 240.0])
    p = bound_p(p_in, n_in, p_out, n_out, 0.15, "above")
    lo = newcombe(p_in, n_in, p_out, n_out, norm_isf(p))[0]
    assert lo == pytest.approx([0.15, 0.15], abs=1e-6)
    assert bound_p(p_in, n_in, p_out, n_out, 0.15, "below").tolist() == [1.0, 1.0]  # estimates above t


def _simulate(p_in: np.ndarray, p_out: np.ndarray, looks: list[int], reps: int, thresholds: tuple[float, float],
              decide_at, target: float, seed: int = 0) -> tuple[float, float]:
    """FDR (mean FDP at the stopping look) and its Monte Carlo SE for the three-way training rule.

    The run stops at the first look where the decided share reaches ``target`` (or at the last look);
    ``decide_at(p, tested, look)`` returns the rejected mask. Counts grow by binomial increments:
    the same distribution as drawing each model's membership and correctness."""
    rng = np.random.default_rng(seed)
    n = p_in.size
    mem = np.round(p_in - p_out, 12)
    truth = np.where(mem < thresholds[0], 0, np.where(mem > thresholds[1], 2, 1))
    c_in, c_out, n_in, n_out = (np.zeros((reps, n)) for _ in range(4))
    done, fdp, prev = np.zeros(reps, bool), np.zeros(reps), 0
    for k, models in enumerate(looks):
        a = rng.binomial(models - prev, 0.7, (reps, n))
        b = models - prev - a
        prev = models
        n_in += a
        n_out += b
        c_in += rng.binomial(a, p_in)
        c_out += rng.binomial(b, p_out)
        with np.errstate(invalid="ignore", divide="ignore"):
            rule = Rule("mem", "train", "three-way", np.arange(n), np.zeros(n), np.arange(n), c_in / n_in, n_in,
                        c_out / n_out, n_out, thresholds, NAMES)
            p, which, tested = example_p(rule)
        rej = decide_at(p, tested, k)
        n_rej = rej.sum(-1)
        stop = ~done & ((k == len(looks) - 1) | (n_rej >= target * n))
        fdp[stop] = (rej & (which != truth)).sum(-1)[stop] / np.maximum(n_rej[stop], 1)
        done |= stop
    return float(fdp.mean()), float(fdp.std() / np.sqrt(reps))


def test_one_look_fdr_holds_and_fails_without_bh() -> None:
    """150 examples at the atypical threshold (truth: in between) and 50 clearly atypical, 100 models."""
    p_out = np.full(200, 0.5)
    p_in = p_out + np.r_[np.full(150, 0.15), np.full(50, 0.5)]
    ctrl = ErrorControl("fdr", ALPHA)
    fdr, se = _simulate(p_in, p_out, [100], 400, (0.02, 0.15), lambda p, t, k: reject(p, ctrl, t)[0], 1.0)
    assert fdr + 2 * se <= ALPHA, (fdr, se)
    # removed: each example tested at alpha on its own
    raw, raw_se = _simulate(p_in, p_out, [100], 400, (0.02, 0.15), lambda p, t, k: p <= ALPHA, 1.0)
    assert raw - 3 * raw_se > ALPHA, (raw, raw_se)


def test_repeated_looks_fdr_holds_and_fails_without_the_alpha_split() -> None:
    """Worst case for optional stopping: every example in a narrow middle region (0.14 <= mem = 0.145 <=
    0.15), so every decision is wrong, and the run stops at its first decision; six doubling looks."""
    looks = [25, 50, 100, 200, 400, 800]
    p_out = np.full(50, 0.5)
    p_in = p_out + 0.145
    split = ErrorControl("fdr", ALPHA).per_look(len(looks))
    fdr, se = _simulate(p_in, p_out, looks, 400, (0.14, 0.15), lambda p, t, k: reject(p, split, t)[0], 1e-9)
    assert fdr + 2 * se <= ALPHA, (fdr, se)
    each = ErrorControl("fdr", ALPHA)  # removed: the full alpha at every look
    raw, raw_se = _simulate(p_in, p_out, looks, 400, (0.14, 0.15), lambda p, t, k: reject(p, each, t)[0], 1e-9)
    assert raw - 3 * raw_se > ALPHA, (raw, raw_se)


def _exists_rule(infl: np.ndarray, n_models: int, rng: np.random.Generator, t: float) -> Rule:
    """One replication of an 'infl > t for some i' rule: ``infl`` (n_test, k) true influences, p_out 0.5."""
    n, k = infl.shape
    n_in = rng.binomial(n_models, 0.7, infl.shape).astype(float)
    n_out = n_models - n_in
    p_in = rng.binomial(n_in.astype(int), 0.5 + infl) / n_in
    p_out = rng.binomial(n_out.astype(int), 0.5) / n_out
    return Rule("infl", "test", "exists", np.arange(n), np.zeros(n), np.repeat(np.arange(n), k), p_in.ravel(),
                n_in.ravel(), p_out.ravel(), n_out.ravel(), (t,), ("typical", "excluded"))


def test_exists_rule_needs_the_within_example_correction() -> None:
    """40 test examples x 20 pairs; 30 have every infl at the threshold (truth: below), 10 one pair at 0.5.
    BH over examples of Bonferroni-corrected maxima holds the FDR; the uncorrected minimum does not."""
    rng = np.random.default_rng(1)
    infl = np.full((40, 20), 0.02)
    infl[30:, 0] = 0.5
    truth_above = (infl > 0.02).any(1)
    fdp, fdp_raw = [], []
    ctrl = ErrorControl("fdr", ALPHA)
    for _ in range(200):
        rule = _exists_rule(infl, 200, rng, 0.02)
        d = decide(rule, ctrl)
        wrong = (d.label == "excluded") & ~truth_above | (d.label == "typical") & truth_above
        fdp.append(wrong.sum() / max((d.label != UNDECIDED).sum(), 1))
        # removed: the smallest pair p-value of an example taken as its p-value
        p_min = np.full(40, 1.0)
        np.minimum.at(p_min, rule.group, bound_p(rule.p_in, rule.n_in, rule.p_out, rule.n_out, 0.02, "above"))
        rej, _ = reject(p_min, ctrl)
        fdp_raw.append((rej & ~truth_above).sum() / max(rej.sum(), 1))
    fdr, se = np.mean(fdp), np.std(fdp) / np.sqrt(len(fdp))
    raw, raw_se = np.mean(fdp_raw), np.std(fdp_raw) / np.sqrt(len(fdp_raw))
    assert fdr + 2 * se <= ALPHA, (fdr, se)
    assert raw - 3 * raw_se > ALPHA, (raw, raw_se)


def test_labels_intervals_and_projection() -> None:
    # clearly typical, clearly atypical, in between, undecided (0.14: straddles 0.15), undefined
    p_in = np.array([1.0, 0.9, 0.58, 0.64, np.nan])
    p_out = np.array([0.998, 0.3, 0.5, 0.5, 0.5])
    n_in, n_out = np.full(5, 1400.0), np.full(5, 600.0)
    rule = Rule("mem", "train", "three-way", np.arange(5), np.zeros(5), np.arange(5), p_in, n_in, p_out, n_out,
                (0.02, 0.15), NAMES)
    d = decide(rule, ErrorControl("fdr", ALPHA))
    assert d.label.tolist() == ["typical", "atypical", "in between", UNDECIDED, UNDECIDED]
    assert d.hi[0] < 0.02 and d.lo[1] > 0.15 and d.lo[2] > 0.02 and d.hi[2] < 0.15 and d.lo[3] < 0.15 < d.hi[3]
    paper = decide(rule, ErrorControl.parse("none"))
    assert paper.label.tolist() == ["typical", "atypical", "in between", "in between", UNDECIDED]
    need = models_needed(rule, ErrorControl("fdr", ALPHA), 2000, (0.6, 0.8, 0.9))
    assert need[0.6] == 2000  # 3 of 5 decided now
    # 0.14 is 0.01 from 0.15 with a standard error of about 0.024 at 2,000 models: tens of times more
    assert 10 * 2000 < need[0.8] < 200 * 2000
    assert need[0.9] is None  # the undefined estimate is never decided
    assert decide(rule, ErrorControl("fdr", ALPHA), need[0.8] / 2000).label[3] == "in between"
