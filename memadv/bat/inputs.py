"""Inputs of a training run, loaded and checked before any file is written: the device, the
memorization scores, the typical/atypical evaluation subsets (and their per-epoch cap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memadv.bat.train_config import TrainConfig
from memadv.data.dataset import Dataset
from memadv.config import parse_device
from memadv.errors import ConfigError, DatasetError
from memadv.layout import locate

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = parse_device("--device", name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name!r}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def with_scores_dataset(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the data-set options (``classes``, ``per_class``, ``test_per_class``) and, when
    not given, ``data_root`` of the estimate behind ``cfg.scores`` filled in, so the run loads the
    data set the scores were made on. ConfigError (one line) when an option given
    differs from the scores' or the scores are for another data set; ``cfg`` itself without scores."""
    if cfg.scores is None:
        return cfg
    import dataclasses

    from memadv.data.registry import DATASET_OPTION_NAMES, options_from_meta
    from memadv.scores.schema import read_scores_meta
    meta = read_scores_meta(cfg.scores)
    if meta.get("dataset") not in (None, cfg.dataset):
        raise ConfigError(f"--scores {cfg.scores} were made for dataset {meta['dataset']!r}, not {cfg.dataset!r}")
    made = options_from_meta(meta)
    changes: dict = {}
    for key in DATASET_OPTION_NAMES:
        given = getattr(cfg, key)
        if given is not None and given != made.get(key):
            raise ConfigError(f"--{key.replace('_', '-')} {given} differs from the scores in {cfg.scores} "
                              f"(made with {key} = {made.get(key)}); leave it out to use the scores' value")
        changes[key] = made.get(key)
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    if cfg.data_root is None and spec.get("data_root") is not None:
        changes["data_root"] = spec["data_root"]  # where the estimate read it; --data-root overrides
    return dataclasses.replace(cfg, **changes)


def load_mem(scores: str | Path, dataset: Dataset) -> torch.Tensor:
    """Memorization score (float32 (N,)) per training example of ``dataset``, by position (NaN
    where the score file has none); fingerprint checked. Score files speak canonical ids, which a
    reduced copy (``--per-class``) holds at other positions."""
    from memadv.scores.schema import read_scores
    sc = read_scores(scores, dataset, need_infl=False)
    mem = torch.full((dataset.x_train.shape[0],), float("nan"), dtype=torch.float32)
    try:
        idx = dataset.positions("train", np.array(sc.mem["idx"].to_numpy(np.int64)))
    except DatasetError as e:
        raise ConfigError(f"scores in {scores} do not fit {dataset.name} as loaded: {e}") from None
    mem[torch.from_numpy(idx)] = torch.from_numpy(np.array(sc.mem["mem"].to_numpy(np.float32)))
    return mem


def default_splits_path(scores: str | None) -> Path | None:
    """``<run>/splits/splits.parquet`` beside a ``<run>/scores`` folder (or a run folder), if it exists."""
    if scores is None:
        return None
    cand = locate(scores).split_file
    return cand if cand.is_file() else None


def load_subsets(cfg: TrainConfig, dataset: Dataset) -> dict[str, np.ndarray]:
    """Named evaluation subsets: ``train/all``, ``test/all`` and the split file's sets."""
    subsets: dict[str, np.ndarray] = {"train/all": np.arange(dataset.x_train.shape[0]),
                                      "test/all": np.arange(dataset.x_test.shape[0])}
    if cfg.splits is not None:
        from memadv.splits.files import read_split_sets
        sets = read_split_sets(cfg.splits, dataset)
        for key, ids in sets.items():
            split = key.split("/", 1)[0]
            ids = np.asarray(ids, dtype=np.int64)
            n = dataset.labels(split).shape[0] if split in ("train", "test") else 0
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise ConfigError(f"split file {cfg.splits} names {key} ids outside 0..{n - 1} of {dataset.name}")
            subsets[key] = ids
    return subsets


# The evaluation subsample (--eval-max, --final-max) is one draw shared by every training seed and
# every method: paired comparisons then see the same test images in both arms, and seed-to-seed
# variation is not inflated by a different sample per seed (it was drawn with the training seed).
EVAL_SAMPLE_SEED = 0


def cap_subsets(subsets: dict[str, np.ndarray], cap: int | None,
                seed: int = EVAL_SAMPLE_SEED) -> dict[str, np.ndarray]:
    """Keep, per split, only ids in a fixed random sample of ``cap`` ids of the union (None or 0: all).

    The sample depends on the union of ids and ``seed`` only: the same for every training run that
    evaluates the same ids."""
    if not cap:
        return subsets
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        named = {k: v for k, v in subsets.items() if k.startswith(split + "/")}
        if not named:
            continue
        union = np.unique(np.concatenate(list(named.values())))
        keep = union if union.size <= cap else np.sort(np.random.default_rng(seed).choice(union, cap, replace=False))
        for k, v in named.items():
            out[k] = v[np.isin(v, keep)]
    return out
