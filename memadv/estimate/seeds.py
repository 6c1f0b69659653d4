"""Every random choice of model m derives from (run seed, m, purpose) — so any model of a run can
be regenerated alone, on any machine, in any shard layout (MadryLab/datamodels' contract)."""

from __future__ import annotations

import numpy as np

PURPOSES = {"subset": 0, "init": 1, "order": 2}


def model_seed(run_seed: int, model_id: int, purpose: str) -> int:
    """A 63-bit seed for one purpose of one model."""
    ss = np.random.SeedSequence([int(run_seed), int(model_id), PURPOSES[purpose]])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def subset_mask(run_seed: int, model_id: int, n: int, ratio: float) -> np.ndarray:
    """Boolean mask of model m's training subset: exactly round(ratio * n) examples, uniformly."""
    rng = np.random.default_rng(model_seed(run_seed, model_id, "subset"))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(ratio * n))]] = True
    return mask
