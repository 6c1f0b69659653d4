"""C3's poisoning control: the halves of D_atyp by poisoning score, and the claim's verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memadv.analysis import paper_claims as pc
from memadv.analysis import verdicts as v
from types import SimpleNamespace

from memadv.analysis.poisoning_control import ControlRun
from memadv.paper.sec3 import class_matched_draw, control_plan, poisoning_halves
from memadv.paper.sec3 import Sec3Settings


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


def test_plan_adds_the_random_arm_only_where_the_estimate_left_images_out():
    s = Sec3Settings(seeds=[1], dataset="fashion-mnist", dataset_options={"per_class": 200})
    assert control_plan(s) == [("high", 1), ("low", 1), ("random", 1)]


def test_class_matched_draw_takes_as_many_of_each_class_from_the_pool():
    rng = np.random.default_rng(0)
    pool = np.arange(100, 160)
    pool_labels = np.repeat([0, 1, 2], 20)
    drawn = class_matched_draw(np.array([2, 0, 2, 2]), pool, pool_labels, rng)
    assert drawn.size == 4 and set(drawn) <= set(pool) and len(set(drawn)) == 4
    assert sorted(pool_labels[drawn - 100].tolist()) == [0, 2, 2, 2]
    again = class_matched_draw(np.array([2, 0, 2, 2]), pool, pool_labels, np.random.default_rng(0))
    assert again.tolist() == drawn.tolist()                       # seeded: any run can be regenerated
    with pytest.raises(ValueError, match="class 1 needs 21 unused training images, the data set leaves 20"):
        class_matched_draw(np.ones(21, int), pool, pool_labels, rng)


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


@pytest.mark.parametrize("random_minus_atyp,expected", [
    ((2.0, 2.5, 1.5), v.SUPPORTED),           # random extra images hurt less than D_atyp: atypicality matters
    ((-2.0, -2.5, -1.5), v.CONTRADICTED),     # D_atyp does better than as many random images
    ((3.0, -3.0, 0.5), v.INCONCLUSIVE),
])
def test_each_verdict_of_the_random_addition_control(random_minus_atyp, expected):
    def p100(s, clean, adv):
        f = pd.DataFrame([{"checkpoint": "last", "subset": "test/all", "attack": a, "acc": x / 100, "n": 1000}
                          for a, x in (("clean", clean), ("pgd", adv))])
        return SimpleNamespace(p=100, method="pgd", seed=s, metrics=pd.DataFrame(), final=f)
    runs32, controls = [], []
    for s, (d, base) in enumerate(zip(random_minus_atyp, (80.0, 70.0, 90.0))):
        runs32 += [p100(s, base, base / 2), SimpleNamespace(**{**vars(p100(s, base + 5, base / 2 + 5)), "p": 0})]
        controls += [_control("random", s, base + d, base / 2 + d), _control("high", s, 1.0, 1.0)]
    c = pc.claim_c3_random(controls, runs32)
    assert c.id == "C3-R" and c.verdict == expected, c.numbers
    assert [e["seeds"] for e in c.effects] == [[0, 1, 2]] * 2 and "p = 100%" in c.effects[0]["what"]
    assert pc.claim_c3_random([r for r in controls if r.half == "high"], runs32).verdict.startswith(v.NOT_DECIDED)


def test_missing_control_runs_are_not_decided():
    assert pc.claim_c3_poisoning(None).verdict.startswith(v.NOT_DECIDED)
    assert pc.claim_c3_poisoning([_control("high", 0, 80, 40)]).verdict.startswith(v.NOT_DECIDED)


def test_random_arm_trains_on_d_typ_plus_class_matched_unused_images(tmp_path):
    """The random-addition arm, for real on a small Fashion-MNIST-layout copy written to disk: the
    estimate's data set is the first 8 images of each class; the arm adds, to D_typ, as many images
    of each class as D_atyp has, drawn from the images that data set left out, and trains on them."""
    import json

    from memadv.data import load_dataset
    from memadv.data.idx import idx_bytes
    from memadv.experiments.sec3 import PoisoningControlTask
    from memadv.layout import RunLayout

    rng = np.random.default_rng(0)
    root = tmp_path / "fm"
    root.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.tile(np.arange(10, dtype=np.uint8), 20),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.tile(np.arange(10, dtype=np.uint8), 3)}
    for stem, a in arrays.items():
        (root / stem).write_bytes(idx_bytes(a))
    ds = load_dataset("fashion-mnist", str(root), per_class=8)
    settings = Sec3Settings(dataset="fashion-mnist", data_root=str(root), dataset_options={"per_class": 8},
                            epochs=1, seeds=[3], final_max=None, device="cpu")
    assert control_plan(settings)[2] == ("random", 3)
    atyp, typ, test_ids = np.array([0, 1, 11, 21]), np.arange(30, 60), np.arange(10)  # positions in ds
    run_dir = tmp_path / "run"
    run = PoisoningControlTask(str(run_dir), settings)._random_arm(ds, atyp, typ, test_ids, 3)
    assert (run / "final.parquet").is_file() and run.name == "random-pgd-seed3"
    kept = json.loads((RunLayout(run_dir).sec32_controls / "subsets" / "random-pgd-seed3.json").read_text())
    drawn = np.array(kept["drawn_original_ids"])
    labels = arrays["train-labels-idx1-ubyte"]
    assert sorted(labels[drawn].tolist()) == sorted(ds.labels("train").numpy()[atyp].tolist())  # class-matched
    assert not set(drawn) & set(ds.ids("train").tolist()) and kept["n_train"] == 34            # unused images
