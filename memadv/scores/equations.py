"""Eq. 1 of the paper and the test accuracy, from the correctness of M subset models, with standard
errors. Influence (Eq. 2) is the same difference of means for every (train, test) pair; its
blockwise engine is :mod:`memadv.estimate.influence`.

    mem_i = P(A_mi | i in S_m) - P(A_mi | i not in S_m)                      (paper Eq. 1)

A difference of two binomial means; the standard error is
sqrt(p_in (1 - p_in) / n_in + p_out (1 - p_out) / n_out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def difference_of_means(c_in: np.ndarray, n_in: np.ndarray, c_out: np.ndarray, n_out: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p_in, p_out, p_in - p_out, standard error); NaN exactly where a group is empty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_in = np.where(n_in > 0, c_in / np.maximum(n_in, 1), np.nan)
        p_out = np.where(n_out > 0, c_out / np.maximum(n_out, 1), np.nan)
        se = np.sqrt(p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out)
    return p_in, p_out, p_in - p_out, se



def memorization(masks: np.ndarray, train_correct: np.ndarray, y_train: np.ndarray) -> pd.DataFrame:
    """Eq. 1 per training example: masks, train_correct (M x n_train bool) -> one row per example."""
    m = masks.shape[0]
    n_in = masks.sum(0).astype(np.int64)
    c_in = (masks & train_correct).sum(0)
    c_out = train_correct.sum(0) - c_in
    p_in, p_out, mem, se = difference_of_means(c_in, n_in, c_out, m - n_in)
    return pd.DataFrame({"idx": np.arange(masks.shape[1], dtype=np.int64), "label": y_train.astype(np.int64),
                         "mem": mem, "mem_se": se, "p_in": p_in, "p_out": p_out,
                         "n_in": n_in, "n_out": (m - n_in).astype(np.int64)})



def test_accuracy(test_correct: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    """P(correct) per test example over all M models: test_correct (M x n_test) -> n_test rows."""
    return pd.DataFrame({"idx": np.arange(test_correct.shape[1], dtype=np.int64), "label": y_test.astype(np.int64),
                         "p_correct": test_correct.mean(0), "n_models": np.full(test_correct.shape[1], test_correct.shape[0], np.int64)})
