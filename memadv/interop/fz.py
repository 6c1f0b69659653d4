"""Import and export of the estimates released by Feldman & Zhang (2020), pluskid.github.io/influence-memorization.

Released layouts (NumPy ``.npz``; ids are positions in the dataset's original order, as in memadv):

* ``infl-matrix`` (``cifar100_infl_matrix.npz``): ``tr_mem`` (n_train,), ``tr_labels`` (n_train,),
  ``tt_labels`` (n_test,), and for every class K: ``infl_matrix_class{K}`` (n_train_K, n_test_K),
  ``tr_classidx_{K}`` (n_train_K,) and ``tt_classidx_{K}`` (n_test_K,), the train and test ids of
  class K in the order of the matrix rows and columns.
* ``high-infl-pairs`` (``cifar100_high_infl_pairs_infl0.15_mem0.25.npz``,
  ``imagenet_high_infl_pairs_infl0.15_mem0.25.npz``): ``tr_idx``, ``tt_idx``, ``infl``, ``mem``
  (equal length; only pairs above the thresholds in the file name).
* ``imagenet-index`` (``imagenet_index.npz``): ``tr_filenames``, ``tr_labels``, ``tt_filenames``,
  ``tt_labels``, ``tr_mem``.

Imported scores follow memadv's schema (:mod:`memadv.scores.schema`) with ``source="feldman-zhang"``,
``se_known=False``: standard errors, ``p_in``/``p_out`` and test accuracies are NaN, counts
(``n_in``, ``n_out``, ``n_models``) are -1 (unknown). Fingerprints are computed from the labels in
the file; the pairs files carry no labels, so their labels are -1 and their fingerprints are absent
unless ``--data-root`` supplies the dataset. ImageNet file names go to ``scores/filenames.parquet``
(``split, idx, filename``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.data.dataset import Dataset, fingerprint_labels
from memadv.interop.fz_raw import FZ_SOURCE, read_raw
from memadv.files.npz import load_npz
from memadv.data.registry import DATASETS
from memadv.scores.schema import INFL_COLUMNS, MEM_COLUMNS, TEST_ACC_COLUMNS, Scores, write_scores
from memadv.files.atomic import atomic_dir, check_output, mark_output
from memadv.files.tables import write_table
from memadv.config import option
from memadv.errors import ConfigError, FingerprintMismatchError, SchemaError, UnknownChoiceError
from memadv.layout import FZ_FILENAMES_FILE, RunLayout

MATRIX_KEYS = ("tr_mem", "tr_labels", "tt_labels")
PAIRS_KEYS = ("tr_idx", "tt_idx", "infl", "mem")
INDEX_KEYS = ("tr_filenames", "tr_labels", "tt_filenames", "tt_labels", "tr_mem")
# datasets of the release that memadv's registry does not load (import only, no --data-root check)
EXTRA_DATASETS = ("imagenet",)
# (n_train, n_test) of the released datasets and of memadv's fixed-size ones: ids of files without
# labels are range-checked, and a whole-set file of another size is refused (a wrong --dataset)
KNOWN_SIZES = {"cifar100": (50000, 10000), "cifar10": (50000, 10000), "imagenet": (1281167, 50000),
               "fashion-mnist": (60000, 10000), "mnist": (60000, 10000), "digits": (1437, 360)}
_CLASS_KEY = re.compile(r"^(infl_matrix_class|tr_classidx_|tt_classidx_)(\d+)$")


def dataset_choices() -> tuple[str, ...]:
    return tuple(sorted(set(DATASETS) | set(EXTRA_DATASETS)))


@dataclass
class ImportFzConfig:
    """``memadv import-fz``'s options (TOML table ``[import-fz]``)."""

    dataset: str | None = option(None, "dataset the file describes (ids are positions in its original order); "
                                       "required", choices=dataset_choices())
    data_root: str | None = option(None, "folder holding the dataset's files; when given, labels and ids are checked "
                                         "against it (and the pairs files, which carry no labels, get labels and "
                                         "fingerprints from it)")
    overwrite: bool = option(False, "replace scores already in OUT/scores/", switch=True)

    def __post_init__(self) -> None:
        if self.dataset is None:
            raise ConfigError(f"--dataset is required; one of: {', '.join(dataset_choices())}")
        if self.dataset not in dataset_choices():
            raise UnknownChoiceError("dataset", self.dataset, dataset_choices())


