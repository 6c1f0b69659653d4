"""Full-data ERM models for the typical-test rule of Section 3.2.

The paper (Sec. 3.2) removes from the typical test set every test example that "ERM trained on D"
classifies correctly less than 80% of the time. The subset-sampling estimate's models are trained
on 70% subsets, not on D, and are weaker on hard test examples (on digits the 70%-subset models
exclude 15 test examples where 30 full-data models exclude 9). So ``memadv estimate`` also trains
``--full-models N`` models on the whole training set, with the estimate's own recipe (net, epochs,
learning rate and schedule, batch size, augmentation), and stores how often they get each test
example right in ``scores/test_acc_full.parquet`` (columns ``idx, label, p_correct, n_models``,
those of ``test_acc.parquet``). ``memadv splits`` uses it for ``--min-test-acc`` (default
``--erm-models full``).

Model ids ``FULL_ID_BASE + j`` give full-data model j its own initialisation and batch-order seeds,
distinct from every subset model's (``memadv.estimate.seeds``). Work is cut into blocks of
``models_per_shard`` models; block b writes ``estimate/full/full-<b>-n<k>.parquet`` atomically, so an
interrupted estimate resumes at the next unwritten block, on any executor.

Cost: N / (0.7 M) of the subset models' training time (plus nothing at aggregation): on digits with
N = 30 and M = 2,000 about 2% of the estimate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from memadv.scores.schema import TEST_ACC_COLUMNS, dataset_meta
from memadv.files.tables import read_table, write_table
from memadv.layout import RunLayout

FULL_ID_BASE = 1_000_000_000  # far above any subset model id (a run has at most a few thousand)
BLOCK_COLUMNS = ["model_id", "test_acc", "test_correct"]


def blocks(n_models: int, per_block: int) -> list[tuple[int, int]]:
    """(start, stop) model indices of each block of at most ``per_block`` full-data models."""
    return [(s, min(s + per_block, n_models)) for s in range(0, n_models, per_block)]


def train_full_models(cfg: Any, dataset: Any, indices: range) -> np.ndarray:
    """(K, n_test) bool: test correctness of full-data models ``indices`` (0-based), each trained on
    every training example with the estimate's recipe :func:`memadv.estimate.train.train_models`."""
    from memadv.estimate.train import train_models
    ids = [FULL_ID_BASE + j for j in indices]
    masks = np.ones((len(ids), dataset.x_train.shape[0]), dtype=bool)
    # no proxies: these models hold out nothing, and only their test correctness is kept
    return train_models(dataclasses.replace(cfg, proxies=False), dataset, ids, masks=masks).test_correct


class FullModelsTask:
    """Block b of the full-data models: train them, write their block file (skipped when it exists)."""

    def __init__(self, run_dir: str | Path, n_models: int, threads: int | None = None,
                 runtime: dict[str, Any] | None = None):
        self.run_dir = str(run_dir)
        self.n_models = int(n_models)
        self.threads = threads
        self.runtime = dict(runtime or {})  # device, data_root, ... of the command line, never the spec's

    def __call__(self, block: int) -> str:
        from memadv.estimate.shards import config_from_spec, dataset_for, read_spec
        run_dir = Path(self.run_dir)
        spec = read_spec(run_dir)
        cfg = config_from_spec(spec, self.runtime)
        start, stop = blocks(self.n_models, cfg.models_per_shard)[block]
        out = RunLayout(run_dir).full_block(block, stop - start)
        if out.exists():
            return str(out)
        if self.threads:
            torch.set_num_threads(self.threads)
        dataset = dataset_for(cfg, spec, run_dir)
        correct = train_full_models(cfg, dataset, range(start, stop))
        rows = {"model_id": [FULL_ID_BASE + j for j in range(start, stop)], "test_acc": correct.mean(1),
                "test_correct": [np.packbits(r).tobytes() for r in correct]}
        write_table(out, pd.DataFrame(rows)[BLOCK_COLUMNS],
                    {"block": block, "fingerprint_test": spec["fingerprint_test"], "n_test": spec["n_test"]})
        return str(out)


def run_full_models(run_dir: str | Path, n_models: int, executor: Any, *, progress: bool = True,
                    runtime: dict[str, Any] | None = None) -> Path | None:
    """Train the missing blocks on ``executor`` (a :class:`memadv.executors.ExecutorConfig`), where and
    how ``runtime`` (EstimateConfig.runtime() of the command line) says, and write
    ``scores/test_acc_full.parquet``; returns its path (None when ``n_models`` is 0)."""
    from memadv.estimate.shards import config_from_spec, dataset_for, read_spec
    from memadv.executors import resolve_executor, run_tasks, task_threads
    if n_models <= 0:
        return None
    run_dir = Path(run_dir)
    cfg = config_from_spec(read_spec(run_dir), runtime)
    layout = blocks(n_models, cfg.models_per_shard)
    todo = [b for b, (s, e) in enumerate(layout) if not RunLayout(run_dir).full_block(b, e - s).exists()]
    executor = resolve_executor(executor, len(todo), cpu_tasks=cfg.on_cpu)
    threads = task_threads(executor)
    run_tasks(FullModelsTask(run_dir, n_models, threads=threads, runtime=runtime), todo, executor, RunLayout(run_dir).full_jobs,
              desc="full-data models", progress=progress)
    correct = np.concatenate([read_block(RunLayout(run_dir).full_block(b, e - s), read_spec(run_dir)["n_test"])
                              for b, (s, e) in enumerate(layout)])
    dataset = dataset_for(cfg, run_dir=run_dir)
    meta = {**dataset_meta(dataset), "source": "memadv full-data ERM models", "n_full_models": int(correct.shape[0])}
    return write_full_test_acc(RunLayout(run_dir).test_acc_full, correct, dataset.y_test.numpy(), meta, test_ids=dataset.test_ids)


def read_block(path: Path, n_test: int) -> np.ndarray:
    df, _ = read_table(path, required=BLOCK_COLUMNS)
    return np.stack([np.unpackbits(np.frombuffer(b, np.uint8), count=n_test).astype(bool)
                     for b in df["test_correct"]])


def full_test_accuracy(test_correct: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    """One row per test example: ``idx, label, p_correct`` (share of the K models right), ``n_models``.

    ``test_correct``: (K, n_test) bool; ``y_test``: (n_test,) int labels."""
    from memadv.scores.equations import test_accuracy
    return test_accuracy(test_correct, y_test)[TEST_ACC_COLUMNS]


def write_full_test_acc(path: Path, test_correct: np.ndarray, y_test: np.ndarray,
                        meta: dict[str, Any], test_ids: np.ndarray | None = None) -> Path:
    """Write the full-data models' test accuracy to ``path`` (``RunLayout.test_acc_full``); ``test_ids`` (the original ids of a reduced copy's test
    examples, ``Dataset.test_ids``) turn positions into canonical ids, as in every score file."""
    df = full_test_accuracy(test_correct, y_test)
    if test_ids is not None:
        df["idx"] = np.asarray(test_ids)[df["idx"].to_numpy(np.int64)]
    write_table(path, df, meta)
    return path
