"""Epoch checkpoints of a shard in training, so that a requeued or re-run shard resumes where the
last attempt stopped, bit-identical to an uninterrupted shard.

Files, all under ``RUN/estimate/checkpoints/`` and all removed by :meth:`ShardCheckpoint.remove`
(called by the shard task once its shard file is written; nothing else removes them):

``shard-NNNNN.pt``
    tensors only (``torch.save`` of dicts, lists, numbers and tensors; read with
    ``torch.load(weights_only=True)``, never unpickled): the models' parameters and buffers, the
    optimizer state, every model's generator state and torch's global RNG state, and where training
    stands (see :func:`memadv.estimate.train.train_models`). Written atomically at each epoch boundary.
``shard-NNNNN.progress.json``
    ``{"done": d, "total": t}``: epochs finished (model-epochs for shards trained one by one), read
    by ``memadv status`` without opening the checkpoint.
``shard-NNNNN.attempt.json``
    the Slurm array task of the current attempt and the progress it started from. A requeued
    attempt of the same array task that finds the progress unchanged means the previous attempt ran
    its whole time limit without finishing one epoch: it fails with
    :class:`memadv.errors.TimeLimitTooShortError` (naming ``--timeout-min``) instead of requeueing forever.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch

from memadv.files.atomic import atomic_path, write_json_atomic
from memadv.files.weights_only import load_weights_only
from memadv.layout import RunLayout
from memadv.job_env import slurm_restart, slurm_task
from memadv.errors import SchemaError, TimeLimitTooShortError


def read_progress(run_dir: Path, shard: int) -> dict[str, int] | None:
    """``{"done", "total"}`` epochs of a shard in training, or None without a checkpoint."""
    path = RunLayout(run_dir).shard_checkpoint(shard, "progress.json")
    try:
        data = json.loads(path.read_text())
        return {"done": int(data["done"]), "total": int(data["total"])}
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class ShardCheckpoint:
    """The checkpoint of shard ``shard`` of ``run_dir`` (module docstring)."""

    def __init__(self, run_dir: str | Path, shard: int):
        lay = RunLayout(run_dir)
        self.run_dir = lay.root
        self.path = lay.shard_checkpoint(shard, "pt")
        self.progress_path = lay.shard_checkpoint(shard, "progress.json")
        self.attempt_path = lay.shard_checkpoint(shard, "attempt.json")
        self.shard = shard

    def load(self) -> dict[str, Any] | None:
        """The last saved state (tensors on the CPU), or None. Raises SchemaError if unreadable."""
        if not self.path.exists():
            return None
        try:
            return load_weights_only(self.path)
        except SchemaError as e:  # any unreadable file gets the same one-line error
            raise SchemaError(f"{self.path} is not a readable shard checkpoint ({e}); delete it "
                              "to retrain the shard from its first epoch") from None

    def save(self, state: dict[str, Any], done: int, total: int) -> None:
        """Write ``state`` (tensors only) and the progress ``done`` of ``total`` epochs, atomically."""
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        write_json_atomic(self.progress_path, {"done": int(done), "total": int(total)})

    def begin_attempt(self) -> None:
        """Record this attempt; refuse a requeued Slurm attempt whose predecessor saved no checkpoint."""
        done = (read_progress(self.run_dir, self.shard) or {"done": 0})["done"]
        me = slurm_task()
        try:
            previous = json.loads(self.attempt_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            previous = None
        # a requeued attempt of the same Slurm task has a higher SLURM_RESTART_COUNT; another process
        # of the same allocation (same job id, same count) that resumes a killed one is no time-out
        before = previous.get("slurm_restart") if isinstance(previous, dict) else None
        if me is not None and isinstance(previous, dict) and previous.get("slurm_job") == me \
                and (before if isinstance(before, int) else 0) < slurm_restart() and previous.get("done") == done:
            raise TimeLimitTooShortError(
                f"shard {self.shard}: the previous attempt of Slurm task {me} ended without finishing an epoch "
                f"(still {done} epochs done); one epoch takes longer than the time limit: raise --timeout-min "
                "or lower --models-per-shard")
        write_json_atomic(self.attempt_path, {"slurm_job": me, "slurm_restart": slurm_restart(), "done": done})

    def remove(self) -> None:
        """Remove this shard's checkpoint files (call once the shard file is written)."""
        for path in (self.path, self.progress_path, self.attempt_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only when empty: other shards' checkpoints stay


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global RNG state(s) as tensors (CPU, and the CUDA device's when training there)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