def detect_layout(arrays: dict[str, np.ndarray], name: str = "file") -> str:
    keys = set(arrays)
    if "infl_matrix_class0" in keys or any(k.startswith("infl_matrix_class") for k in keys) or \
            (set(MATRIX_KEYS) <= keys and "tr_filenames" not in keys):
        return "infl-matrix"
    if keys & {"tr_filenames", "tt_filenames"}:
        return "imagenet-index"
    if keys & set(PAIRS_KEYS):
        return "high-infl-pairs"
    raise SchemaError(f"{name} has keys {sorted(keys)}, which match no released Feldman & Zhang layout "
                      f"(infl matrix: {', '.join(MATRIX_KEYS)}, infl_matrix_class{{K}}, tr_classidx_{{K}}, "
                      f"tt_classidx_{{K}}; pairs: {', '.join(PAIRS_KEYS)}; index: {', '.join(INDEX_KEYS)})")


def _need(arrays: dict[str, np.ndarray], keys: tuple[str, ...], name: str, layout: str) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise SchemaError(f"{name} ({layout} layout) lacks keys {missing}")


def _vector(arrays: dict[str, np.ndarray], key: str, name: str, *, integer: bool = False,
            length: int | None = None) -> np.ndarray:
    a = arrays[key]
    if a.ndim != 1:
        raise SchemaError(f"{name}: {key} must be 1-D, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise SchemaError(f"{name}: {key} has {a.shape[0]} entries, expected {length}")
    if integer:
        if not np.issubdtype(a.dtype, np.integer):
            raise SchemaError(f"{name}: {key} must hold integers, got {a.dtype}")
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise SchemaError(f"{name}: {key} must hold numbers, got {a.dtype}")
    return a.astype(np.float64)


def _check_unit(values: np.ndarray, key: str, name: str) -> None:
    finite = values[np.isfinite(values)]
    if np.isinf(values).any() or (finite.size and (finite.min() < -1 - 1e-9 or finite.max() > 1 + 1e-9)):
        raise SchemaError(f"{name}: {key} must lie in [-1, 1] (a difference of probabilities)")


def _check_labels(labels: np.ndarray, key: str, name: str) -> None:
    if labels.size and labels.min() < 0:
        raise SchemaError(f"{name}: {key} holds negative labels")


def _mem_table(idx: np.ndarray, labels: np.ndarray, mem: np.ndarray) -> pd.DataFrame:
    n = len(idx)
    return pd.DataFrame({"idx": idx.astype(np.int64), "label": labels.astype(np.int64), "mem": mem.astype(np.float64),
                         "mem_se": np.full(n, np.nan), "p_in": np.full(n, np.nan), "p_out": np.full(n, np.nan),
                         "n_in": np.full(n, -1, np.int64), "n_out": np.full(n, -1, np.int64)})[MEM_COLUMNS]


def _infl_table(tr: np.ndarray, tt: np.ndarray, tr_lab: np.ndarray, tt_lab: np.ndarray,
                infl: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"train_idx": tr.astype(np.int64), "test_idx": tt.astype(np.int64),
                         "train_label": tr_lab.astype(np.int64), "test_label": tt_lab.astype(np.int64),
                         "infl": infl.astype(np.float64), "infl_se": np.full(len(tr), np.nan)})[INFL_COLUMNS]


