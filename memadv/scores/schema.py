"""Schemas and I/O of score files (``runs/<name>/scores/``), tied to a dataset by fingerprint.

* ``mem.parquet``: one row per training example — ``idx, label, mem, mem_se, p_in, p_out, n_in, n_out``,
  and ``mem_adj, mem_adj_se`` when aggregated with ``--mem-adjust`` (metadata ``mem_adjust``).
* ``infl.parquet``: one row per (train, test) pair kept — ``train_idx, test_idx, train_label,
  test_label, infl, infl_se``. Which pairs are kept is the aggregation's ``--keep`` rule, recorded
  in the metadata as ``infl_keep`` (``same-class``, ``threshold``, ``all``), ``infl_min_abs_same``
  and ``infl_min_abs_cross`` (same-class / cross-class pairs are stored where |infl| >= that value;
  0: all of them; null: none). ``splits`` refuses a definition these pairs cannot answer.
* ``test_acc.parquet``: one row per test example — ``idx, label, p_correct, n_models``.
* ``proxies.parquet`` (optional): one row per training example — ``idx, label`` and the free
  training-time proxies of mem (:mod:`memadv.estimate.proxies`); written only when the shards
  logged them, never carried over from an earlier aggregation. Its metadata adds ``kind: "proxy"``;
  ``proxies`` in every file's metadata says how they agree with mem, or why there are none.

Metadata (parquet key-value ``memadv``) of every file: ``dataset``, ``fingerprint_train``,
``fingerprint_test``, ``dataset_options`` (the data-set options it was loaded with, e.g.
``{"classes": 50}``: every later stage reloads the data set with them), ``n_models``, ``source`` ("memadv" or "feldman-zhang"), ``se_known``
(False for imported estimates, whose files carry no standard errors), ``complete`` (False for
scores aggregated from an unfinished run with ``--allow-partial``), the estimator spec and
``scores_id``, a token shared by the three files of one aggregation (``read_scores`` refuses a mix).

The folder is written as a whole: into a temporary sibling folder, then swapped into place, so a
reader sees the old set or the new one, never a mix (paper-independent).

Undefined estimates: where an example was in (or out of) no model's subset, ``p_in`` (or
``p_out``), the difference and its standard error are NaN in that row only; every comparison with
NaN is false, so such an example falls in neither the atypical nor the typical set.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from memadv.files.atomic import atomic_dir
from memadv.data.dataset import Dataset
from memadv.files.tables import read_meta, read_table, write_table
from memadv.errors import FingerprintMismatchError, SchemaError
from memadv.layout import INFL_FILE, MEM_FILE, PROXIES_FILE, TEST_ACC_FILE, locate

MEM_COLUMNS = ["idx", "label", "mem", "mem_se", "p_in", "p_out", "n_in", "n_out"]
INFL_COLUMNS = ["train_idx", "test_idx", "train_label", "test_label", "infl", "infl_se"]
TEST_ACC_COLUMNS = ["idx", "label", "p_correct", "n_models"]
# Columns a table carries when the aggregation computed them: the regression-adjusted mem and its
# standard error (``memadv aggregate --mem-adjust``, memadv.estimate.adjust); metadata ``mem_adjust``.
OPTIONAL_COLUMNS = {"mem": ["mem_adj", "mem_adj_se"], "infl": [], "test_acc": []}
# ``--keep`` choices of ``memadv aggregate`` (memadv.estimate.influence.keep_rule).
KEEP_CHOICES = ("auto", "same-class", "threshold", "all")
SCORE_FILES = {"mem": (MEM_FILE, MEM_COLUMNS), "infl": (INFL_FILE, INFL_COLUMNS),
               "test_acc": (TEST_ACC_FILE, TEST_ACC_COLUMNS)}
# PROXIES_FILE is written by aggregation when the shards logged proxies; replaced or dropped by every aggregation.


@dataclass
class Scores:
    mem: pd.DataFrame
    infl: pd.DataFrame
    test_acc: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    proxies: pd.DataFrame | None = None  # proxies.parquet (memadv.estimate.proxies), or None

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset"))

    @property
    def se_known(self) -> bool:
        return bool(self.meta.get("se_known", True))


def scores_data_cache(scores: str | Path | None) -> Path | None:
    """The decode cache (``RunLayout.data_cache``) of the run whose scores are ``scores`` (a run or its
    ``scores/`` folder), where a user's own data set was decoded by the estimate; None without scores."""
    return None if scores is None else locate(scores).data_cache


