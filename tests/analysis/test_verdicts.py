"""Three-valued verdicts from paired-seed CIs (memadv.analysis.verdicts) and the paper's claims decided
with them (memadv.analysis.paper_claims): one case per outcome, the fit premise, matched selection."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memadv.analysis import paper_claims as pc
from memadv.analysis import verdicts as v


# --------------------------------------------------------------------------- statistics

def test_paired_interval_is_the_t_interval_of_the_differences():
    a = {0: 80.0, 1: 70.0, 2: 90.0}
    b = {0: 81.0, 1: 71.5, 2: 90.5, 7: 50.0}        # seed 7 has no partner: left out
    e = v.paired_effect(a, b, "b - a")
    d = np.array([1.0, 1.5, 0.5])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert e.seeds == (0, 1, 2) and e.estimate == pytest.approx(1.0)
    assert (e.lo, e.hi) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))


def test_pairing_removes_the_seed_to_seed_spread():
    # arms differ by exactly +1 in every seed while seeds differ by 20 points: the paired CI excludes 0,
    # a CI of the difference of means (Welch) would not
    a = {s: 60.0 + 10 * s for s in range(3)}
    b = {s: x + 1.0 + 0.1 * s for s, x in a.items()}
    assert v.above(v.paired_effect(a, b, "d")) == v.SUPPORTED
    welch = stats.ttest_ind(list(b.values()), list(a.values()), equal_var=False)
    assert welch.pvalue > 0.05


@pytest.mark.parametrize("diffs, margin, rule, expected", [
    ([2.0, 2.5, 3.0], 0.0, v.above, v.SUPPORTED),        # CI above 0
    ([-2.0, -2.5, -3.0], 0.0, v.above, v.CONTRADICTED),  # CI below 0
    ([-2.0, 1.0, 3.0], 0.0, v.above, v.INCONCLUSIVE),    # CI holds 0
    ([5.0], 0.0, v.above, v.INCONCLUSIVE),               # one seed: no interval, whatever the value
    ([1.0, 1.2, 0.8], 5.0, v.below, v.SUPPORTED),        # "rise < 5": CI below 5
    ([8.0, 9.0, 10.0], 5.0, v.below, v.CONTRADICTED),
    ([-0.5, -0.6, -0.4], -1.0, v.above, v.SUPPORTED),    # non-inferiority: within 1 point
])
def test_each_verdict(diffs, margin, rule, expected):
    e = v.mean_effect(dict(enumerate(diffs)), "d")
    assert rule(e, margin) == expected


def test_combine():
    assert v.combine([v.SUPPORTED, v.SUPPORTED]) == v.SUPPORTED
    assert v.combine([v.SUPPORTED, v.INCONCLUSIVE]) == v.INCONCLUSIVE
    assert v.combine([v.INCONCLUSIVE, v.CONTRADICTED]) == v.CONTRADICTED
    assert v.combine([]) == v.INCONCLUSIVE


def test_seeds_for_power_matches_a_simulated_paired_t_test():
    n = v.seeds_for_power(sd=2.0, delta=1.5)
    assert n is not None and 2 < n < 50
    rng = np.random.default_rng(0)

    def power(k: int) -> float:
        d = rng.normal(1.5, 2.0, size=(20000, k))
        t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(k))
        return float((np.abs(t) > stats.t.ppf(0.975, k - 1)).mean())

    assert power(n) >= 0.79 and power(n - 1) < 0.80   # n is the smallest with 80% power (simulation error ~0.3%)
    assert v.seeds_for_power(math.nan, 1.0) is None and v.seeds_for_power(1.0, 0.0) is None


# --------------------------------------------------------------------------- claims

def _sec31(train_clean, train_adv, early_clean=10.0, late_clean=40.0, adv=10.0, epochs=10):
    """seed -> metrics of a Section 3.1 PGD-AT run; per-seed end values, linear curves."""
    out = {}
    for s, (tc, ta) in enumerate(zip(train_clean, train_adv)):
        out[s] = pd.DataFrame({"epoch": np.arange(1, epochs + 1),
                               "train/atypical/clean": np.linspace(0.2, tc / 100, epochs),
                               "train/atypical/adv": np.linspace(0.1, ta / 100, epochs),
                               "test/atypical/clean": np.linspace(early_clean, late_clean + s, epochs) / 100,
                               "test/atypical/adv": np.full(epochs, adv / 100) + 0.001 * s,
                               "test/atypical/n": np.full(epochs, 40.0)})
    return out


def test_c1_c2_are_not_decided_when_the_network_does_not_fit_d_atyp():
    pgd = _sec31([62.0, 60.0, 64.0], [2.0, 1.0, 3.0])
    c1, c2 = pc.claim_c1(pgd), pc.claim_c2(pgd)
    assert c1.verdict.startswith(v.NOT_DECIDED) and "premise fails" in c1.verdict
    assert c2.verdict.startswith(v.NOT_DECIDED) and "premise fails" in c2.verdict
    assert "fit premise" in c1.numbers
    assert "PGD-AT train-atypical clean, last epoch: 62.0%" in c1.numbers
    # the fit premise needs both clean >= 95% and PGD-20 >= 80%
    assert pc.claim_c1(_sec31([99.0, 100, 98], [70.0, 75, 72])).verdict.startswith(v.NOT_DECIDED)


def test_c1_c2_when_the_network_fits():
    pgd = _sec31([99.0, 100.0, 99.5], [85.0, 90.0, 88.0])
    assert pc.claim_c1(pgd).verdict == v.SUPPORTED
    c2 = pc.claim_c2(pgd)
    assert c2.verdict == v.SUPPORTED and [e["verdict"] for e in c2.effects] == [v.SUPPORTED, v.SUPPORTED]
    # clean accuracy does not rise: contradicted
    flat = _sec31([99.0, 100.0, 99.5], [85.0, 90.0, 88.0], early_clean=40.0, late_clean=20.0)
    assert pc.claim_c2(flat).verdict == v.CONTRADICTED
    assert pc.claim_c1(None).verdict.startswith(v.NOT_DECIDED)


def _cf_runs(clean_rise, adv_rise, seeds=(0, 1, 2)):
    """Section 3.2 PGD-AT runs at p = 0 and 100 with atypical_test rows: per seed, p = 100 is
    ``clean_rise[s]`` / ``adv_rise[s]`` points above p = 0 on D'_atyp (seed-to-seed spread in the base)."""
    def run(p, s, clean, adv):
        at = pd.DataFrame([{"checkpoint": "last", "epoch": 2, "subset": "test/atypical", "attack": a, "acc": x / 100,
                            "n": 110} for a, x in (("clean", clean), ("pgd", adv))])
        return SimpleNamespace(p=p, method="pgd", seed=s, metrics=pd.DataFrame(), final=None, atypical_test=at)
    out = []
    for s in seeds:
        base = 30.0 + 10 * s
        out += [run(0, s, base, 10.0 + s), run(100, s, base + clean_rise[s], 10.0 + s + adv_rise[s])]
    return out


