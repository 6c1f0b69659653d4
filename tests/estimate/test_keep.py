"""Influence storage: every --keep rule equals a dense float64 evaluation on small random cases,
and splits answers (or refuses) each definition exactly as the dense table does."""

from __future__ import annotations

import numpy as np
import pytest

from memadv.scores.schema import Scores
from memadv.splits.rules import SplitConfig, compute_splits
from memadv.estimate import influence as agg
from memadv.estimate.influence import KeepRule, influence, keep_rule, same_class_pairs
from memadv.scores import equations
from memadv.scores.equations import difference_of_means, memorization
from memadv.errors import ConfigError, SchemaError, UnknownChoiceError


def dense(masks, test_correct):
    """What a user would write: both count matrices by dense float64 GEMMs, then Eq. 2 everywhere."""
    m = masks.shape[0]
    s = masks.astype(np.float64)
    t = test_correct.astype(np.float64)
    c_in, c_out = s.T @ t, (1 - s).T @ t
    n_in = s.sum(0)[:, None]
    return difference_of_means(c_in, n_in, c_out, m - n_in)[2:]


def case(seed, m=41, n_train=57, n_test=23, classes=4):
    rng = np.random.default_rng(seed)
    masks = rng.random((m, n_train)) < 0.7
    masks[:, 3] = True     # never out: NaN estimates
    masks[:, 5] = False    # never in
    p = rng.random(n_test)[None, :]
    test_correct = rng.random((m, n_test)) < p
    return masks, test_correct, rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)


def expected_keep(rule, infl, same):
    a = np.abs(infl)
    with np.errstate(invalid="ignore"):
        s = np.zeros_like(same) if rule.same_min is None else (a >= rule.same_min) | (rule.same_min == 0)
        c = np.zeros_like(same) if rule.cross_min is None else (a >= rule.cross_min) | (rule.cross_min == 0)
    return np.where(same, s, c)


RULES = [KeepRule("same-class", 0.0, None), KeepRule("same-class", 0.0, 0.15), KeepRule("threshold", 0.02, 0.02),
         KeepRule("threshold", 0.1, 0.1), KeepRule("all", 0.0, 0.0)]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.choice}-{r.same_min}-{r.cross_min}")
