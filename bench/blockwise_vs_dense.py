"""Blockwise (dask) vs dense influence aggregation, measured side by side.

Builds random subset masks and test correctness for M models, then computes the influence table
(all same-class pairs + cross-class pairs with |infl| >= 0.15) twice: blockwise as memadv does
(``memadv.estimate.aggregate.influence``) and densely (the whole n_train x n_test matrices at once).
Prints time and peak traced memory of each and checks they agree. The last line is the headline.

    python bench/blockwise_vs_dense.py [--models 2000] [--train 20000] [--test 4000] [--classes 100]
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc

import numpy as np
import pandas as pd

from memadv.estimate.aggregate import difference_of_means, influence


def dense(masks, test_correct, y_train, y_test, threshold):
    m = masks.shape[0]
    c_in = masks.T.astype(np.float64) @ test_correct.astype(np.float64)
    n_in = masks.sum(0).astype(np.float64)[:, None]
    _, _, infl, se = difference_of_means(c_in, n_in, test_correct.sum(0)[None, :] - c_in, m - n_in)
    same = y_train[:, None] == y_test[None, :]
    i, j = np.nonzero(same | (np.abs(infl) >= threshold))
    return pd.DataFrame({"train_idx": i, "test_idx": j, "infl": infl[i, j], "infl_se": se[i, j]})


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=4000)
    ap.add_argument("--classes", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    masks = rng.random((args.models, args.train)) < 0.7
    test_correct = rng.random((args.models, args.test)) < 0.6
    y_train = rng.integers(0, args.classes, args.train)
    y_test = rng.integers(0, args.classes, args.test)
    print(f"machine: {platform.processor() or platform.machine()}; {args.models} models, {args.train} train x "
          f"{args.test} test examples, {args.classes} classes")

    blk, t_blk, mem_blk = measure(lambda: influence(masks, test_correct, y_train, y_test, 0.15, scheduler="threads"))
    den, t_den, mem_den = measure(lambda: dense(masks, test_correct, y_train, y_test, 0.15))
    assert len(blk) == len(den)
    diff = np.max(np.abs(blk["infl"].to_numpy() - den["infl"].to_numpy()))
    print(f"blockwise: {t_blk:7.2f} s, peak {mem_blk:8.1f} MiB, {len(blk)} pairs")
    print(f"dense:     {t_den:7.2f} s, peak {mem_den:8.1f} MiB, max |difference| {diff:.2e}")
    print(f"blockwise aggregation: {t_den / t_blk:.2f}x the speed and {mem_blk / mem_den:.2f}x the peak memory of dense "
          f"({args.train}x{args.test} pairs, {args.models} models)")


if __name__ == "__main__":
    main()
