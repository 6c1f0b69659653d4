"""Eq. 2 from the shards: influence, with standard errors, for the pairs a keep rule stores (Eq. 1
and the test accuracy: :mod:`memadv.scores.equations`).

For M models with subset masks S (M x n_train), training correctness A (M x n_train) and test
correctness T (M x n_test):

    mem_i    = P(A_mi | i in S_m) - P(A_mi | i not in S_m)                      (paper Eq. 1)
    infl_ij  = P(T_mj | i in S_m) - P(T_mj | i not in S_m)                      (paper Eq. 2)

Both are differences of two binomial means; the standard error is
sqrt(p_in (1 - p_in) / n_in + p_out (1 - p_out) / n_out).

``infl`` needs, for every pair, c_ij = #models with i in and j correct, i.e. the GEMM S^T T. Which
pairs are computed and stored is a :class:`KeepRule` (``--keep``; docs/estimator.md, "Influence
storage"):

* same-class pairs only: one small GEMM per class (S restricted to class c's training columns
  times T restricted to class c's test columns, 0/1 in float32: exact counts), about
  1/num_classes of the all-pairs work, the classes spread over the cores;
* otherwise all pairs, block by block of training examples (at most ``BLOCK_BYTES`` of float32 per
  block). One GEMM per block gives the counts, centred as D_ij = c_ij - n_in_i tot_j / M, and
  infl_ij = M D_ij / (n_in_i n_out_i), so |infl| >= k is a per-row threshold on |D|: only the
  pairs above it (minus a rounding margin) are recomputed exactly in float64 and stored. The
  n_train x n_test matrix is never held whole. The GEMM is the exact int8 one of
  :mod:`memadv.estimate.mask_counts` where it runs (about 1.7x a float32 SGEMM on x86 AVX2), else
  a float32 GEMM on the centred masks (float64 above ``F32_MAX_MODELS`` models).

Counts are exact: c_ij = round(D_ij + n_in_i tot_j / M), because the float32 error of D is far below
1/2, so every stored value equals a dense float64 evaluation of the same formula.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
from typing import Any, Iterator

import dask
import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from memadv.cpus import usable_cpus
from memadv.scores.schema import KEEP_CHOICES
from memadv.estimate.mask_counts import Int8Counts, int8_counts_available
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.paper_thresholds import INFL_TYPICAL
from memadv.scores.equations import difference_of_means


# Hyper-parameters of the influence storage (docs/estimator.md, "Influence storage").
# The lowest influence threshold any split definition uses by default (paper Sec. 3.2, infl > 0.02):
# `--keep threshold` keeps pairs with |infl| >= this, so every default definition is answered.
DEFAULT_KEEP_THRESHOLD = INFL_TYPICAL
# `--keep auto` keeps every same-class pair while there are at most this many (48 bytes a row, about
# 80 at the aggregation peak: 1.3 GiB; CIFAR-100 has 5M), and switches to `threshold` above it
# (Fashion-MNIST and CIFAR-10 have 60M same-class pairs: 4.7 GiB measured).
AUTO_MAX_SAME_CLASS_PAIRS = 1 << 24
# The memory bound: aggregation refuses to keep more pairs than this (48 bytes a row in the table, about
# 80 at the peak: 4.7 GiB measured for 60M), with a one-line error, instead of running out of memory;
# Fashion-MNIST's 60M same-class pairs fit.
MAX_KEPT_PAIRS = 1 << 26
# One block of the all-pairs pass holds a (rows x n_test) float32 matrix of this many bytes.
BLOCK_BYTES = 64 << 20
# Float32 GEMMs on 0/1 and centred masks keep the count error far below 1/2 up to this many models
# (error ~ 2^-24 * M^1.5 in the worst case: 0.13 at M = 16384); above it the GEMM runs in float64.
F32_MAX_MODELS = 16384
# GEMMs below this many multiply-adds run on one BLAS thread (measured: a 100 x 1000 x 40 product
# took 0.6 ms on one thread and 9-24 ms on two on a busy 2-core machine).
SMALL_GEMM = 1 << 27
# Margin (in count units) by which the float32 pre-selection is widened before the exact test.
SELECT_MARGIN = 0.5
# How the all-pairs counts S^T T are computed: "int8" (exact oneDNN int8 GEMM, memadv.estimate.mask_counts),
# "blas" (float32 GEMM on centred masks, float64 above F32_MAX_MODELS), "auto" (int8 where it runs).
COUNT_GEMMS = ("auto", "int8", "blas")

_LOCAL_SCHEDULERS = (None, "sync", "synchronous", "single-threaded", "threads", "threading")



@dataclasses.dataclass(frozen=True)
class KeepRule:
    """Which (train, test) pairs ``infl.parquet`` holds.

    ``same_min`` / ``cross_min``: same-class / cross-class pairs are kept where |infl| >= this
    (0: every pair, including undefined NaN estimates; None: no pair of that kind). ``choice``
    is the user's ``--keep`` as resolved (``auto`` becomes what it chose).
    """
    choice: str
    same_min: float | None
    cross_min: float | None

    def meta(self) -> dict[str, Any]:
        """The metadata keys ``splits`` reads to decide which definitions the file can answer."""
        return {"infl_keep": self.choice, "infl_min_abs_same": self.same_min, "infl_min_abs_cross": self.cross_min}



def same_class_pairs(y_train: np.ndarray, y_test: np.ndarray) -> int:
    """Number of (train, test) pairs that share a class."""
    classes = np.union1d(y_train, y_test)
    return int(sum(int((y_train == c).sum()) * int((y_test == c).sum()) for c in classes))



def check_keep(keep: str, keep_threshold: float, cross_class_threshold: float | None) -> None:
    """The one check of the keep options (``aggregate``'s config and :func:`keep_rule`): UnknownChoiceError
    for another ``keep``, ConfigError for a threshold outside [0, 1]."""
    if keep not in KEEP_CHOICES:
        raise UnknownChoiceError("keep", keep, KEEP_CHOICES)
    for name, v in (("keep-threshold", keep_threshold), ("cross-class-threshold", cross_class_threshold)):
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0):
            raise ConfigError(f"--{name} must be a number in [0, 1], got {v!r}")


def keep_rule(keep: str, y_train: np.ndarray, y_test: np.ndarray, *, keep_threshold: float = DEFAULT_KEEP_THRESHOLD,
              cross_class_threshold: float | None = None) -> KeepRule:
    """Resolve ``--keep`` into a :class:`KeepRule`.

    * ``same-class``: every same-class pair (as Feldman & Zhang's released files), plus cross-class
      pairs with |infl| >= ``cross_class_threshold`` (None: none);
    * ``threshold``: pairs of any class with |infl| >= ``keep_threshold``;
    * ``all``: every pair (n_train x n_test rows: small data sets only);
    * ``auto``: ``same-class`` while the data set has at most ``AUTO_MAX_SAME_CLASS_PAIRS`` of them,
      else ``threshold``.

    Raises UnknownChoiceError for another ``keep`` and ConfigError for a threshold outside [0, 1].
    """
    check_keep(keep, keep_threshold, cross_class_threshold)
    if keep == "auto":
        keep = "same-class" if same_class_pairs(y_train, y_test) <= AUTO_MAX_SAME_CLASS_PAIRS else "threshold"
    if keep == "same-class":
        return KeepRule("same-class", 0.0, None if cross_class_threshold is None else float(cross_class_threshold))
    if keep == "threshold":
        return KeepRule("threshold", float(keep_threshold), float(keep_threshold))
    return KeepRule("all", 0.0, 0.0)



def _sorted_columns_and_counts(masks: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(masks[:, order], column sums of that), in model-row bands on every core (numpy's take and
    reduce release the GIL; measured at 4,000 x 50,000: 0.33 s on 2 threads against 0.58 s on one)."""
    out = np.empty((masks.shape[0], order.size), bool)
    bands = np.array_split(np.arange(masks.shape[0]), max(1, min(usable_cpus(), masks.shape[0])))

    def band(rows: np.ndarray) -> np.ndarray:
        r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        np.take(masks[r0:r1], order, axis=1, out=out[r0:r1])
        return np.add.reduce(out[r0:r1].view(np.uint8), axis=0, dtype=np.int32)  # 2x int64's speed; M < 2^31

    with concurrent.futures.ThreadPoolExecutor(len(bands)) as pool:
        counts = sum(pool.map(band, bands), np.zeros(order.size, np.int64))
    return out, counts



class _Influence:
    """Shared state of one influence evaluation; :meth:`block` does training rows [s, e) of the
    class-sorted order, so same-class (train, test) pairs of a block are contiguous sub-blocks."""

    def __init__(self, masks: np.ndarray, test_correct: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
                 rule: KeepRule, count_gemm: str = "auto"):
        if count_gemm not in COUNT_GEMMS:
            raise UnknownChoiceError("count_gemm", count_gemm, COUNT_GEMMS)
        self.m = masks.shape[0]
        self.rule = rule
        self.dtype = np.float32 if self.m <= F32_MAX_MODELS else np.float64
        # The all-pairs counts by the exact int8 GEMM where it runs (about 2x a float32 SGEMM here);
        # float32 output holds counts exactly up to 2^24 models.
        # (Same-class-only products are per class and small: BLAS, where packing would cost more.)
        self.int8 = rule.cross_min is not None and (
            count_gemm == "int8" or (count_gemm == "auto" and self.m < 1 << 24 and int8_counts_available()))
        self._counts: Int8Counts | None = None   # packed per process (not picklable)
        self.tr_order = np.argsort(y_train, kind="stable")
        self.te_order = np.argsort(y_test, kind="stable")
        self.y_tr = np.asarray(y_train)[self.tr_order]
        self.y_te = np.asarray(y_test)[self.te_order]
        masks = np.asarray(masks, dtype=bool)
        # One class-sorted copy of the masks (M x n_train bytes), gathered with np.take (7x faster than
        # fancy indexing): gathering each block's columns from the unsorted masks instead re-reads the
        # whole matrix per block (measured: 131 ms per CIFAR-100 class, 13 s of the same-class pass).
        self.masks, n_in = _sorted_columns_and_counts(masks, self.tr_order)
        self.t_bool = np.take(test_correct, self.te_order, axis=1)   # M x n_test, columns by class
        # float copy for the all-pairs BLAS product only (same-class-only blocks convert their columns)
        self.t = None if self.int8 or rule.cross_min is None else self.t_bool.astype(self.dtype)
        self.tot = test_correct.sum(0)[self.te_order].astype(np.float64)  # exact: models with j correct
        self.n_in = n_in.astype(np.float64)
        self.n_out = self.m - self.n_in
        classes = np.union1d(self.y_tr, self.y_te)
        self.te_span = {c: (int(np.searchsorted(self.y_te, c, "left")), int(np.searchsorted(self.y_te, c, "right")))
                        for c in classes}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_counts": None}

    def _centred_counts(self, s: int, e: int, a: np.ndarray | None) -> np.ndarray:
        """D = c - n_in tot / M for training rows [s, e) and every test example, (e - s) x n_test."""
        if a is not None:
            return a.T @ self.t
        if self._counts is None:
            self._counts = Int8Counts(self.t_bool)
        c = torch.from_numpy(self._counts(self.masks[:, s:e]))
        c.addr_(torch.from_numpy((self.n_in[s:e] / self.m).astype(np.float32)),
                torch.from_numpy(self.tot.astype(np.float32)), alpha=-1)   # one pass: c -= outer(n_in / M, tot)
        return c.numpy()

    def _from_counts(self, c: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """infl, se (flattened, row-major) of training rows [r0, r1) x test columns [c0, c1) (sorted
        positions) from their exact counts c, (r1 - r0) x (c1 - c0): broadcast, nothing gathered."""
        c = c.astype(np.float64)
        tot = self.tot[None, c0:c1]
        _, _, infl, se = difference_of_means(c, self.n_in[r0:r1, None], tot - c, self.n_out[r0:r1, None])
        return infl.ravel(), se.ravel()

    def _exact(self, d: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """infl, se of pairs (rows[k], cols[k]) (sorted positions) from their centred counts d."""
        n_in, tot = self.n_in[rows], self.tot[cols]
        c = np.rint(d.astype(np.float64) + n_in * tot / self.m)
        _, _, infl, se = difference_of_means(c, n_in, tot - c, self.n_out[rows])
        return infl, se

    def block(self, s: int, e: int) -> list[np.ndarray]:
        """(train positions, test positions, infl, se) kept among training rows [s, e) (sorted order)."""
        rule = self.rule
        n_in, n_out = self.n_in[s:e], self.n_out[s:e]
        # S - n_in / M, for the all-pairs BLAS product (the int8 GEMM and the same-class-only products
        # take S itself: no threshold is screened there, and 0/1 products are exact counts)
        a = (None if self.int8 or rule.cross_min is None else
             np.subtract(self.masks[:, s:e], (n_in / self.m).astype(self.dtype), dtype=self.dtype))
        y_b = self.y_tr[s:e]
        bounds = np.flatnonzero(np.diff(y_b)) + 1
        spans = [(int(r0), int(r1), *self.te_span.get(y_b[r0], (0, 0)))
                 for r0, r1 in zip(np.r_[0, bounds], np.r_[bounds, len(y_b)])]
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        split = rule.same_min != rule.cross_min   # same-class and cross-class pairs kept by different rules
        d = None if rule.cross_min is None else self._centred_counts(s, e, a)   # (e - s) x n_test
        if split and rule.same_min is not None:
            for r0, r1, c0, c1 in spans:                                  # same-class sub-blocks, exactly
                if c1 == c0:
                    continue
                rr = np.repeat(np.arange(s + r0, s + r1, dtype=np.int32), c1 - c0)   # int32: 8 bytes a pair less
                cc = np.tile(np.arange(c0, c1, dtype=np.int32), r1 - r0)
                if d is None:
                    counts = self.masks[:, s + r0:s + r1].T.astype(self.dtype) @ self.t_bool[:, c0:c1].astype(self.dtype)
                    infl, se = self._from_counts(counts, s + r0, s + r1, c0, c1)
                else:
                    infl, se = self._exact(d[r0:r1, c0:c1].ravel(), rr, cc)
                keep = slice(None) if rule.same_min == 0 else np.abs(infl) >= rule.same_min
                out.append((rr[keep], cc[keep], infl[keep], se[keep]))
        if d is None:
            return _cat(out)
        if split:
            for r0, r1, c0, c1 in spans:
                d[r0:r1, c0:c1] = 0.0                                     # done above (and excluded below)
        k = rule.cross_min
        if k == 0:
            r, c = np.nonzero(np.ones(d.shape, bool))
        else:
            # |infl| >= k  <=>  |D| >= k n_in n_out / M; undefined rows (n_in or n_out = 0) never pass.
            # Rows are screened by their extremes first (two cheap reductions): with any real threshold
            # few rows hold a candidate, and only those are compared element by element.
            thr = np.where((n_in > 0) & (n_out > 0), k * n_in * n_out / self.m - SELECT_MARGIN, np.inf).astype(d.dtype)
            td = torch.from_numpy(d)
            lo, hi = td.amin(1).numpy(), td.amax(1).numpy()   # threaded: 2x numpy's min/max (measured)
            rows = np.flatnonzero((hi >= thr) | (-lo >= thr))
            sub = np.abs(d[rows])
            r, c = np.nonzero(np.greater_equal(sub, thr[rows, None], out=np.empty(sub.shape, bool)))
            r = rows[r]
        if split:
            other = self.y_tr[r + s] != self.y_te[c]
            r, c = r[other], c[other]
        if r.size:
            infl, se = self._exact(d[r, c], r + s, c)
            keep = slice(None) if k == 0 else np.abs(infl) >= k
            out.append(((r + s)[keep], c[keep], infl[keep], se[keep]))
        return _cat(out)



def _cat(parts: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    if not parts:
        return [np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0), np.zeros(0)]
    return [np.concatenate([p[i] for p in parts]) for i in range(4)]



def _check_kept(kept: int, max_pairs: int, rule: KeepRule, done: float) -> None:
    if kept > max_pairs:
        raise ConfigError(f"--keep {rule.choice} keeps more than --max-pairs {max_pairs:,} (influence) pairs "
                          f"({kept:,} after {done:.0%} of the training set, 48 bytes each); raise --keep-threshold, "
                          f"use --keep same-class --cross-class-threshold none, or raise --max-pairs if memory allows")



def _run_block(plan: _Influence, s: int, e: int) -> list[np.ndarray]:
    return plan.block(s, e)



def _in_threads(plan: _Influence, ranges: list[tuple[int, int]], workers: int) -> Iterator[list[np.ndarray]]:
    """plan.block of each range, in order, with up to 2 x ``workers`` blocks in flight (bounded memory;
    when the caller stops early, at most those finish)."""
    if workers <= 1:
        yield from (plan.block(s, e) for s, e in ranges)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        todo = iter(ranges)
        pending = collections.deque(pool.submit(plan.block, s, e) for s, e in itertools.islice(todo, 2 * workers))
        while pending:
            part = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(plan.block, *nxt))
            yield part



def influence(masks: np.ndarray, test_correct: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
              rule: KeepRule, *, block_rows: int | None = None, scheduler: Any = None,
              max_pairs: int = MAX_KEPT_PAIRS, count_gemm: str = "auto") -> pd.DataFrame:
    """Eq. 2 for the pairs ``rule`` keeps, one row per pair, grouped by class (rows follow the training
    examples sorted by class, then the test examples sorted by class; no pair twice).

    masks (M x n_train bool), test_correct (M x n_test bool), y_train (n_train,), y_test (n_test,).
    Columns ``train_idx, test_idx, train_label, test_label, infl, infl_se`` (infl and its standard
    error are NaN where i is in every subset or in none). Blocks run in this process (BLAS threads)
    unless ``scheduler`` or the active dask configuration is a dask.distributed cluster, which then
    gets one task per block. ``count_gemm`` (one of ``COUNT_GEMMS``) picks how the all-pairs counts
    are multiplied; every choice gives the same table. Raises ConfigError as soon as more than
    ``max_pairs`` pairs are kept, UnknownChoiceError for another ``count_gemm``.
    """
    n_train, n_test = masks.shape[1], test_correct.shape[1]
    plan = _Influence(masks, test_correct, y_train, y_test, rule, count_gemm)
    if block_rows is None:
        block_rows = max(1, BLOCK_BYTES // (4 * max(n_test, 1)))
    starts = range(0, n_train, block_rows)
    if rule.cross_min is None:  # same-class only: a block is one class (its rows cut to block_rows)
        cuts = sorted({0, n_train, *np.flatnonzero(np.diff(plan.y_tr)) + 1, *starts})
        ranges = list(zip(cuts[:-1], cuts[1:]))
    else:
        ranges = [(s, min(s + block_rows, n_train)) for s in starts]
    distributed = (scheduler not in _LOCAL_SCHEDULERS
                   or (scheduler is None and dask.config.get("scheduler", None) == "dask.distributed"))
    if distributed:
        shared = dask.delayed(plan, pure=True)
        tasks = [dask.delayed(_run_block)(shared, s, e) for s, e in ranges]
        parts = list(dask.compute(*tasks, scheduler=scheduler) if scheduler is not None else dask.compute(*tasks))
    else:
        # Small products run on one BLAS thread, where thread hand-offs cost more than they save.
        largest = max((e - s) * plan.m * (n_test if rule.cross_min is not None else
                                          max(np.diff(list(plan.te_span.values()), axis=1).max(initial=0), 1))
                      for s, e in ranges) if ranges else 0
        parts, kept = [], 0
        # Same-class only: many small per-class blocks, mostly single-threaded numpy work building the
        # kept rows (which releases the GIL): one block per core at a time, each on one BLAS thread
        # (measured at CIFAR-100 size: see docs/benchmarks.md). All pairs: one block at a time, each
        # product on every core.
        workers = usable_cpus() if rule.cross_min is None else 1
        with threadpool_limits(1, user_api="blas") if largest < SMALL_GEMM or workers > 1 else contextlib.nullcontext():
            for (s, e), part in zip(ranges, _in_threads(plan, ranges, workers)):
                parts.append(part)
                kept += len(part[0])
                _check_kept(kept, max_pairs, rule, e / n_train)
    _check_kept(sum(len(p[0]) for p in parts), max_pairs, rule, 1.0)
    # Column by column, freeing each column's block pieces as soon as it is joined: the kept pairs are
    # the only part of aggregation that grows with n_train x n_test (48 bytes a row in the table).
    cols: list[np.ndarray] = []
    for k, dtype in enumerate((np.int64, np.int64, np.float64, np.float64)):
        pieces = [p[k] for p in parts]
        cols.append(np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype))
        for p in parts:
            p[k] = None
    tr = plan.tr_order[cols[0]]
    te = plan.te_order[cols[1]]
    del cols[:2]
    return pd.DataFrame({"train_idx": tr, "test_idx": te,
                         "train_label": np.asarray(y_train)[tr].astype(np.int64, copy=False),
                         "test_label": np.asarray(y_test)[te].astype(np.int64, copy=False),
                         "infl": cols[0], "infl_se": cols[1]}, copy=False)
