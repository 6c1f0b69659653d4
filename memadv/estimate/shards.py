"""Shards: the unit of work and the source of truth of an estimate.

Contract (any scheduler can drive it): ``ShardTask(run_dir)(s)`` trains the models of shard s,
writes ``estimate/shards/shard-{s:05d}.parquet`` atomically, and returns; if that file already
exists and reads back as a shard of this run it returns at once (a truncated, unreadable or foreign
file is not "done": it is retrained and replaced, :func:`shard_problem`). One row per model: ``model_id, seed, train_acc, test_acc,
subset_train_acc, final_loss, seconds`` and bit-packed ``mask``, ``train_correct``,
``test_correct`` (``numpy.packbits`` with its default big-endian bit order; unpack with
``numpy.unpackbits(..., count=n)``); with the estimate's ``proxies`` option (the default) also the
optional proxy columns of :mod:`memadv.estimate.proxy_log` (``PROXY_COLUMNS``), absent from older shards.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from memadv import __version__
from memadv.files.atomic import write_json_atomic
from memadv.data.dataset import Dataset
from memadv.data.registry import load_dataset
from memadv.scores.schema import dataset_meta
from memadv.files.tables import read_table, write_table
from memadv.estimate.checkpoints import ShardCheckpoint
from memadv.estimate.shard_locks import locked
from memadv.estimate.config import EstimateConfig
from memadv.estimate.proxy_log import PROXY_COLUMNS, proxy_columns, read_proxy_rows
from memadv.estimate.seeds import model_seed
from memadv.estimate.train import train_models
from memadv.errors import ConfigError, FingerprintMismatchError, SchemaError
from memadv.layout import RunLayout, require_run_dir

SHARD_COLUMNS = ["model_id", "seed", "train_acc", "test_acc", "subset_train_acc", "final_loss", "seconds",
                 "mask", "train_correct", "test_correct"]


def make_spec(cfg: EstimateConfig, dataset: Dataset) -> dict[str, Any]:
    return {"config": asdict(cfg), "n_shards": cfg.n_shards, **dataset_meta(dataset), "code_version": __version__}


def check_spec(run_dir: Path, cfg: EstimateConfig, dataset: Dataset) -> dict[str, Any] | None:
    """The run's spec if it has one and ``cfg`` defines the same estimate on ``dataset``; None for a
    run without a spec. Writes nothing. Raises ConfigError naming the fields that differ."""
    if not RunLayout(run_dir).spec.exists():
        return None
    spec = make_spec(cfg, dataset)
    old = read_spec(run_dir)
    was = estimate_identity(old["config"])
    diff = [f"{k} ({was[k]!r} there, {spec['config'].get(k)!r} now)" for k in EstimateConfig.IDENTITY
            if was[k] != spec["config"].get(k)]
    if old.get("fingerprint_train") != spec["fingerprint_train"]:
        diff.append("dataset fingerprint")
    if cfg.models < old["config"]["models"]:  # growing is fine (EstimateConfig.IDENTITY), shrinking drops shards
        diff.append(f"models ({old['config']['models']} there, {cfg.models} now: --models can only grow)")
    if diff:
        raise ConfigError(f"{run_dir} holds an estimate with different {'; '.join(diff)}; "
                          f"re-run with the same settings to resume, or choose another --out")
    return old


def write_or_check_spec(run_dir: Path, cfg: EstimateConfig, dataset: Dataset) -> dict[str, Any]:
    """Write spec.json for a new run; for an existing run, refuse a spec that defines another estimate
    (:func:`check_spec`).

    The other fields (where and how the shards run: EstimateConfig.RUNTIME; the aggregation's
    cross_class_threshold; full_models) come from this run's command line: when they differ, the
    spec's copy is updated to them, as the record of the latest run (later stages read data_root there)."""
    old = check_spec(run_dir, cfg, dataset)
    if old is not None:
        spec = make_spec(cfg, dataset)
        if old["config"] != spec["config"]:
            old = {**old, "config": {**old["config"], **{k: v for k, v in spec["config"].items()
                                                         if k not in EstimateConfig.IDENTITY}},
                   "n_shards": spec["n_shards"]}  # --models raised: more shards
            write_json_atomic(RunLayout(run_dir).spec, old)
        return old
    spec = make_spec(cfg, dataset)
    write_json_atomic(RunLayout(run_dir).spec, spec)
    return spec


def read_spec(run_dir: Path) -> dict[str, Any]:
    path = RunLayout(run_dir).spec
    if Path(run_dir).exists():
        require_run_dir(Path(run_dir))  # a file: say so, rather than suggest an estimate into it
    if not path.exists():
        raise SchemaError(f"{run_dir} is not an estimate run (no estimate/spec.json); run `memadv estimate --out {run_dir}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path} is not valid JSON: {e}") from None