def _test_acc_table(idx: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    n = len(idx)
    return pd.DataFrame({"idx": idx.astype(np.int64), "label": labels.astype(np.int64),
                         "p_correct": np.full(n, np.nan), "n_models": np.full(n, -1, np.int64)})[TEST_ACC_COLUMNS]


def _compare_labels(file_labels: np.ndarray, dataset: Dataset, split: str, name: str) -> None:
    ds = dataset.labels(split).numpy()
    if ds.shape[0] != file_labels.shape[0]:
        raise FingerprintMismatchError(f"{name} has {file_labels.shape[0]} {split} labels, but {dataset.name!r} under "
                                       f"--data-root has {ds.shape[0]} {split} examples")
    bad = np.flatnonzero(ds != file_labels)
    if bad.size:
        i = int(bad[0])
        raise FingerprintMismatchError(f"{split} labels in {name} disagree with {dataset.name!r} under --data-root at "
                                       f"{bad.size} of {ds.shape[0]} positions (first: id {i}, file {int(file_labels[i])}"
                                       f", dataset {int(ds[i])}); the file is for another dataset or order")


def _base_meta(dataset_name: str, layout: str, name: str) -> dict[str, Any]:
    return {"dataset": dataset_name, "n_models": -1, "source": FZ_SOURCE, "se_known": False, "complete": True,
            "fz_layout": layout, "fz_file": name}


def _with_fingerprints(meta: dict[str, Any], dataset_name: str, tr_labels: np.ndarray, tt_labels: np.ndarray,
                       num_classes: int) -> dict[str, Any]:
    return {**meta, "fingerprint_train": fingerprint_labels(dataset_name, "train", tr_labels),
            "fingerprint_test": fingerprint_labels(dataset_name, "test", tt_labels),
            "n_train": int(tr_labels.shape[0]), "n_test": int(tt_labels.shape[0]), "num_classes": int(num_classes)}


def _read_matrix(a: dict[str, np.ndarray], dataset_name: str, name: str) -> Scores:
    layout = "infl-matrix"
    _need(a, MATRIX_KEYS, name, layout)
    tr_labels = _vector(a, "tr_labels", name, integer=True)
    tt_labels = _vector(a, "tt_labels", name, integer=True)
    tr_mem = _vector(a, "tr_mem", name, length=tr_labels.shape[0])
    _check_labels(tr_labels, "tr_labels", name)
    _check_labels(tt_labels, "tt_labels", name)
    _check_unit(tr_mem, "tr_mem", name)
    n_tr, n_te = tr_labels.shape[0], tt_labels.shape[0]
    classes = int(max(tr_labels.max(initial=-1), tt_labels.max(initial=-1))) + 1
    extra = sorted({int(m.group(2)) for k in a if (m := _CLASS_KEY.match(k))} - set(range(classes)))
    if extra:
        raise SchemaError(f"{name} has per-class keys for class {extra[0]}, which no label in the file names")
    tr_parts, tt_parts, infl_parts, lab_parts = [], [], [], []
    seen_tr = np.zeros(n_tr, bool)
    seen_tt = np.zeros(n_te, bool)
    for k in range(classes):
        keys = (f"infl_matrix_class{k}", f"tr_classidx_{k}", f"tt_classidx_{k}")
        _need(a, keys, name, layout)
        tri = _vector(a, keys[1], name, integer=True)
        tti = _vector(a, keys[2], name, integer=True)
        mat = a[keys[0]]
        if mat.ndim != 2 or mat.shape != (tri.shape[0], tti.shape[0]):
            raise SchemaError(f"{name}: {keys[0]} has shape {mat.shape}, expected ({tri.shape[0]}, {tti.shape[0]}) "
                              f"from {keys[1]} and {keys[2]}")
        if not np.issubdtype(mat.dtype, np.floating) and not np.issubdtype(mat.dtype, np.integer):
            raise SchemaError(f"{name}: {keys[0]} must hold numbers, got {mat.dtype}")
        for ids, n, labels, seen, key in ((tri, n_tr, tr_labels, seen_tr, keys[1]),
                                          (tti, n_te, tt_labels, seen_tt, keys[2])):
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise SchemaError(f"{name}: {key} holds ids outside [0, {n})")
            if (labels[ids] != k).any():
                raise SchemaError(f"{name}: {key} lists ids whose label is not {k}")
            if seen[ids].any() or len(np.unique(ids)) != ids.size:
                raise SchemaError(f"{name}: {key} repeats ids")
            seen[ids] = True
        m = mat.astype(np.float64)
        _check_unit(m, keys[0], name)
        tr_parts.append(np.repeat(tri, tti.shape[0]))
        tt_parts.append(np.tile(tti, tri.shape[0]))
        infl_parts.append(m.reshape(-1))
        lab_parts.append(np.full(m.size, k, np.int64))
    if not seen_tr.all() or not seen_tt.all():
        split = "train" if not seen_tr.all() else "test"
        first = int(np.flatnonzero(~(seen_tr if split == "train" else seen_tt))[0])
        raise SchemaError(f"{name}: {split} id {first} is in no {'tr' if split == 'train' else 'tt'}_classidx_K")
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    labs = cat(lab_parts, np.int64)
    infl = _infl_table(cat(tr_parts, np.int64), cat(tt_parts, np.int64), labs, labs, cat(infl_parts, np.float64))
    meta = _with_fingerprints(_base_meta(dataset_name, layout, name), dataset_name, tr_labels, tt_labels, classes)
    return Scores(mem=_mem_table(np.arange(n_tr), tr_labels, tr_mem), infl=infl,
                  test_acc=_test_acc_table(np.arange(n_te), tt_labels), meta=meta)


def _thresholds_from_name(name: str) -> dict[str, float]:
    m = re.search(r"infl([0-9.]+?)_mem([0-9.]+?)(?:\.npz)?$", name)
    if not m:
        return {}
    try:
        return {"fz_min_infl": float(m.group(1)), "fz_min_mem": float(m.group(2))}
    except ValueError:
        return {}


def _read_pairs(a: dict[str, np.ndarray], dataset_name: str, name: str, dataset: Dataset | None) -> Scores:
    layout = "high-infl-pairs"
    _need(a, PAIRS_KEYS, name, layout)
    tr = _vector(a, "tr_idx", name, integer=True)
    n = tr.shape[0]
    tt = _vector(a, "tt_idx", name, integer=True, length=n)
    infl = _vector(a, "infl", name, length=n)
    mem = _vector(a, "mem", name, length=n)
    _check_unit(infl, "infl", name)
    _check_unit(mem, "mem", name)
    sizes = ((dataset.x_train.shape[0], dataset.x_test.shape[0]) if dataset is not None
             else KNOWN_SIZES.get(dataset_name))
    for ids, key, lim in ((tr, "tr_idx", sizes[0] if sizes else None), (tt, "tt_idx", sizes[1] if sizes else None)):
        if ids.size and (ids.min() < 0 or (lim is not None and ids.max() >= lim)):
            raise SchemaError(f"{name}: {key} holds ids outside [0, {lim if lim is not None else 'n'}) "
                              f"for {dataset_name!r}")
    pair_keys = tr * (int(tt.max(initial=0)) + 1) + tt
    if len(np.unique(pair_keys)) != n:
        raise SchemaError(f"{name}: repeated (tr_idx, tt_idx) pairs")
    u_tr, first = np.unique(tr, return_index=True)
    mem_u = mem[first]
    back = np.searchsorted(u_tr, tr)
    same = (mem == mem_u[back]) | (np.isnan(mem) & np.isnan(mem_u[back]))
    if not same.all():
        raise SchemaError(f"{name}: training id {int(tr[~same][0])} has different mem values in different rows")
    meta = {**_base_meta(dataset_name, layout, name), "coverage": "high-influence-pairs",
            **_thresholds_from_name(name)}
    if dataset is not None:
        ytr, yte = dataset.y_train.numpy(), dataset.y_test.numpy()
        meta = _with_fingerprints(meta, dataset_name, ytr, yte, dataset.num_classes)
        tr_lab, tt_lab, mem_lab = ytr[tr], yte[tt], ytr[u_tr]
    else:
        tr_lab = tt_lab = np.full(n, -1, np.int64)
        mem_lab = np.full(u_tr.shape[0], -1, np.int64)
        if sizes:
            meta.update({"n_train": int(sizes[0]), "n_test": int(sizes[1])})
    u_tt, first_tt = np.unique(tt, return_index=True)
    return Scores(mem=_mem_table(u_tr, mem_lab, mem_u), infl=_infl_table(tr, tt, tr_lab, tt_lab, infl),
                  test_acc=_test_acc_table(u_tt, tt_lab[first_tt]), meta=meta)


def _read_index(a: dict[str, np.ndarray], dataset_name: str, name: str) -> tuple[Scores, pd.DataFrame]:
    layout = "imagenet-index"
    _need(a, INDEX_KEYS, name, layout)
    tr_labels = _vector(a, "tr_labels", name, integer=True)
    tt_labels = _vector(a, "tt_labels", name, integer=True)
    _check_labels(tr_labels, "tr_labels", name)
    _check_labels(tt_labels, "tt_labels", name)
    tr_mem = _vector(a, "tr_mem", name, length=tr_labels.shape[0])
    _check_unit(tr_mem, "tr_mem", name)
    names = {}
    for key, n in (("tr_filenames", tr_labels.shape[0]), ("tt_filenames", tt_labels.shape[0])):
        f = a[key]
        if f.ndim != 1 or f.shape[0] != n:
            raise SchemaError(f"{name}: {key} has shape {f.shape}, expected ({n},)")
        if f.dtype.kind not in "US":
            raise SchemaError(f"{name}: {key} must hold strings, got {f.dtype}")
        names[key] = np.char.decode(f, "utf-8") if f.dtype.kind == "S" else f
    classes = int(max(tr_labels.max(initial=-1), tt_labels.max(initial=-1))) + 1
    meta = _with_fingerprints(_base_meta(dataset_name, layout, name), dataset_name, tr_labels, tt_labels, classes)
    meta["has_infl"] = False
    files = pd.concat([pd.DataFrame({"split": "train", "idx": np.arange(tr_labels.shape[0], dtype=np.int64),
                                     "filename": names["tr_filenames"].astype(str)}),
                       pd.DataFrame({"split": "test", "idx": np.arange(tt_labels.shape[0], dtype=np.int64),
                                     "filename": names["tt_filenames"].astype(str)})], ignore_index=True)
    scores = Scores(mem=_mem_table(np.arange(tr_labels.shape[0]), tr_labels, tr_mem),
                    infl=_infl_table(*(np.zeros(0, np.int64),) * 4, np.zeros(0)),
                    test_acc=_test_acc_table(np.arange(tt_labels.shape[0]), tt_labels), meta=meta)
    return scores, files


def read_fz(path: str | Path, dataset_name: str, dataset: Dataset | None = None
            ) -> tuple[Scores, pd.DataFrame | None]:
    """Parse a released file into memadv scores (and ImageNet file names), checking every key and shape.

    With ``dataset`` (the local copy from ``--data-root``), labels in the file must equal its labels
    and ids must be in range. Nothing is written.
    """
    if dataset_name not in dataset_choices():
        raise UnknownChoiceError("dataset", dataset_name, dataset_choices())
    p = Path(path)
    a = load_npz(p)
    layout = detect_layout(a, p.name)
    files = None
    if layout == "infl-matrix":
        scores = _read_matrix(a, dataset_name, p.name)
    elif layout == "high-infl-pairs":
        scores = _read_pairs(a, dataset_name, p.name, dataset)
    else:
        scores, files = _read_index(a, dataset_name, p.name)
    if dataset is not None and layout != "high-infl-pairs":
        _compare_labels(scores.mem["label"].to_numpy(np.int64), dataset, "train", p.name)
        _compare_labels(scores.test_acc["label"].to_numpy(np.int64), dataset, "test", p.name)
    elif layout != "high-infl-pairs" and dataset_name in KNOWN_SIZES:
        have, want = (len(scores.mem), len(scores.test_acc)), KNOWN_SIZES[dataset_name]
        if have != want:
            raise SchemaError(f"{p.name} describes {have[0]:,} training and {have[1]:,} test examples, but "
                              f"{dataset_name} has {want[0]:,} and {want[1]:,}: is --dataset right?")
    return scores, files


def import_fz(path: str | Path, out: str | Path, dataset_name: str, dataset: Dataset | None = None,
              overwrite: bool = False) -> Path:
    """Import a released file, or a folder of raw per-model files (``fz_raw``), into ``out/scores/``
    (all or nothing); returns the scores folder. Raises OutputRefusedError when ``out`` is not a new,
    empty or memadv run folder, SchemaError / UnsafeInputError for a file that cannot be read safely."""
    out = Path(out)
    check_output(out, "run")  # before reading: refuse a file or a foreign folder first
    target = RunLayout(out).scores
    if RunLayout(out).mem.exists() and not overwrite:
        raise SchemaError(f"{target} already holds scores; pass --overwrite to replace them")
    if Path(path).is_dir():  # a folder of per-model aux_arrays.npz (memadv.interop.fz_raw)
        scores, files = read_raw(path, dataset_name, dataset), None
    else:
        scores, files = read_fz(path, dataset_name, dataset)
    mark_output(out, "run")  # only after the file was read: a refused import leaves nothing behind
    with atomic_dir(target, "scores") as tmp:
        if files is not None:
            write_table(tmp / FZ_FILENAMES_FILE, files, scores.meta)
        write_scores(tmp, scores)
    return target


# ---------------------------------------------------------------------------------------------
# export