def test_c2_is_decided_as_a_counterfactual_over_paired_seeds():
    fits = _sec31([99.0, 100.0, 99.5], [85.0, 90.0, 88.0], early_clean=40.0, late_clean=20.0)  # within-run: falls
    c2 = pc.claim_c2(fits, _cf_runs([8.0, 9.0, 10.0], [0.5, -0.5, 0.2]))
    assert c2.verdict == v.SUPPORTED                                   # the counterfactual decides, not the curve
    assert "counterfactual (deciding)" in c2.numbers and "within-run reading (Section 3.1, not deciding)" in c2.numbers
    assert c2.effects[0]["estimate"] == pytest.approx(9.0) and c2.effects[0]["seeds"] == [0, 1, 2]
    # training with D_atyp raises their robustness by 8-10 points: the "not robustness" half is contradicted
    assert pc.claim_c2(fits, _cf_runs([8.0, 9.0, 10.0], [8.0, 9.0, 10.0])).verdict == v.CONTRADICTED
    # a rise of -3..+5 points over 3 seeds: the interval contains 0
    assert pc.claim_c2(fits, _cf_runs([-3.0, 5.0, 1.0], [0.0, 0.1, 0.0])).verdict == v.INCONCLUSIVE
    # the premise still governs: a network that does not fit D_atyp decides nothing about memorizing
    nofit = _sec31([62.0, 60.0, 64.0], [2.0, 1.0, 3.0])
    assert pc.claim_c2(nofit, _cf_runs([8.0, 9.0, 10.0], [0.5, -0.5, 0.2])).verdict.startswith(v.NOT_DECIDED)
    # without Section 3.1 runs and without counterfactual rows: not decided (missing)
    assert pc.claim_c2(None, None).verdict.startswith(v.NOT_DECIDED)


def _run32(p, method, seed, clean, adv, sep, final=True):
    m = pd.DataFrame({"epoch": [1, 2], "test/all/clean": [0.5, 0.0], "test/all/adv": [0.1, 0.0],
                      "cos_dist": [0.1, sep]})
    f = pd.DataFrame([{"checkpoint": "last", "subset": "test/all", "attack": a, "acc": x / 100, "n": 1000}
                      for a, x in (("clean", clean), ("pgd", adv))]) if final else None
    if not final:
        m.loc[1, ["test/all/clean", "test/all/adv"]] = [clean / 100, adv / 100]
    return SimpleNamespace(p=p, method=method, seed=seed, metrics=m, final=f)