def config_from_spec(spec: dict[str, Any], runtime: dict[str, Any] | None = None) -> EstimateConfig:
    """The estimate of ``spec``; ``runtime`` (EstimateConfig.runtime() of the command line) replaces
    where and how it runs (device, data_root, ...), which a task must never take from the spec."""
    return EstimateConfig(**{**spec["config"], **(runtime or {})})


@lru_cache(maxsize=2)
def _load(name: str, data_root: str | None, options: tuple, cache_dir: Path | None) -> Dataset:
    return load_dataset(name, data_root, cache_dir=cache_dir, **{k: list(v) if isinstance(v, tuple) else v
                                                                 for k, v in options})


def dataset_for(cfg: EstimateConfig, spec: dict[str, Any] | None = None, run_dir: Path | None = None) -> Dataset:
    """The data set of the estimate ``cfg`` (fingerprint checked against ``spec`` when given). With
    ``run_dir`` of a started run (its spec written), a user's own data set is decoded once into the
    run's ``data-cache/`` and read from there by every later task."""
    cache = None
    if run_dir is not None and RunLayout(run_dir).spec.is_file():
        cache = RunLayout(run_dir).data_cache
    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.dataset_options().items()))
    ds = _load(cfg.dataset, cfg.data_root, options, cache)
    if spec is not None and spec.get("fingerprint_train") != ds.fingerprint("train"):
        raise FingerprintMismatchError(f"dataset {cfg.dataset!r} under {cfg.data_root!r} is not the one this run was "
                                       f"started on (train fingerprint {ds.fingerprint('train')} != {spec['fingerprint_train']})")
    return ds


class ShardTask:
    """Do shard s: lock it, train its models (resuming from its checkpoint), write its file, mark it
    done (the file's existence), remove its checkpoint and lock.

    ``runtime`` is :meth:`EstimateConfig.runtime` of the command line that runs the task (device,
    data_root, packing, channels_last); the estimate itself comes from spec.json. Another live
    process's lock on the shard is waited for (:func:`memadv.estimate.shard_locks.locked`).
    """

    def __init__(self, run_dir: str | Path, threads: int | None = None, runtime: dict[str, Any] | None = None):
        self.run_dir = str(run_dir)
        self.threads = threads
        self.runtime = dict(runtime or {})

    def __call__(self, shard: int) -> str:
        run_dir = Path(self.run_dir)
        out = RunLayout(run_dir).shard(shard)
        if shard_problem(run_dir, shard) is None:
            return str(out)
        with locked(run_dir, shard, lambda: shard_problem(run_dir, shard) is None) as lock:
            if lock is not None:  # None: another process wrote the shard while this one waited
                self._train(run_dir, shard, out)
        return str(out)

    def _train(self, run_dir: Path, shard: int, out: Path) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        spec = read_spec(run_dir)
        cfg = config_from_spec(spec, self.runtime)
        dataset = dataset_for(cfg, spec, run_dir)
        ckpt = ShardCheckpoint(run_dir, shard)
        ckpt.begin_attempt()
        start = time.time()
        result = train_models(cfg, dataset, cfg.shard_models(shard), checkpoint=ckpt)
        seconds = time.time() - start
        masks = result.masks
        rows = {
            "model_id": result.model_ids,
            "seed": [model_seed(cfg.seed, m, "init") for m in result.model_ids],
            "train_acc": result.train_correct.mean(1),
            "test_acc": result.test_correct.mean(1),
            "subset_train_acc": (result.train_correct & masks).sum(1) / masks.sum(1),
            "final_loss": result.final_loss,
            "seconds": [seconds / len(result.model_ids)] * len(result.model_ids),
            "mask": [np.packbits(r).tobytes() for r in masks],
            "train_correct": [np.packbits(r).tobytes() for r in result.train_correct],
            "test_correct": [np.packbits(r).tobytes() for r in result.test_correct],
        }
        if result.proxies is not None:  # optional columns: shards written without them stay readable
            rows.update(proxy_columns(result.proxies, result.train_loss, masks))
        meta = {"shard": shard, "fingerprint_train": spec["fingerprint_train"],
                "fingerprint_test": spec["fingerprint_test"], "n_train": spec["n_train"], "n_test": spec["n_test"],
                "estimate": estimate_identity(spec["config"])}
        write_table(out, pd.DataFrame(rows)[SHARD_COLUMNS + [c for c in PROXY_COLUMNS if c in rows]],
                    {**meta, "proxies_epochs": cfg.epochs if result.proxies is not None else None})
        ckpt.remove()


