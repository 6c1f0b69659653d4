"""Aggregation equals a direct dense evaluation of Eqs. 1-2."""

import numpy as np
import pytest

from memadv.estimate.influence import KeepRule, influence
from memadv.scores import equations as agg
from memadv.scores.equations import memorization


def dense_reference(masks, train_correct, test_correct):
    """Eqs. 1-2 straight from their definition, one conditional mean at a time."""
    m, n_train = masks.shape
    n_test = test_correct.shape[1]
    mem = np.full(n_train, np.nan)
    infl = np.full((n_train, n_test), np.nan)
    for i in range(n_train):
        inn, out = masks[:, i], ~masks[:, i]
        if inn.any() and out.any():
            mem[i] = train_correct[inn, i].mean() - train_correct[out, i].mean()
            infl[i] = test_correct[inn].mean(0) - test_correct[out].mean(0)
    return mem, infl


@pytest.fixture
def random_run():
    rng = np.random.default_rng(7)
    m, n_train, n_test = 37, 23, 11
    masks = rng.random((m, n_train)) < 0.7
    masks[:, 0] = True    # example 0 is in every subset: never out
    masks[:, 1] = False   # example 1 is in no subset: never in
    train_correct = rng.random((m, n_train)) < 0.8
    test_correct = rng.random((m, n_test)) < 0.6
    y_train = rng.integers(0, 3, n_train)
    y_test = rng.integers(0, 3, n_test)
    return masks, train_correct, test_correct, y_train, y_test


def test_memorization_matches_dense(random_run):
    masks, train_correct, test_correct, y_train, _ = random_run
    mem_ref, _ = dense_reference(masks, train_correct, test_correct)
    df = memorization(masks, train_correct, y_train)
    assert np.array_equal(np.isnan(df["mem"]), np.isnan(mem_ref))
    assert np.isnan(df["mem"][[0, 1]]).all() and np.isfinite(df["mem"][2:]).all()  # NaN only where undefined
    ok = ~np.isnan(mem_ref)
    assert np.max(np.abs(df["mem"][ok] - mem_ref[ok])) <= 1e-6
    assert (df["n_in"] + df["n_out"] == masks.shape[0]).all()
    # standard error of a difference of two binomial means
    p_in, p_out = df["p_in"][2], df["p_out"][2]
    n_in, n_out = df["n_in"][2], df["n_out"][2]
    assert df["mem_se"][2] == pytest.approx(np.sqrt(p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out))


@pytest.mark.parametrize("block_rows", [1, 4, 1000])
def test_influence_matches_dense_blockwise(random_run, block_rows):
    masks, train_correct, test_correct, y_train, y_test = random_run
    _, infl_ref = dense_reference(masks, train_correct, test_correct)
    threshold = 0.15
    df = influence(masks, test_correct, y_train, y_test, KeepRule("same-class", 0.0, threshold), block_rows=block_rows,
                   scheduler="sync")
    same = y_train[:, None] == y_test[None, :]
    expected_keep = same | (np.abs(np.nan_to_num(infl_ref, nan=0.0)) >= threshold) & ~np.isnan(infl_ref)
    got_keep = np.zeros_like(same)
    got_keep[df["train_idx"], df["test_idx"]] = True
    assert np.array_equal(got_keep, expected_keep)
    assert len(df) == expected_keep.sum()  # no pair twice
    ref = infl_ref[df["train_idx"], df["test_idx"]]
    assert np.array_equal(np.isnan(df["infl"]), np.isnan(ref))
    assert np.isnan(df["infl"]).sum() == same[[0, 1]].sum()  # only the never-in / never-out rows
    fin = ~np.isnan(ref)
    assert np.max(np.abs(df["infl"][fin] - ref[fin])) <= 1e-6
    assert (df["train_label"] == y_train[df["train_idx"]]).all() and (df["test_label"] == y_test[df["test_idx"]]).all()


def test_test_success_rate(random_run):
    _, _, test_correct, _, y_test = random_run
    df = agg.test_accuracy(test_correct, y_test)
    assert np.allclose(df["p_correct"], test_correct.mean(0))
    assert (df["n_models"] == test_correct.shape[0]).all()
