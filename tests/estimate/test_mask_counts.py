"""The int8 count GEMM equals numpy exactly, and aggregation uses it where it runs."""

from __future__ import annotations

import pickle
import platform

import numpy as np
import pytest

from memadv.errors import UnknownChoiceError
from memadv.estimate import influence as agg
from memadv.estimate.mask_counts import Int8Counts, int8_counts_available


def test_available_on_x86_linux():
    # the fast path must be the one the tests exercise on this project's machines (x86-64 Linux, CI too)
    if platform.machine() != "x86_64":
        pytest.skip("oneDNN's int8 GEMM is checked on x86-64")
    assert int8_counts_available()


@pytest.mark.parametrize("m,rows,n", [(1, 1, 1), (3, 0, 5), (300, 1, 7), (513, 29, 33), (2000, 64, 300)])
def test_counts_equal_numpy(m, rows, n):
    if not int8_counts_available():
        pytest.skip("no int8 GEMM here")
    rng = np.random.default_rng(m + rows + n)
    a_t, b = rng.random((m, rows)) < 0.6, rng.random((m, n)) < 0.4
    got = Int8Counts(b)(a_t)
    assert got.shape == (rows, n) and got.dtype == np.float32
    assert np.array_equal(got, a_t.T.astype(np.int64) @ b.astype(np.int64))


def test_counts_at_the_extremes():
    # every model in and correct: counts equal M (5000 > 255: no uint8 or int16 overflow on the way)
    if not int8_counts_available():
        pytest.skip("no int8 GEMM here")
    ones = np.ones((5000, 3), bool)
    assert (Int8Counts(ones)(ones) == 5000).all()
    assert (Int8Counts(ones)(np.zeros((5000, 2), bool)) == 0).all()
    with pytest.raises(TypeError, match="each process"):
        pickle.dumps(Int8Counts(ones))


def test_plan_pickles_without_its_packed_counts():
    # dask.distributed ships the plan to workers: the packed GEMM operand stays behind, rebuilt there
    rng = np.random.default_rng(0)
    masks, tc = rng.random((50, 40)) < 0.7, rng.random((50, 30)) < 0.5
    y_tr, y_te = rng.integers(0, 3, 40), rng.integers(0, 3, 30)
    plan = agg._Influence(masks, tc, y_tr, y_te, agg.KeepRule("all", 0.0, 0.0))
    first = plan.block(0, 40)
    copy = pickle.loads(pickle.dumps(plan))
    again = copy.block(0, 40)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)


def test_unknown_count_gemm_is_refused():
    with pytest.raises(UnknownChoiceError, match="blas"):
        agg.influence(np.ones((2, 3), bool), np.ones((2, 4), bool), np.zeros(3, int), np.zeros(4, int),
                      agg.KeepRule("all", 0.0, 0.0), count_gemm="int4")