def shard_problem(run_dir: Path, shard: int, spec: dict[str, Any] | None = None) -> str | None:
    """None when shard ``shard`` of ``run_dir`` is finished: its file exists and reads back as that
    shard of this run (:func:`read_shard` with the spec). Otherwise why not: "missing", or the
    one-line error of a truncated, unreadable or foreign file (such a file is retrained by
    ``memadv estimate``, whose write replaces it). The whole file is read: a size or footer check
    alone would pass a file cut inside a row group's data."""
    path = RunLayout(run_dir).shard(shard)
    if not path.exists():
        return "missing"
    try:
        read_shard(path, spec=spec if spec is not None else read_spec(run_dir), shard=shard)
    except SchemaError as e:
        return str(e)
    return None


def finished_shards(run_dir: Path, n_shards: int, spec: dict[str, Any] | None = None) -> list[int]:
    """Shards whose file is complete and belongs to the run (:func:`shard_problem`)."""
    spec = spec if spec is not None else read_spec(run_dir)
    return [s for s in range(n_shards) if shard_problem(run_dir, s, spec) is None]


def estimate_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a spec's (or a shard's) config that define its estimate (EstimateConfig.IDENTITY);
    a field older files lack has the value they were made with (EstimateConfig.SPEC_DEFAULTS)."""
    return {k: config.get(k, EstimateConfig.SPEC_DEFAULTS.get(k)) for k in EstimateConfig.IDENTITY}


def read_shard(path: Path, n_train: int | None = None, n_test: int | None = None, *,
               spec: dict[str, Any] | None = None, shard: int | None = None, proxies: bool = False) -> dict[str, Any]:
    """Unpack one shard file: ``mask``, ``train_correct`` (models x n_train bool), ``test_correct``
    (models x n_test bool) and per-model columns; with ``proxies`` also ``proxies``: the decoded
    proxy columns (:func:`memadv.estimate.proxy_log.read_proxy_rows`), or None for a shard without them.

    With ``spec`` (and ``shard``, its number), the shard must belong to that run: same dataset
    fingerprints, sizes, estimate-defining fields (EstimateConfig.IDENTITY), shard number and
    exactly the model ids of that shard, and every packed row exactly ceil(n / 8) bytes (a short
    row is refused, never zero-padded). Any mismatch raises SchemaError naming the file.
    """
    df, meta = read_table(path, required=SHARD_COLUMNS)
    if spec is not None:
        n_train, n_test = int(spec["n_train"]), int(spec["n_test"])
        problems = [f"{k} {meta.get(k)!r} != {spec.get(k)!r}" for k in ("fingerprint_train", "fingerprint_test",
                                                                          "n_train", "n_test")
                    if meta.get(k) != spec.get(k)]
        ident, want = meta.get("estimate"), estimate_identity(spec["config"])
        if not isinstance(ident, dict):
            problems.append("no estimate fields in its metadata")
        else:
            ident = estimate_identity(ident)
            problems += [f"{k} {ident[k]!r} != {want[k]!r}" for k in want if ident[k] != want[k]]
        if shard is not None:
            if meta.get("shard") != shard:
                problems.append(f"shard number {meta.get('shard')!r} != {shard}")
            expected = list(config_from_spec(spec).shard_models(shard))
            if df["model_id"].tolist() != expected:
                problems.append(f"model ids {df['model_id'].tolist()[:4]}... are not those of shard {shard} "
                                f"({expected[:4]}...)")
        if problems:
            raise SchemaError(f"{path} does not belong to the estimate of {RunLayout(Path(path).parents[2]).spec}: "
                              + "; ".join(problems[:3]) + "; re-run `memadv estimate` to retrain it")
    if n_train is None or n_test is None:
        n_train, n_test = int(meta["n_train"]), int(meta["n_test"])

    def unpack(col: str, n: int) -> np.ndarray:
        size = -(-n // 8)
        lengths = {len(b) for b in df[col]}
        if lengths - {size}:
            raise SchemaError(f"{path}: column {col} holds rows of {sorted(lengths)} bytes, expected {size} "
                              f"({n} examples); the shard is of another estimate or truncated")
        if len(df) == 0:
            return np.zeros((0, n), bool)
        return np.unpackbits(np.frombuffer(b"".join(df[col]), np.uint8).reshape(len(df), size), axis=1,
                             count=n).astype(bool)

    out = {"model_id": df["model_id"].to_numpy(), "mask": unpack("mask", n_train),
           "train_correct": unpack("train_correct", n_train), "test_correct": unpack("test_correct", n_test),
           "seconds": df["seconds"].to_numpy(), "test_acc": df["test_acc"].to_numpy(),
           "subset_train_acc": df["subset_train_acc"].to_numpy()}
    if proxies:
        has = all(c in df.columns for c in PROXY_COLUMNS)
        out["proxies"] = read_proxy_rows({c: df[c] for c in PROXY_COLUMNS}, out["mask"], str(path)) if has else None
    return out
