"""Aggregation: the shards of an estimate -> ``scores/`` (mem.parquet, infl.parquet, test_acc.parquet,
proxies.parquet), as often as wanted, with any keep rule. Eq. 1 and the test accuracy are
:mod:`memadv.scores.equations`; Eq. 2 is :mod:`memadv.estimate.influence`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.config import check_range, option
from memadv.data.dataset import Dataset
from memadv.scores.schema import KEEP_CHOICES, Scores, dataset_meta, write_scores
from memadv.estimate.adjust import AdjustConfig
from memadv.estimate.proxies import aggregate_proxies, agreement, noise_ceiling
from memadv.estimate.shards import config_from_spec, dataset_for, read_shard, read_spec
from memadv.errors import ConfigError, IncompleteRunError, SchemaError
from memadv.estimate.influence import (AUTO_MAX_SAME_CLASS_PAIRS, DEFAULT_KEEP_THRESHOLD, MAX_KEPT_PAIRS, check_keep,
                                       influence, keep_rule)
from memadv.layout import RunLayout
from memadv.scores.equations import memorization, test_accuracy


@dataclasses.dataclass
class AggregateConfig:
    """``memadv aggregate``'s options (TOML table ``[aggregate]``): what may be aggregated and which
    (train, test) pairs ``infl.parquet`` keeps (:func:`memadv.estimate.influence.keep_rule`)."""

    allow_partial: bool = option(False, "aggregate an unfinished run from the shards that exist (scores marked "
                                        "complete=false)", switch=True)
    keep: str = option("auto", "which (train, test) pairs infl.parquet keeps: same-class = every same-class pair "
                               "plus cross-class pairs with |infl| >= --cross-class-threshold; threshold = pairs of any "
                               "class with |infl| >= --keep-threshold; all = every pair; auto = same-class when the "
                               f"data set has at most {AUTO_MAX_SAME_CLASS_PAIRS:,} same-class pairs, else threshold",
                       choices=KEEP_CHOICES)
    keep_threshold: float = option(DEFAULT_KEEP_THRESHOLD, "|infl| kept by --keep threshold",
                                   source="the lowest threshold of the paper's split definitions, Sec. 3.2",
                                   minimum=0.0, maximum=1.0)
    cross_class_threshold: str = option("spec", "|infl| of the cross-class pairs kept by --keep same-class: a "
                                                "number in [0, 1], 'none' (no cross-class pairs) or 'spec' (the "
                                                "run's setting)")
    data_root: str | None = option(None, "where the data set lies now, if it moved since the estimate (same data: "
                                         "fingerprint checked)")
    max_pairs: int = option(MAX_KEPT_PAIRS, "refuse (one-line error) to keep more influence pairs than this: the "
                                            "memory bound of aggregation (the default: about 5 GiB at its peak)",
                            unit="pairs", minimum=1)

    def __post_init__(self) -> None:
        cross = self.cross_class()
        check_keep(self.keep, self.keep_threshold, None if cross == "spec" else cross)
        check_range("max_pairs", self.max_pairs, 1)

    def cross_class(self) -> float | str | None:
        """``cross_class_threshold`` as :func:`aggregate` takes it: a number, None ('none') or 'spec'
        (its range is :func:`memadv.estimate.influence.check_keep`'s to check)."""
        text = str(self.cross_class_threshold)
        if text in ("spec", "none"):
            return None if text == "none" else text
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--cross-class-threshold must be a number in [0, 1], 'none' or 'spec', "
                              f"got {text!r}") from None


def load_shards(run_dir: Path, allow_partial: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray], list[int]]:
    """Concatenate every finished shard (sorted by model id); refuse an unfinished run unless allowed.

    Every shard is checked against the run's spec (:func:`memadv.estimate.shards.read_shard`):
    a shard of another estimate raises SchemaError naming its file.
    """
    spec = read_spec(run_dir)
    n_shards = spec["n_shards"]
    done = [s for s in range(n_shards) if RunLayout(run_dir).shard(s).exists()]  # a damaged one is refused below
    missing = sorted(set(range(n_shards)) - set(done))
    if missing and not allow_partial:
        raise IncompleteRunError(f"{run_dir}: {len(missing)} of {n_shards} shards unfinished (e.g. {missing[:5]}); "
                                 f"finish them with `memadv estimate --out {run_dir}` or pass --allow-partial")
    if len(done) == 0:
        raise IncompleteRunError(f"{run_dir}: no finished shard to aggregate")
    parts = [read_shard(RunLayout(run_dir).shard(s), spec=spec, shard=s) for s in done]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["model_id"], kind="stable")
    merged = {k: v[order] for k, v in merged.items()}
    if len(np.unique(merged["model_id"])) != len(merged["model_id"]):
        raise SchemaError(f"{run_dir}: shards contain duplicate model ids")
    return spec, merged, missing


