"""Exact co-occurrence counts of 0/1 matrices, C = A B, by an int8 GEMM with int32 accumulation.

Influence (paper Eq. 2) needs, for every (train i, test j) pair, c_ij = #models with i in the
subset and j correct: the product of the transposed subset masks and the test correctness, both
0/1. Stored as uint8 / int8, oneDNN's u8 x s8 GEMM (the kernel behind PyTorch's x86 int8
quantized linear layers) sums them in int32 — exact for any number of models below 2^31 — and
converts to float32, exact up to 2^24 = 16.7M models. On this project's AVX2 CPU it runs the
4,000-model CIFAR-100-size product in about half the time of a float32 SGEMM (docs/benchmarks.md,
"Influence aggregation").

The op (``torch.ops.onednn.qlinear_pointwise``) is PyTorch-internal, so it is used only after a
self-check on a small random product: :func:`int8_counts_available` is False when the op is missing
(a build without oneDNN, a non-x86 machine) or disagrees with numpy, and callers then use BLAS.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

# The transposition of a block of masks runs in tiles of this many models: a whole (M x rows) bool
# block transposed in one numpy call crosses cache lines for every byte (measured: 1.6 s for the
# 4,000 x 50,000 CIFAR-100-size masks; 0.28 s in 256-model tiles).
TRANSPOSE_TILE = 256


class Int8Counts:
    """C = A B for 0/1 matrices, B fixed (packed once), A given block by block.

    ``b``: (M, n) bool or 0/1 integer array. Calling with ``a_t`` — the *transpose* of a block of
    A, (M, rows) bool — returns the (rows, n) float32 counts. Holds a packed int8 copy of B
    (n x M bytes, plus oneDNN's layout); not picklable by design: build one per process.
    """

    def __init__(self, b: np.ndarray):
        self.m, self.n = b.shape
        w = torch.from_numpy(np.ascontiguousarray(np.asarray(b, dtype=bool).T).view(np.int8))  # (n, M) int8
        self._packed = torch.ops.onednn.qlinear_prepack(w, None)
        self._w_scale = torch.ones(self.n)
        self._w_zero = torch.zeros(self.n, dtype=torch.int64)

    def __call__(self, a_t: np.ndarray) -> np.ndarray:
        if a_t.shape[0] != self.m:
            raise ValueError(f"a_t has {a_t.shape[0]} rows, B has {self.m}")
        rows = a_t.shape[1]
        if rows == 0 or self.n == 0 or self.m == 0:
            return np.zeros((rows, self.n), np.float32)
        x = np.empty((rows, self.m), np.uint8)
        for m0 in range(0, self.m, TRANSPOSE_TILE):
            x[:, m0:m0 + TRANSPOSE_TILE] = a_t[m0:m0 + TRANSPOSE_TILE].T
        out = torch.ops.onednn.qlinear_pointwise(torch.from_numpy(x), 1.0, 0, self._packed, self._w_scale,
                                                 self._w_zero, None, 1.0, 0, torch.float32, "none", [], "")
        return out.numpy()

    def __reduce__(self):
        raise TypeError("Int8Counts holds a packed oneDNN tensor; build one in each process")


@functools.cache
def int8_counts_available() -> bool:
    """Whether :class:`Int8Counts` exists here and equals numpy on a random product with odd sizes."""
    try:
        rng = np.random.default_rng(0)
        a_t, b = rng.random((300, 37)) < 0.7, rng.random((300, 19)) < 0.5
        got = Int8Counts(b)(a_t)
    except Exception:  # missing op, unsupported CPU: BLAS is the answer, not an error
        return False
    return bool(np.array_equal(got, a_t.T.astype(np.float64) @ b.astype(np.float64)))