def write_scores(scores_dir: str | Path, scores: Scores) -> None:
    """Write the three files into a temporary sibling folder, then swap it in place of ``scores_dir``.

    Raises SchemaError (before anything is written) when a table lacks a column.
    """
    tables = {}
    for key in ("infl", "test_acc", "mem"):
        name, cols = SCORE_FILES[key]
        df = getattr(scores, key)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise SchemaError(f"{key} table lacks columns {missing}")
        tables[name] = df[cols + [c for c in OPTIONAL_COLUMNS[key] if c in df.columns]]
    meta = {**scores.meta, "scores_id": uuid.uuid4().hex}
    old = Path(scores_dir)
    with atomic_dir(old, "scores") as tmp:
        # Other files in the folder (e.g. import-fz's filenames.parquet) are not ours to drop: carry them over.
        for p in sorted(old.iterdir()) if old.is_dir() else []:
            if p.name not in tables and p.name != PROXIES_FILE and not p.name.startswith("."):
                if p.is_dir():
                    shutil.copytree(p, tmp / p.name, symlinks=True)
                else:
                    shutil.copy2(p, tmp / p.name, follow_symlinks=False)
        for name, df in tables.items():
            write_table(tmp / name, df, meta)
        if scores.proxies is not None:
            write_table(tmp / PROXIES_FILE, scores.proxies, {**meta, "kind": "proxy"})
    scores.meta = meta


def _no_scores(d: Path) -> SchemaError:
    return SchemaError(f"no scores in {d} (mem.parquet missing): `memadv estimate --out <run>` writes them; "
                       f"`memadv aggregate <run>` rebuilds them where an estimate's shards are")


def read_scores_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of ``mem.parquet`` in a score folder (or run folder), without its rows
    (SchemaError when it is missing)."""
    d = locate(path).scores
    if not (d / MEM_FILE).exists():
        raise _no_scores(d)
    return read_meta(d / MEM_FILE)


def scores_problem(path: str | Path) -> str | None:
    """Why the score folder (or run folder) ``path`` holds no usable scores — ``"missing"`` when it
    has no mem.parquet, the one-line reason when a score file's footer does not read (0-byte or
    half-written) — or None when every score file present reads. Footers only: cheap for ``status``."""
    d = locate(path).scores
    if not (d / MEM_FILE).exists():
        return "missing"
    for name in (MEM_FILE, INFL_FILE, TEST_ACC_FILE):
        if name == MEM_FILE or (d / name).exists():
            try:
                read_meta(d / name)
            except SchemaError as e:
                return str(e)
    return None


def read_scores(path: str | Path, dataset: Dataset | None = None, *, need_infl: bool = True) -> Scores:
    """Read a score folder (or run folder); with ``dataset``, refuse scores of another dataset.

    Raises SchemaError when mem.parquet is missing or the files come from different aggregations
    (their ``scores_id`` or, for older files, ``n_models`` differ), FingerprintMismatchError for
    scores of another dataset.
    """
    d = locate(path).scores
    if not (d / MEM_FILE).exists():
        raise _no_scores(d)
    mem, meta = read_table(d / MEM_FILE, required=MEM_COLUMNS)
    metas = {MEM_FILE: meta}
    if (d / TEST_ACC_FILE).exists():
        test_acc, metas[TEST_ACC_FILE] = read_table(d / TEST_ACC_FILE, required=TEST_ACC_COLUMNS)
    else:
        test_acc = pd.DataFrame(columns=TEST_ACC_COLUMNS)
    if (d / INFL_FILE).exists():
        if need_infl:
            infl, metas[INFL_FILE] = read_table(d / INFL_FILE, required=INFL_COLUMNS)
        else:
            infl, metas[INFL_FILE] = pd.DataFrame(columns=INFL_COLUMNS), read_meta(d / INFL_FILE)
    else:
        infl = pd.DataFrame(columns=INFL_COLUMNS)
    for key in ("scores_id", "n_models", "fingerprint_train", "fingerprint_test"):
        values = {name: m.get(key) for name, m in metas.items()}
        if len({json.dumps(v) for v in values.values()}) > 1:
            raise SchemaError(f"{d}: the score files come from different aggregations ({key}: "
                              + ", ".join(f"{n} {v}" for n, v in values.items())
                              + "); re-run `memadv aggregate` to rebuild the folder")
    scores = Scores(mem=mem, infl=infl, test_acc=test_acc, meta=meta)
    if dataset is not None:
        check_fingerprint(meta, dataset, what=str(d))
    return scores


def check_fingerprint(meta: dict[str, Any], dataset: Dataset, what: str = "file",
                      splits: tuple[str, ...] = ("train", "test")) -> None:
    """Raise FingerprintMismatchError unless ``meta`` was made for exactly this dataset."""
    for split in splits:
        key = f"fingerprint_{split}"
        if key not in meta:
            continue
        if meta[key] != dataset.fingerprint(split):
            raise FingerprintMismatchError(
                f"{what} was made for dataset {meta.get('dataset')!r} ({split} fingerprint {meta[key]}), "
                f"not for {dataset.name!r} as loaded ({dataset.fingerprint(split)}); use the dataset it was made for")


def dataset_meta(dataset: Dataset) -> dict[str, Any]:
    """The metadata every file about ``dataset`` carries."""
    return {"dataset": dataset.name, "fingerprint_train": dataset.fingerprint("train"),
            "fingerprint_test": dataset.fingerprint("test"), "n_train": int(dataset.x_train.shape[0]),
            "n_test": int(dataset.x_test.shape[0]), "num_classes": int(dataset.num_classes),
            "dataset_options": dict(dataset.options)}
