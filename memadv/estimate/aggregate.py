"""Eqs. 1-2 from the shards: memorization, influence and test accuracy, with standard errors.

For M models with subset masks S (M x n_train), training correctness A (M x n_train) and test
correctness T (M x n_test):

    mem_i    = P(A_mi | i in S_m) - P(A_mi | i not in S_m)
    infl_ij  = P(T_mj | i in S_m) - P(T_mj | i not in S_m)

Both are differences of two binomial means; the standard error is
sqrt(p_in (1 - p_in) / n_in + p_out (1 - p_out) / n_out). ``infl`` needs, for every pair, the
count of models with i in and j correct: the GEMM S^T T. It is computed block by block of training
examples (dask tasks), and the count with i out follows as C_out = C_total - C_in, so the
n_train x n_test matrix is never held whole; each block keeps only the pairs the schema stores
(same class, or cross-class with |infl| >= threshold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd

from memadv.data.dataset import Dataset
from memadv.data.scores import Scores, dataset_meta, write_scores
from memadv.estimate.shards import config_from_spec, dataset_for, read_shard, read_spec, shard_path
from memadv.errors import IncompleteRunError, SchemaError


def difference_of_means(c_in: np.ndarray, n_in: np.ndarray, c_out: np.ndarray, n_out: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p_in, p_out, p_in - p_out, standard error); NaN exactly where a group is empty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_in = np.where(n_in > 0, c_in / np.maximum(n_in, 1), np.nan)
        p_out = np.where(n_out > 0, c_out / np.maximum(n_out, 1), np.nan)
        se = np.sqrt(p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out)
    return p_in, p_out, p_in - p_out, se


def memorization(masks: np.ndarray, train_correct: np.ndarray, y_train: np.ndarray) -> pd.DataFrame:
    m = masks.shape[0]
    n_in = masks.sum(0).astype(np.int64)
    c_in = (masks & train_correct).sum(0)
    c_out = train_correct.sum(0) - c_in
    p_in, p_out, mem, se = difference_of_means(c_in, n_in, c_out, m - n_in)
    return pd.DataFrame({"idx": np.arange(masks.shape[1], dtype=np.int64), "label": y_train.astype(np.int64),
                         "mem": mem, "mem_se": se, "p_in": p_in, "p_out": p_out,
                         "n_in": n_in, "n_out": (m - n_in).astype(np.int64)})


def _influence_block(rows: np.ndarray, masks_b: np.ndarray, test_correct_f: np.ndarray, total_correct: np.ndarray,
                     y_train_b: np.ndarray, y_test: np.ndarray, threshold: float) -> pd.DataFrame:
    m = masks_b.shape[0]
    c_in = masks_b.T.astype(np.float32) @ test_correct_f          # (b, n_test): models with i in and j correct
    n_in = masks_b.sum(0).astype(np.float64)[:, None]
    _, _, infl, se = difference_of_means(c_in.astype(np.float64), n_in, total_correct[None, :] - c_in, m - n_in)
    same = y_train_b[:, None] == y_test[None, :]
    keep = same | (np.abs(infl) >= threshold)
    i, j = np.nonzero(keep)
    return pd.DataFrame({"train_idx": rows[i].astype(np.int64), "test_idx": j.astype(np.int64),
                         "train_label": y_train_b[i].astype(np.int64), "test_label": y_test[j].astype(np.int64),
                         "infl": infl[i, j], "infl_se": se[i, j]})


def influence(masks: np.ndarray, test_correct: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
              threshold: float, block_rows: int | None = None, scheduler: Any = None) -> pd.DataFrame:
    """All same-class pairs and cross-class pairs with |infl| >= threshold, computed blockwise."""
    n_train, n_test = masks.shape[1], test_correct.shape[1]
    if block_rows is None:  # about 64 MiB of float32 per (block x n_test) matrix
        block_rows = max(1, (1 << 24) // max(n_test, 1))
    t = test_correct.astype(np.float32)
    total = t.sum(0).astype(np.float64)
    tasks = [dask.delayed(_influence_block)(np.arange(s, min(s + block_rows, n_train)),
                                            masks[:, s:s + block_rows], t, total,
                                            y_train[s:s + block_rows], y_test, threshold)
             for s in range(0, n_train, block_rows)]
    blocks = dask.compute(*tasks, scheduler=scheduler) if scheduler is not None else dask.compute(*tasks)
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


def test_accuracy(test_correct: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"idx": np.arange(test_correct.shape[1], dtype=np.int64), "label": y_test.astype(np.int64),
                         "p_correct": test_correct.mean(0), "n_models": np.full(test_correct.shape[1], test_correct.shape[0], np.int64)})


def load_shards(run_dir: Path, allow_partial: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray], list[int]]:
    """Concatenate every finished shard (sorted by model id); refuse an unfinished run unless allowed."""
    spec = read_spec(run_dir)
    n_shards, n_train, n_test = spec["n_shards"], spec["n_train"], spec["n_test"]
    done = [s for s in range(n_shards) if shard_path(run_dir, s).exists()]
    missing = sorted(set(range(n_shards)) - set(done))
    if missing and not allow_partial:
        raise IncompleteRunError(f"{run_dir}: {len(missing)} of {n_shards} shards unfinished (e.g. {missing[:5]}); "
                                 f"finish them with `memadv estimate --out {run_dir}` or pass --allow-partial")
    if len(done) == 0:
        raise IncompleteRunError(f"{run_dir}: no finished shard to aggregate")
    parts = [read_shard(shard_path(run_dir, s), n_train, n_test) for s in done]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["model_id"], kind="stable")
    merged = {k: v[order] for k, v in merged.items()}
    if len(np.unique(merged["model_id"])) != len(merged["model_id"]):
        raise SchemaError(f"{run_dir}: shards contain duplicate model ids")
    return spec, merged, missing


def _to_canonical_ids(scores: Scores, dataset: Dataset) -> None:
    """Positions in a reduced copy (``--per-class``) -> original positions, in place: score files
    always speak of canonical ids. A no-op for a full data set."""
    for table, column, split in ((scores.mem, "idx", "train"), (scores.infl, "train_idx", "train"),
                                 (scores.infl, "test_idx", "test"), (scores.test_acc, "idx", "test")):
        ids = {"train": dataset.train_ids, "test": dataset.test_ids}[split]
        if ids is not None and column in table:
            table[column] = ids[table[column].to_numpy(np.int64)]


def aggregate(run_dir: str | Path, *, allow_partial: bool = False, scheduler: Any = None) -> Scores:
    """Rebuild ``scores/`` from the shards (any time, as often as wanted)."""
    run_dir = Path(run_dir)
    spec, sh, missing = load_shards(run_dir, allow_partial)
    cfg = config_from_spec(spec)
    dataset = dataset_for(cfg, spec)
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    meta = {**dataset_meta(dataset), "n_models": int(sh["mask"].shape[0]), "source": "memadv", "se_known": True,
            "complete": not missing, "missing_shards": len(missing), "spec": spec["config"],
            "cross_class_threshold": cfg.cross_class_threshold}
    scores = Scores(mem=memorization(sh["mask"], sh["train_correct"], y_train),
                    infl=influence(sh["mask"], sh["test_correct"], y_train, y_test, cfg.cross_class_threshold,
                                   scheduler=scheduler),
                    test_acc=test_accuracy(sh["test_correct"], y_test), meta=meta)
    _to_canonical_ids(scores, dataset)
    write_scores(run_dir / "scores", scores)
    return scores