def _to_canonical_ids(scores: Scores, dataset: Dataset) -> None:
    """Positions in a reduced copy (``--per-class``) -> original positions, in place: score files
    always speak of canonical ids. A no-op for a full data set."""
    extra = [] if scores.proxies is None else [(scores.proxies, "idx", "train")]
    for table, column, split in ((scores.mem, "idx", "train"), (scores.infl, "train_idx", "train"),
                                 (scores.infl, "test_idx", "test"), (scores.test_acc, "idx", "test"), *extra):
        ids = {"train": dataset.train_ids, "test": dataset.test_ids}[split]
        if ids is not None and column in table:
            table[column] = ids[table[column].to_numpy(np.int64)]


def _proxies(run_dir: Path, spec: dict[str, Any], sh: dict[str, np.ndarray], missing: list[int], mem: np.ndarray,
             y_train: np.ndarray) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """proxies.parquet's table (or None) and its summary for the scores' metadata: models, agreement
    with mem and the noise ceiling (memadv.estimate.proxies), or why there are none."""
    done = sorted(set(range(spec["n_shards"])) - set(missing))
    table, without = aggregate_proxies(run_dir, spec, done, y_train)
    if table is None:
        return None, {"missing": f"no shard logged proxies ({len(without)} shards written without them)"}
    # the noise ceiling of the mem these proxies are compared with: all M models, halves by model id
    halves = [memorization(sh["mask"][sh["model_id"] % 2 == h], sh["train_correct"][sh["model_id"] % 2 == h],
                           y_train)["mem"].to_numpy() for h in (0, 1)]
    return table, {"kind": "proxy", "n_models": int(len(sh["model_id"]) - sum(
                       len(config_from_spec(spec).shard_models(s)) for s in without)),
                   "shards_without": without, "epochs": int(spec["config"]["epochs"]),
                   "augmented": bool(spec["config"]["augment"]), "agreement": agreement(table, mem),
                   "noise_ceiling": noise_ceiling(*halves, models=len(sh["model_id"]))}


def aggregate(run_dir: str | Path, *, allow_partial: bool = False, scheduler: Any = None, keep: str = "auto",
              keep_threshold: float = DEFAULT_KEEP_THRESHOLD, cross_class_threshold: float | None | str = "spec",
              data_root: str | None = None, max_pairs: int = MAX_KEPT_PAIRS,
              adjust: AdjustConfig | None = None) -> Scores:
    """Rebuild ``scores/`` from the shards (any time, as often as wanted, with any keep rule).

    ``cross_class_threshold`` "spec" takes the run's ``cross_class_threshold`` (used by
    ``--keep same-class``); ``data_root`` overrides where the data set is read (it must be the same
    data: the fingerprint is checked). ``adjust`` (default none) adds the regression-adjusted
    ``mem_adj, mem_adj_se`` to mem.parquet (:mod:`memadv.estimate.adjust`). The score folder is replaced as a whole (SchemaError,
    IncompleteRunError, FingerprintMismatchError, ConfigError before anything is written).
    """
    run_dir = Path(run_dir)
    spec, sh, missing = load_shards(run_dir, allow_partial)
    cfg = config_from_spec(spec)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=os.fspath(data_root))
    dataset = dataset_for(cfg, spec, run_dir)
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    cross = cfg.cross_class_threshold if cross_class_threshold == "spec" else cross_class_threshold
    rule = keep_rule(keep, y_train, y_test, keep_threshold=keep_threshold, cross_class_threshold=cross)
    meta = {**dataset_meta(dataset), "n_models": int(sh["mask"].shape[0]), "source": "memadv", "se_known": True,
            "complete": not missing, "missing_shards": len(missing), "spec": spec["config"],
            "cross_class_threshold": rule.cross_min if rule.choice == "same-class" else None, **rule.meta()}
    adjust = adjust if adjust is not None else AdjustConfig()
    meta.update(adjust.meta())
    mem = memorization(sh["mask"], sh["train_correct"], y_train)
    adjusted = adjust.apply(sh["mask"], sh["train_correct"], y_train, dataset.x_train.numpy())
    if adjusted is not None:
        mem = pd.concat([mem, adjusted], axis=1)
    scores = Scores(mem=mem,
                    infl=influence(sh["mask"], sh["test_correct"], y_train, y_test, rule, scheduler=scheduler,
                                   max_pairs=max_pairs),
                    test_acc=test_accuracy(sh["test_correct"], y_test), meta=meta)
    scores.proxies, meta["proxies"] = _proxies(run_dir, spec, sh, missing, scores.mem["mem"].to_numpy(), y_train)
    _to_canonical_ids(scores, dataset)
    write_scores(RunLayout(run_dir).scores, scores)
    return scores