@pytest.mark.parametrize("block_rows", [1, 7, None])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("count_gemm", agg.COUNT_GEMMS)
def test_every_rule_equals_dense(rule, block_rows, seed, count_gemm):
    masks, test_correct, y_train, y_test = case(seed)
    infl, se = dense(masks, test_correct)
    same = y_train[:, None] == y_test[None, :]
    want = expected_keep(rule, infl, same)
    df = influence(masks, test_correct, y_train, y_test, rule, block_rows=block_rows, count_gemm=count_gemm)
    got = np.zeros_like(same)
    got[df["train_idx"], df["test_idx"]] = True
    assert np.array_equal(got, want) and len(df) == want.sum()
    key = df["train_idx"].to_numpy() * test_correct.shape[1] + df["test_idx"].to_numpy()
    assert len(np.unique(key)) == len(key)  # no pair twice
    ref, ref_se = infl[df["train_idx"], df["test_idx"]], se[df["train_idx"], df["test_idx"]]
    np.testing.assert_allclose(df["infl"], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(df["infl_se"], ref_se, rtol=0, atol=1e-12)
    assert (df["train_label"] == y_train[df["train_idx"]]).all() and (df["test_label"] == y_test[df["test_idx"]]).all()


def test_float64_path_for_many_models(monkeypatch):
    import memadv.estimate.influence as agg
    monkeypatch.setattr(agg, "F32_MAX_MODELS", 10)
    masks, test_correct, y_train, y_test = case(3)
    infl, _ = dense(masks, test_correct)
    df = influence(masks, test_correct, y_train, y_test, KeepRule("threshold", 0.05, 0.05), count_gemm="blas")
    want = np.abs(np.nan_to_num(infl)) >= 0.05
    assert len(df) == want.sum()
    np.testing.assert_allclose(df["infl"], infl[df["train_idx"], df["test_idx"]], atol=1e-12)


def test_keep_rule_choices():
    y_tr, y_te = np.array([0, 0, 1]), np.array([0, 1, 1, 2])
    assert same_class_pairs(y_tr, y_te) == 2 * 1 + 1 * 2
    assert keep_rule("same-class", y_tr, y_te, cross_class_threshold=0.15) == KeepRule("same-class", 0.0, 0.15)
    assert keep_rule("threshold", y_tr, y_te, keep_threshold=0.05) == KeepRule("threshold", 0.05, 0.05)
    assert keep_rule("all", y_tr, y_te) == KeepRule("all", 0.0, 0.0)
    assert keep_rule("auto", y_tr, y_te).choice == "same-class"
    import memadv.estimate.influence as agg
    big = np.zeros(5000, np.int64)
    assert agg.same_class_pairs(big, big[:4000]) > agg.AUTO_MAX_SAME_CLASS_PAIRS
    assert keep_rule("auto", big, big[:4000]) == KeepRule("threshold", agg.DEFAULT_KEEP_THRESHOLD,
                                                          agg.DEFAULT_KEEP_THRESHOLD)
    with pytest.raises(UnknownChoiceError, match="same-class"):
        keep_rule("some", y_tr, y_te)
    with pytest.raises(ConfigError, match="keep-threshold"):
        keep_rule("threshold", y_tr, y_te, keep_threshold=1.5)


def scores_for(masks, test_correct, train_correct, y_train, y_test, rule):
    meta = {"n_models": masks.shape[0], "source": "memadv", "se_known": True, "complete": True, **rule.meta()}
    return Scores(mem=memorization(masks, train_correct, y_train),
                  infl=influence(masks, test_correct, y_train, y_test, rule),
                  test_acc=equations.test_accuracy(test_correct, y_test), meta=meta)


def splits_case(seed):
    masks, test_correct, y_train, y_test = case(seed, m=60, n_train=80, n_test=30, classes=3)
    rng = np.random.default_rng(seed + 100)
    # training examples learnt mostly when in their subset: many atypical ones
    train_correct = np.where(masks, rng.random(masks.shape) < 0.95, rng.random(masks.shape) < 0.6)
    return masks, test_correct, train_correct, y_train, y_test


DEFINITIONS = [SplitConfig(), SplitConfig(pairs="any-class"), SplitConfig(infl_typical=0.05, infl_atypical=0.1),
               SplitConfig(pairs="any-class", significance=1.0), SplitConfig(min_test_acc=0.0)]


@pytest.mark.parametrize("cfg", DEFINITIONS, ids=lambda c: f"{c.pairs}-{c.infl_typical}-{c.significance}")
@pytest.mark.parametrize("seed", [0, 1])
def test_splits_from_each_rule_equal_splits_from_all_pairs(cfg, seed):
    masks, test_correct, train_correct, y_train, y_test = splits_case(seed)
    ref = compute_splits(scores_for(masks, test_correct, train_correct, y_train, y_test, KeepRule("all", 0.0, 0.0)),
                         cfg)
    assert ref.sets["train/atypical"].size > 0
    answered = 0
    for rule in RULES:
        scores = scores_for(masks, test_correct, train_correct, y_train, y_test, rule)
        need = cfg.infl_typical
        can = (rule.same_min is not None and rule.same_min <= need
               and (cfg.pairs == "same-class" or (rule.cross_min is not None and rule.cross_min <= need)))
        if not can:
            with pytest.raises(SchemaError, match="cannot answer"):
                compute_splits(scores, cfg)
            continue
        answered += 1
        got = compute_splits(scores, cfg)
        for key in ref.sets:
            assert np.array_equal(got.sets[key], ref.sets[key]), (rule, key)
    assert answered >= 2


def test_legacy_and_imported_metadata_are_read():
    masks, test_correct, train_correct, y_train, y_test = splits_case(0)
    s = scores_for(masks, test_correct, train_correct, y_train, y_test, KeepRule("same-class", 0.0, 0.15))
    for k in ("infl_keep", "infl_min_abs_same", "infl_min_abs_cross"):
        del s.meta[k]
    s.meta["cross_class_threshold"] = 0.15          # files written before the keep rule existed
    compute_splits(s, SplitConfig())
    with pytest.raises(SchemaError, match="cannot answer"):
        compute_splits(s, SplitConfig(pairs="any-class"))
    s.meta.pop("cross_class_threshold")
    s.meta["source"] = "feldman-zhang"              # infl-matrix imports: same-class pairs only
    s.meta["se_known"] = False
    compute_splits(s, SplitConfig())
    with pytest.raises(SchemaError, match="cannot answer"):
        compute_splits(s, SplitConfig(pairs="any-class"))


def test_memory_bound_refuses_too_many_pairs():
    masks, test_correct, y_train, y_test = case(0)
    full = influence(masks, test_correct, y_train, y_test, KeepRule("all", 0.0, 0.0))
    assert len(full) == masks.shape[1] * test_correct.shape[1]
    with pytest.raises(ConfigError, match="--keep all keeps more than --max-pairs 100 .*raise --keep-threshold"):
        influence(masks, test_correct, y_train, y_test, KeepRule("all", 0.0, 0.0), max_pairs=100, block_rows=4)


def test_memory_bound_stops_the_threaded_same_class_pass_early(monkeypatch):
    # same-class-only blocks run on a thread per core: the bound must still stop the pass after a
    # few blocks (at most 2 x workers in flight), not after all of them
    monkeypatch.setattr(agg, "usable_cpus", lambda: 2)
    masks, test_correct, y_train, y_test = case(0, n_train=400, n_test=60, classes=20)
    calls = []
    block = agg._Influence.block
    monkeypatch.setattr(agg._Influence, "block", lambda self, s, e: calls.append(s) or block(self, s, e))
    with pytest.raises(ConfigError, match="--keep same-class keeps more than --max-pairs 10 "):
        influence(masks, test_correct, y_train, y_test, KeepRule("same-class", 0.0, None), max_pairs=10)
    assert 1 <= len(calls) <= 5
