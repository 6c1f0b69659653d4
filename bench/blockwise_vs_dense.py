"""Influence aggregation (memadv.estimate.influence.influence) against a dense two-GEMM evaluation,
measured side by side in one process.

Synthetic subset masks (70% in) and test correctness (per-test-example success rates uniform in
[0, 1]) for M models; labels uniform over the classes. Sides:

* dense: what a user would write with numpy: the two count matrices C_in = S^T T and
  C_out = (1 - S)^T T as float32 GEMMs (exact on 0/1 data up to 2^24), infl = C_in / n_in - C_out / n_out
  for every pair, then the pairs memadv's default layout keeps (all same-class pairs, cross-class
  pairs with |infl| >= 0.15) and their standard errors;
* memadv all pairs: the same layout (``--keep same-class``, cross-class threshold 0.15);
* memadv threshold: ``--keep threshold`` at 0.02 (what ``--keep auto`` picks for 10-class sets);
* memadv same-class only: ``--keep same-class --cross-class-threshold none`` (the layout of Feldman &
  Zhang's released files), per-class GEMMs.

"float32 GEMM floor" is the one float32 product S^T T that every all-pairs evaluation in float32 must
do; memadv multiplies the 0/1 matrices with an exact int8 GEMM instead where it runs (x86), timed
alone as "int8 GEMM alone". Time is wall-clock; memory is the process's peak resident set above its level before the side ran
(Linux VmHWM, reset through /proc/self/clear_refs), so BLAS and torch buffers count too. The inputs
(masks and correctness, bool) exist before any side runs and are not counted. The last line is the
headline.

    python bench/blockwise_vs_dense.py [--models 4000] [--train 50000] [--test 10000] [--classes 100] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from memadv.estimate.influence import BLOCK_BYTES, KeepRule, influence
from memadv.scores.equations import difference_of_means
from memadv.estimate.mask_counts import Int8Counts, int8_counts_available

CROSS = 0.15


def dense(masks: np.ndarray, test_correct: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    m = masks.shape[0]
    t = test_correct.astype(np.float32)
    c_in = masks.T.astype(np.float32) @ t
    c_out = (~masks).T.astype(np.float32) @ t
    del t
    n_in = masks.sum(0).astype(np.float32)[:, None]
    n_out = m - n_in
    infl = c_in / n_in
    infl -= c_out / n_out
    keep = np.abs(infl) >= CROSS
    keep |= y_train[:, None] == y_test[None, :]
    i, j = np.nonzero(keep)
    del keep, infl
    n_in, n_out = n_in[i, 0].astype(np.float64), n_out[i, 0].astype(np.float64)
    _, _, d, se = difference_of_means(c_in[i, j].astype(np.float64), n_in, c_out[i, j].astype(np.float64), n_out)
    return pd.DataFrame({"train_idx": i, "test_idx": j, "infl": d, "infl_se": se})


def gemm_limit(masks: np.ndarray, test_correct: np.ndarray) -> None:
    """The arithmetic every all-pairs evaluation must do: S^T T once, in float32, block by block."""
    t = test_correct.astype(np.float32)
    rows = max(1, BLOCK_BYTES // (4 * t.shape[1]))
    for s in range(0, masks.shape[1], rows):
        masks[:, s:s + rows].T.astype(np.float32) @ t


def int8_gemm(masks: np.ndarray, test_correct: np.ndarray) -> None:
    """The same S^T T by the exact int8 GEMM memadv uses (memadv.estimate.mask_counts), block by block."""
    counts = Int8Counts(test_correct)
    rows = max(1, BLOCK_BYTES // (4 * test_correct.shape[1]))
    for s in range(0, masks.shape[1], rows):
        counts(masks[:, s:s + rows])


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


REPEATS = 1  # set from --repeats


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak resident MiB above the level before the call): the least time and the
    largest peak of REPEATS calls (a side's first call may pay for page faults another side left)."""
    best, peak, out = float("inf"), 0.0, None
    for _ in range(REPEATS):
        out = None
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, (_status("VmHWM") - base) / 2**20)
    return out, best, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=4000)
    ap.add_argument("--train", type=int, default=50000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--no-dense", action="store_true", help="skip the dense side (ratios then are not printed)")
    ap.add_argument("--only-same-class", action="store_true", help="time the same-class-only side alone")
    ap.add_argument("--threshold-side", action="store_true",
                    help="also time --keep threshold at 0.02 (on these synthetic data about a quarter of all pairs "
                         "pass it: n_train x n_test / 4 rows of 48 bytes)")
    ap.add_argument("--repeats", type=int, default=1, help="calls per side, one after the other; the least "
                    "time and the largest peak memory count (every side alike, dense included)")
    args = ap.parse_args()
    global REPEATS
    REPEATS = max(1, args.repeats)
    rng = np.random.default_rng(0)
    masks = rng.random((args.models, args.train), dtype=np.float32) < 0.7
    test_correct = rng.random((args.models, args.test), dtype=np.float32) < rng.random(args.test, dtype=np.float32)
    y_train = rng.integers(0, args.classes, args.train)
    y_test = rng.integers(0, args.classes, args.test)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (absolute times are taken under that load; ratios are side by side)")
    print(f"{args.models} models, {args.train} train x {args.test} test examples, {args.classes} classes, "
          f"{REPEATS} call(s) per side (least time)")

    sides = {"all pairs": KeepRule("same-class", 0.0, CROSS), "same-class only": KeepRule("same-class", 0.0, None)}
    if args.threshold_side:
        sides["threshold 0.02"] = KeepRule("threshold", 0.02, 0.02)
    if args.only_same_class:
        sides = {"same-class only": sides["same-class only"]}
    res = {}
    for name, rule in sides.items():
        res[name] = measure(lambda r=rule: influence(masks, test_correct, y_train, y_test, r))
        df, sec, mib = res[name]
        print(f"memadv {name:16s} {sec:8.2f} s, peak {mib:8.1f} MiB, {len(df):>11,d} pairs kept", flush=True)
    if args.no_dense or args.only_same_class:
        return
    _, t_gemm, m_gemm = measure(lambda: gemm_limit(masks, test_correct))
    print(f"float32 GEMM floor (one float32 GEMM S^T T, blockwise, nothing else) {t_gemm:8.2f} s, peak {m_gemm:8.1f} MiB",
          flush=True)
    t_int8 = float("nan")
    if int8_counts_available():
        _, t_int8, m_int8 = measure(lambda: int8_gemm(masks, test_correct))
        print(f"int8 GEMM alone (the same S^T T, exact int32 sums, blockwise) {t_int8:8.2f} s, peak {m_int8:8.1f} MiB",
              flush=True)
    den, t_den, m_den = measure(lambda: dense(masks, test_correct, y_train, y_test))
    print(f"dense two-GEMM          {t_den:8.2f} s, peak {m_den:8.1f} MiB, {len(den):>11,d} pairs kept", flush=True)
    allp = res["all pairs"][0]
    n_test = args.test
    k_mem = allp["train_idx"].to_numpy() * n_test + allp["test_idx"].to_numpy()
    k_den = den["train_idx"].to_numpy() * n_test + den["test_idx"].to_numpy()
    only_mem, only_den = np.setdiff1d(k_mem, k_den).size, np.setdiff1d(k_den, k_mem).size
    o_mem, o_den = np.argsort(k_mem), np.argsort(k_den)
    common_m = np.isin(k_mem[o_mem], k_den, assume_unique=True)
    common_d = np.isin(k_den[o_den], k_mem, assume_unique=True)
    diff = float(np.nanmax(np.abs(allp["infl"].to_numpy()[o_mem][common_m] - den["infl"].to_numpy()[o_den][common_d]),
                           initial=0.0))
    print(f"all pairs vs dense: {only_mem} pairs kept only by memadv, {only_den} only by dense (float32 rounding "
          f"at the threshold in dense), max |infl difference| on common pairs {diff:.1e}")
    for name in sides:
        _, sec, mib = res[name]
        print(f"memadv {name}: {sec / t_den:.3f}x the dense time ({t_den / sec:.1f}x faster), "
              f"{mib / m_den:.3f}x its peak memory")
    print(f"float32 GEMM floor: {t_gemm / t_den:.3f}x the dense time; int8 GEMM alone {t_int8 / t_den:.3f}x; "
          f"memadv all pairs = {res['all pairs'][1] / t_gemm:.2f}x the float32 floor, "
          f"{res['all pairs'][1] / t_int8:.2f}x the int8 GEMM alone")
    a, s = res["all pairs"], res["same-class only"]
    print(f"HEADLINE {args.models}x{args.train}x{args.test}, {args.classes} classes: all pairs {a[1] / t_den:.2f}x "
          f"dense time at {a[2] / m_den:.2f}x its memory; same-class only {t_den / s[1]:.0f}x faster than dense")


if __name__ == "__main__":
    main()
