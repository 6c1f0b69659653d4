"""Export of memadv scores in Feldman & Zhang's released layout (``memadv export-fz``): the inverse of
:func:`memadv.interop.fz.read_fz`, written atomically, never over a file memadv did not write."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memadv.config import option
from memadv.files.atomic import atomic_path
from memadv.scores.schema import Scores
from memadv.errors import OutputRefusedError, SchemaError


@dataclass
class ExportFzConfig:
    """``memadv export-fz``'s options (TOML table ``[export-fz]``)."""

    allow_partial: bool = option(False, "export scores aggregated from an unfinished estimate (refused by default)",
                                 switch=True)


# Key of the .npz files written by export_fz: the marker that lets a later export replace the file.
EXPORT_MARKER = "memadv_export_fz"



def _check_export_target(path: Path) -> None:
    """Refuse to replace anything but a file an earlier ``export_fz`` wrote (it holds EXPORT_MARKER)."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise OutputRefusedError(f"{str(path)!r} exists and is not a file; choose another --out")
    try:
        with np.load(path, allow_pickle=False) as z:
            ours = EXPORT_MARKER in z.files
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        ours = False
    if not ours:
        raise OutputRefusedError(f"{str(path)!r} exists and was not written by memadv export-fz; memadv will not "
                                 f"replace it (choose another --out)")



def scores_to_fz(scores: Scores) -> tuple[dict[str, np.ndarray], int]:
    """memadv scores as the arrays of ``cifar100_infl_matrix.npz``; also returns the number of
    same-class pairs missing from ``infl`` (NaN in the matrices)."""
    mem = scores.mem.sort_values("idx")
    ta = scores.test_acc.sort_values("idx")
    n_tr, n_te = len(mem), len(ta)
    if n_tr == 0 or not np.array_equal(mem["idx"].to_numpy(np.int64), np.arange(n_tr)):
        raise SchemaError("export needs one mem row per training example with ids 0..n-1 (the whole training set)")
    if n_te == 0 or not np.array_equal(ta["idx"].to_numpy(np.int64), np.arange(n_te)):
        raise SchemaError("export needs one test_acc row per test example with ids 0..n-1 (the whole test set)")
    tr_labels = mem["label"].to_numpy(np.int64)
    tt_labels = ta["label"].to_numpy(np.int64)
    if (tr_labels < 0).any() or (tt_labels < 0).any():
        raise SchemaError("export needs known labels (these scores have label -1)")
    classes = int(scores.meta.get("num_classes") or 0)
    classes = max(classes, int(max(tr_labels.max(), tt_labels.max())) + 1)
    arrays: dict[str, np.ndarray] = {"tr_mem": mem["mem"].to_numpy(np.float64), "tr_labels": tr_labels,
                                     "tt_labels": tt_labels}
    infl = scores.infl
    infl = infl[infl["train_label"].to_numpy(np.int64) == infl["test_label"].to_numpy(np.int64)]
    tr_pos = np.zeros(n_tr, np.int64)
    tt_pos = np.zeros(n_te, np.int64)
    missing = 0
    by_class = dict(tuple(infl.groupby("train_label"))) if len(infl) else {}
    for k in range(classes):
        tri = np.flatnonzero(tr_labels == k).astype(np.int64)
        tti = np.flatnonzero(tt_labels == k).astype(np.int64)
        tr_pos[tri] = np.arange(tri.size)
        tt_pos[tti] = np.arange(tti.size)
        mat = np.full((tri.size, tti.size), np.nan)
        part = by_class.get(k)
        if part is not None and len(part):
            r = part["train_idx"].to_numpy(np.int64)
            c = part["test_idx"].to_numpy(np.int64)
            if r.max() >= n_tr or c.max() >= n_te:
                raise SchemaError("infl.parquet names ids outside the training or test set")
            mat[tr_pos[r], tt_pos[c]] = part["infl"].to_numpy(np.float64)
        missing += int(np.isnan(mat).sum())
        arrays[f"infl_matrix_class{k}"] = mat
        arrays[f"tr_classidx_{k}"] = tri
        arrays[f"tt_classidx_{k}"] = tti
    return arrays, missing



def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)



def export_fz(scores: Scores, path: str | Path) -> int:
    """Write ``scores`` in the ``cifar100_infl_matrix.npz`` layout (atomically); returns missing pairs.

    The file carries an extra key ``EXPORT_MARKER`` so that a later export may replace it; any other
    existing ``path`` (a folder, a released file, an unrelated file) raises OutputRefusedError.
    """
    _check_export_target(Path(path))
    arrays, missing = scores_to_fz(scores)
    write_npz(path, {**arrays, EXPORT_MARKER: np.array("memadv export-fz")})
    return missing
