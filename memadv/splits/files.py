"""The split files: ``RUN/splits/`` (``splits.parquet``, one CSV per set, ``labels.parquet``,
``summary.md``), written atomically (:mod:`memadv.files.atomic`) and read back by every later step
(training subsets, figures). The sets themselves are defined in :mod:`memadv.splits.rules`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv import __version__
from memadv.config import config_to_dict
from memadv.files.atomic import atomic_dir, write_text_atomic
from memadv.data.dataset import Dataset
from memadv.splits.erm_accuracy import describe_erm_accuracy, use_erm_accuracy
from memadv.splits.labels import planned_looks, render_labels
from memadv.scores.schema import Scores, check_fingerprint
from memadv.files.tables import markdown_table, read_table, write_table
from memadv.errors import DatasetError, FingerprintMismatchError, SchemaError
from memadv.layout import LABELS_FILE, SPLIT_SUMMARY_FILE, SPLITS_FILE, locate
from memadv.splits.rules import SET_KEYS, SPLIT_COLUMNS, SplitConfig, SplitResult, compute_splits


def split_meta(scores: Scores, cfg: SplitConfig, result: SplitResult, source: str) -> dict[str, Any]:
    m = scores.meta
    keep = ("dataset", "fingerprint_train", "fingerprint_test", "n_train", "n_test", "num_classes")
    return {**{k: m[k] for k in keep if k in m},
            "thresholds": config_to_dict(cfg),
            "source_scores": {"path": source, "source": m.get("source"), "se_known": scores.se_known,
                              "complete": m.get("complete", True), "n_models": m.get("n_models"),
                              # which models the min-test-acc rule used (full-data or subset models)
                              "test_acc_source": m.get("test_acc_source", "subset"),
                              "n_full_models": m.get("n_full_models")},
            "sizes": {k: int(v.size) for k, v in result.sets.items()},
            # with error control, the sizes the paper's reading of the same scores gives (None without)
            "error_control": result.control, "paper_sizes": result.paper_sizes,
            "memadv_version": __version__}



def render_summary(result: SplitResult, meta: dict[str, Any], title: str) -> str:
    th = meta["thresholds"]
    src = meta["source_scores"]
    out = [f"# Splits of {title}", "",
           f"Dataset `{meta.get('dataset')}`, scores `{src['path']}` (source {src['source']}, "
           f"{src['n_models']} models, standard errors {'known' if src['se_known'] else 'unknown'}"
           f"{'' if src['complete'] else ', UNFINISHED estimate'}).", "",
           f"Thresholds: mem atypical > {th['mem_atypical']}, mem typical < {th['mem_typical']}, "
           f"infl atypical > {th['infl_atypical']}, infl typical > {th['infl_typical']} excludes, "
           f"min test accuracy {th['min_test_acc']}, pairs {th['pairs']}, significance "
           f"{th['significance'] if th['significance'] is not None else 'off'}, error control {result.control}"
           f"{'' if th.get('looks', 1) == 1 else ' (alpha spent over ' + str(th['looks']) + ' planned looks)'}.", "",
           "## Sets", ""]
    out += markdown_table(["set", "size"], [[k, v.size] for k, v in result.sets.items()], align="lr")
    out += ["", "## Rules", ""]
    out += markdown_table(["set", "rule", "considered", "removed", "kept"],
                          [[r["set"], r["rule"], r["considered"], r["removed"], "" if r["kept"] is None else r["kept"]]
                           for r in result.rules], align="llrrr")
    out += ["", "## Noise floor", "",
            "Median standard error of the estimates each rule compares (over those with a non-zero SE; the share "
            "with SE 0, where all models agree, is listed), threshold / SE, and for the test rules the median "
            "number of atypical training examples (non-zero SE) a test example is compared with on average and the "
            "expected share of test examples for which noise alone would cross the threshold if all their true "
            "influences were zero.", ""]

    def f(x: Any, spec: str = ".3g") -> str:
        return "" if x is None else format(x, spec)
    out += markdown_table(["rule", "threshold", "median SE", "threshold / SE", "share SE = 0", "comparisons",
                           "share crossed by noise", "note"],
                          [[r["rule"], r["threshold"], f(r["se"]), f(r["ratio"], ".2f"), f(r["zero_se"], ".1%"),
                            f(r["comparisons"], ".3g"), f(r["p_noise"], ".3f"), r["note"]] for r in result.noise],
                          align="lrrrrrrl")
    out += ["", "## Size per class", ""]
    pc = result.per_class
    out += markdown_table(["class", *SET_KEYS], [[c, *(int(pc.loc[k, c]) for k in SET_KEYS)] for c in pc.columns],
                          align="l" + "r" * len(SET_KEYS))
    if result.labels is not None:
        out += [""] + render_labels(result.labels, result.decided, result.control, result.paper_sizes,
                                    {k: int(v.size) for k, v in result.sets.items()})
    if result.warnings:
        out += ["", "## Warnings", ""] + [f"* {w}" for w in result.warnings]
    out += ["", "## Files", "",
            "`splits.parquet` (columns split, idx, label, set; thresholds and fingerprints in its metadata), "
            "`train_atypical.csv`, `train_typical.csv`, `test_atypical.csv`, `test_typical.csv` (columns idx, label), "
            f"`{LABELS_FILE}` (every example's label per rule: columns split, rule, idx, label, decision, estimate, "
            "lo, hi, p_value).",
            ""]
    return "\n".join(out)



def write_splits(out_dir: str | Path, result: SplitResult, meta: dict[str, Any], title: str,
                 paths: pd.DataFrame | None = None) -> Path:
    """Write the split folder all at once; returns ``out_dir``. ``paths`` (columns split, idx, path:
    a user's own data set, memadv.data.own_images.read_example_paths) adds each example's relative
    path beside its id, in the parquet file and the CSVs."""
    out_dir = Path(out_dir)
    summary = render_summary(result, meta, title)
    rows = result.rows if paths is None else result.rows.merge(paths, on=["split", "idx"], how="left")
    with atomic_dir(out_dir, "splits") as tmp:
        write_table(tmp / SPLITS_FILE, rows, meta)
        for key in SET_KEYS:
            split, kind = key.split("/")
            part = rows[(rows["split"] == split) & (rows["set"] == kind)]
            text = part[["idx", "label"] + (["path"] if paths is not None else [])].to_csv(index=False)
            write_text_atomic(tmp / f"{split}_{kind}.csv", text)
        if result.labels is not None:
            write_table(tmp / LABELS_FILE, result.labels, meta)
        write_text_atomic(tmp / SPLIT_SUMMARY_FILE, summary)
    return out_dir



def make_splits(path: str | Path, cfg: SplitConfig, out: str | Path | None = None) -> tuple[SplitResult, Path]:
    """The whole ``memadv splits`` stage: read the scores of ``path`` (a run or its ``scores/``),
    compute the sets and write them to ``out`` (default ``RUN/splits``); returns (result, folder)."""
    from memadv.scores.schema import read_scores
    scores = use_erm_accuracy(read_scores(path), path, cfg.erm_models)  # ERM on all of D (Sec. 3.2)
    lay = locate(Path(path).resolve())
    run_dir = lay.root
    # a sequential estimate (--until-decided) spent alpha over its planned looks: so do its splits
    cfg = dataclasses.replace(cfg, looks=max(cfg.looks, planned_looks(run_dir, scores.meta.get("n_models"))))
    result = compute_splits(scores, cfg)
    describe_erm_accuracy(result, scores.meta)  # the rule names its models
    out_dir = Path(out) if out is not None else lay.splits
    meta = split_meta(scores, cfg, result, str(lay.scores))
    from memadv.data.own_images import read_example_paths
    return result, write_splits(out_dir, result, meta, title=f"run `{run_dir.name}`",
                                paths=read_example_paths(lay.example_paths))



def splits_file_of(path: str | Path) -> Path:
    """Accept a run directory, its ``splits/`` folder or the parquet file itself."""
    p = Path(path)
    for cand in (p, p / SPLITS_FILE, locate(p).split_file):
        if cand.is_file():
            return cand
    raise SchemaError(f"no split file at {str(p)!r}: expected a run directory holding splits/{SPLITS_FILE}, a splits "
                      f"folder or the parquet file; run `memadv splits RUN` first")



def read_splits(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of a split file (checked against the schema) and its metadata."""
    f = splits_file_of(path)
    df, meta = read_table(f, required=SPLIT_COLUMNS)
    bad_split = set(df["split"].unique()) - {"train", "test"}
    bad_set = set(df["set"].unique()) - {"atypical", "typical"}
    if bad_split or bad_set:
        raise SchemaError(f"{f} has unknown values in column split {sorted(bad_split)} or set {sorted(bad_set)}")
    for col in ("idx", "label"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise SchemaError(f"{f}: column {col} must hold integers, got {df[col].dtype}")
    if (df["idx"] < 0).any():
        raise SchemaError(f"{f}: negative example ids")
    return df, meta



def read_split_sets(path: str | Path, dataset: Dataset | None = None) -> dict[str, np.ndarray]:
    """Sorted int64 ids of the four sets, keyed "train/atypical", "train/typical", "test/atypical", "test/typical".

    ``path`` is a run directory, a splits folder or the parquet file. Without ``dataset``: the
    canonical ids of the file. With ``dataset``: positions in that copy of the data set (what
    indexes its images; the ids themselves for a full data set, other positions for a reduced
    ``--per-class`` copy); a split file made for another dataset raises FingerprintMismatchError
    and ids the dataset lacks raise SchemaError.
    """
    df, meta = read_splits(path)
    where = str(splits_file_of(path))
    if dataset is not None:
        if meta.get("dataset") is not None and meta["dataset"] != dataset.name:
            raise FingerprintMismatchError(f"{where} was made for dataset {meta['dataset']!r}, not for "
                                           f"{dataset.name!r}; use the dataset it was made for")
        check_fingerprint(meta, dataset, what=where)
    out: dict[str, np.ndarray] = {}
    for key in SET_KEYS:
        split, kind = key.split("/")
        part = df[(df["split"] == split) & (df["set"] == kind)]
        ids = part["idx"].to_numpy(np.int64)
        if dataset is not None and ids.size:
            labels = dataset.labels(split).numpy()
            try:
                ids = dataset.positions(split, ids)
            except DatasetError as e:
                raise SchemaError(f"{where}: {key}: {e}") from None
            lab = part["label"].to_numpy(np.int64)
            known = lab >= 0
            if (labels[ids[known]] != lab[known]).any():
                raise FingerprintMismatchError(f"{where}: labels of {key} disagree with {dataset.name!r} as loaded; "
                                               f"the split file was made for another copy of the dataset")
        out[key] = np.sort(ids).astype(np.int64)
    return out