def test_c3_c4_c5_paired_over_seeds_from_the_full_evaluation():
    runs = []
    for s, base in enumerate((80.0, 70.0, 90.0)):              # big seed-to-seed spread, consistent drop
        runs += [_run32(0, "pgd", s, base, base / 2, 0.70 + s / 100), _run32(100, "pgd", s, base - 2, base / 2 - 1.5,
                                                                             0.60 + s / 100),
                 _run32(0, "erm", s, base + 5, 0, 0.5), _run32(100, "erm", s, base + 5.2 - s * 0.1, 0, 0.5)]
    c3 = pc.claim_c3(runs)
    assert c3.verdict == v.SUPPORTED and "final.parquet" in c3.numbers
    assert c3.effects[0]["estimate"] == pytest.approx(2.0) and c3.effects[1]["estimate"] == pytest.approx(1.5)
    assert pc.claim_c4(runs).verdict == v.SUPPORTED          # ERM: +0.1 pts, CI inside (-1, ...)
    assert pc.claim_c5(runs).verdict == v.SUPPORTED          # separation falls by 0.10 in every seed
    # metrics are ignored where final.parquet exists: the metrics' last row says 0% above
    # ERM drops 3 points in every seed: C4 contradicted
    drop = [r if not (r.method == "erm" and r.p == 100) else
            _run32(100, "erm", r.seed, [85.0, 75.0, 95.0][r.seed] - 3 - 0.1 * r.seed, 0, 0.5) for r in runs]
    assert pc.claim_c4(drop).verdict == v.CONTRADICTED
    # one seed: inconclusive, never "holds" on a single pair
    assert pc.claim_c3([r for r in runs if r.seed == 0]).verdict == v.INCONCLUSIVE
    # no final.parquet: the per-epoch metrics decide, and the numbers say so
    c3m = pc.claim_c3([_run32(r.p, r.method, r.seed, *(80 - r.p / 50, 40 - r.p / 100, 0.5), final=False)
                       for r in runs])
    assert "metrics.parquet" in c3m.numbers
    assert pc.claim_c3([]).verdict.startswith(v.NOT_DECIDED)


def test_c4_is_decided_on_the_test_images_outside_d_atyp_where_erm_has_headroom():
    """ERM is ~100% on D'_typ whatever p is (its 80% rule picks the easy images), so C4 is decided on
    every test image outside D'_atyp (atypical_test.parquet): there a 3-point drop shows and
    contradicts C4, and the D'_typ reading is shown beside it, not deciding."""
    from memadv.bat.runs import OUTSIDE_ATYPICAL

    def erm(p, s, wide):
        r = _run32(p, "erm", s, 99.9 + 0.01 * s, 0, 0.5)           # D'_typ: flat at ~100%
        r.atypical_test = pd.DataFrame([{"checkpoint": "last", "epoch": 2, "subset": OUTSIDE_ATYPICAL,
                                         "attack": "clean", "acc": wide / 100, "n": 9000}])
        return r
    runs = [x for s, base in enumerate((84.0, 83.0, 85.5)) for x in (erm(0, s, base), erm(100, s, base - 3 + 0.1 * s))]
    c4 = pc.claim_c4(runs)
    assert c4.verdict == v.CONTRADICTED
    assert c4.effects[0]["estimate"] == pytest.approx(-2.9) and "outside D'_atyp" in c4.effects[0]["what"]
    assert "the paper's set, not deciding" in c4.numbers and "ERM D'_typ clean" in c4.numbers
    # without those rows (runs made before them) D'_typ decides, as before: flat, so supported
    for r in runs:
        r.atypical_test = None
    assert pc.claim_c4(runs).verdict == v.SUPPORTED and "D'_typ" in pc.claim_c4(runs).effects[0]["what"]


def _table_run(method, seed, group, last_clean, last_adv, best_adv_epoch_clean=None):
    m = pd.DataFrame({"epoch": [1, 2, 3], "test/all/clean": [0.5, best_adv_epoch_clean or 0.5, 0.0],
                      "test/all/adv": [0.1, 0.9, 0.0]})   # epoch 2: best PGD-20 on the test set
    f = pd.DataFrame([{"checkpoint": "last", "subset": "test/all", "attack": a, "acc": x / 100, "n": 10000}
                      for a, x in (("clean", last_clean), ("pgd", last_adv))])
    return SimpleNamespace(method=method, seed=seed, group=group, metrics=m, final=f)


def test_c6_one_verdict_per_bat_setting_last_vs_last():
    runs = []
    for s in range(3):
        runs.append(_table_run("pgd", s, "pgd", 80.0 + s, 40.0 + s, best_adv_epoch_clean=0.99))
        runs.append(_table_run("bat", s, "bat-a1", 82.0 + s + 0.1 * s, 39.5 + s))     # +2 clean, -0.5 adv
        runs.append(_table_run("bat", s, "bat-a2", 79.0 + s, 40.0 + s + 0.2 * s))     # -1 clean
    claims = pc.claim_c6(runs, lambda r: r.group)
    assert [c.id for c in claims] == ["C6", "C6"]
    by = {c.text.split(" has")[0].split(") ")[-1]: c for c in claims}
    assert by["bat-a1"].verdict == v.SUPPORTED and by["bat-a2"].verdict == v.CONTRADICTED
    # the paper's test-selected PGD-AT row (99% clean at its best PGD-20 epoch) is shown, not deciding
    assert "test-selected" in by["bat-a1"].numbers and by["bat-a1"].verdict == v.SUPPORTED
    assert pc.claim_c6([r for r in runs if r.method == "pgd"], str)[0].verdict.startswith(v.NOT_DECIDED)
