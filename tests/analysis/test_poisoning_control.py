"""C3's poisoning control: the halves of D_atyp by poisoning score, and the claim's verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memadv.analysis import paper_claims as pc
from memadv.analysis import verdicts as v
from memadv.analysis.poisoning_control import ControlRun, control_plan, poisoning_halves
from memadv.analysis.sec31 import Sec3Settings


def test_halves_are_equal_disjoint_and_ordered_by_score():
    ids = np.array([10, 11, 12, 13, 14, 15, 16])
    q = np.array([0.9, 0.1, 0.5, 0.95, 0.2, 0.6, 0.3])
    h = poisoning_halves(ids, q)
    assert h["high"].tolist() == [10, 13, 15] and h["low"].tolist() == [11, 14, 16]  # 12 (the median) in neither
    assert not set(h["high"]) & set(h["low"])


def test_ties_are_broken_by_id_so_the_split_is_a_function_of_the_scores():
    ids = np.array([5, 3, 9, 1])
    h = poisoning_halves(ids, np.zeros(4))
    assert h["high"].tolist() == [1, 3] and h["low"].tolist() == [5, 9]
    rev = poisoning_halves(ids[::-1], np.zeros(4))
    assert [x.tolist() for x in rev.values()] == [x.tolist() for x in h.values()]


def test_mismatched_scores_are_refused():
    with pytest.raises(ValueError, match="3 ids but 2 scores"):
        poisoning_halves(np.arange(3), np.zeros(2))


def test_plan_has_both_halves_for_every_seed():
    assert control_plan(Sec3Settings(seeds=[0, 2])) == [("high", 0), ("low", 0), ("high", 2), ("low", 2)]


def _control(half, seed, clean, adv):
    f = pd.DataFrame([{"checkpoint": "last", "epoch": 30, "subset": "test/all", "attack": a, "acc": x / 100,
                       "n": 1000} for a, x in (("clean", clean), ("pgd", adv))])
    return ControlRun(half, seed, f)


@pytest.mark.parametrize("low_minus_high,expected", [
    ((2.0, 2.5, 1.5), v.SUPPORTED),           # the low half always better: poisoning does the harm
    ((-2.0, -2.5, -1.5), v.CONTRADICTED),     # the high half always better
    ((3.0, -3.0, 0.5), v.INCONCLUSIVE),       # the CI straddles 0
])
def test_each_verdict_of_the_control(low_minus_high, expected):
    runs = []
    for s, (d, base) in enumerate(zip(low_minus_high, (80.0, 70.0, 90.0))):  # big seed-to-seed spread
        runs += [_control("high", s, base, base / 2), _control("low", s, base + d, base / 2 + d)]
    c = pc.claim_c3_poisoning(runs)
    assert c.verdict == expected, c.numbers
    assert [e["seeds"] for e in c.effects] == [[0, 1, 2]] * 2 and "final.parquet" in c.numbers


def test_missing_control_runs_are_not_decided():
    assert pc.claim_c3_poisoning(None).verdict.startswith(v.NOT_DECIDED)
    assert pc.claim_c3_poisoning([_control("high", 0, 80, 40)]).verdict.startswith(v.NOT_DECIDED)
