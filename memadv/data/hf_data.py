"""A user's own images in the Hugging Face ``datasets`` formats (``--dataset hf``), read with pyarrow
only (the ``datasets`` library is not needed).

``--data-root DIR`` is either

* a folder of Hub-style parquet shards: ``train-*.parquet`` and ``test-*.parquet`` (``validation-*``
  when there is no test shard), in ``DIR`` or in one sub-folder of it (the Hub puts them under
  ``data/`` or ``<config>/``); shards are read in sorted name order; or
* a ``save_to_disk`` folder: ``DIR/dataset_dict.json`` and per split ``DIR/<split>/state.json``
  (its ``_data_files`` list the Arrow IPC *stream* files in order) and ``dataset_info.json``.

The image column holds the ``datasets.Image`` struct ``{bytes, path}`` (encoded PNG/JPEG bytes;
``path`` is the original file name, kept as the example's path); the label column holds integers.
Both are found by name (image: ``img``, ``image``; label: ``label``, ``fine_label``, ``labels``) or
given (``--image-column``, ``--label-column``). Class names come from the label column's
``ClassLabel`` feature: in a parquet file the schema metadata key ``huggingface`` holds
``{"info": {"features": {...}}}``; in a ``save_to_disk`` folder ``dataset_info.json`` holds
``{"features": {...}}``. Without one, the classes are 0..max label. An example's id is its row in
the split (shards concatenated in order), as ``datasets`` numbers them. A row whose image has no
bytes (only a path) is read from that path relative to ``DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from memadv.data.dataset import Dataset
from memadv.data.imagefolder import check_image_size
from memadv.data.own_images import Example, decode_examples, files_key, load_own, stat_key
from memadv.errors import DatasetError

IMAGE_COLUMNS = ("img", "image")
LABEL_COLUMNS = ("label", "fine_label", "labels")
TEST_SPLITS = ("test", "validation")
LAYOUT = ("DIR/{train,test}-*.parquet (Hub shards, also under one sub-folder such as DIR/data/) or a "
          "save_to_disk folder (DIR/dataset_dict.json, DIR/train/state.json, DIR/test/state.json)")


def _shards(root: Path) -> dict[str, list[Path]] | None:
    """Split -> parquet shards, None when ``root`` holds none."""
    folders = sorted({p.parent for p in list(root.glob("*.parquet")) + list(root.glob("*/*.parquet"))})
    found: list[tuple[Path, dict[str, list[Path]]]] = []
    for folder in folders:
        per = {s: sorted(folder.glob(f"{s}-*.parquet")) for s in ("train", *TEST_SPLITS)}
        if per["train"]:
            found.append((folder, per))
    if not found:
        return None
    if len(found) > 1:
        raise DatasetError(f"{str(root)!r} holds train-*.parquet shards in {len(found)} folders "
                           f"({', '.join(str(f) for f, _ in found[:3])}); pass one of them as --data-root")
    per = found[0][1]
    test = next((s for s in TEST_SPLITS if per[s]), None)
    if test is None:
        raise DatasetError(f"{str(found[0][0])!r} has train-*.parquet but no test-*.parquet or validation-*.parquet shards")
    return {"train": per["train"], "test": per[test]}


def _saved_splits(root: Path) -> dict[str, list[Path]]:
    """Split -> Arrow stream files of a ``save_to_disk`` folder."""
    dd = root / "dataset_dict.json"
    if not dd.is_file():
        raise DatasetError(f"no parquet shards and no dataset_dict.json in {str(root)!r}; expected {LAYOUT}")
    names = _json(dd).get("splits")
    if not isinstance(names, list):
        raise DatasetError(f"{str(dd)!r} has no 'splits' list")
    test = next((s for s in TEST_SPLITS if s in names), None)
    if "train" not in names or test is None:
        raise DatasetError(f"{str(dd)!r} lists splits {names}; a train and a test (or validation) split are needed")
    out: dict[str, list[Path]] = {}
    for split, name in (("train", "train"), ("test", test)):
        state_path = root / name / "state.json"
        state = _json(state_path)
        if state.get("_indices_data_files"):
            raise DatasetError(f"{str(state_path)!r} uses an indices mapping; save the data set with "
                               f"flatten_indices() first")
        files = state.get("_data_files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and "filename" in f for f in files):
            raise DatasetError(f"{str(state_path)!r} has no '_data_files' list of {{'filename': ...}}")
        out[split] = [root / name / str(f["filename"]) for f in files]
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"missing file {str(path)!r}; expected {LAYOUT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read {str(path)!r} as JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{str(path)!r} does not hold a JSON object")
    return obj


def _read_table(path: Path) -> Any:
    """The pyarrow table of one parquet shard or Arrow stream file; DatasetError naming it if unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        with pa.memory_map(str(path), "r") as source:
            return pa.ipc.open_stream(source).read_all()
    except FileNotFoundError:
        raise DatasetError(f"missing file {str(path)!r}; expected {LAYOUT}") from None
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"cannot read {str(path)!r} ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None


def _features(table: Any, path: Path) -> dict[str, Any]:
    """The ``features`` of the Hugging Face metadata of a shard (parquet or Arrow schema), or of the
    ``dataset_info.json`` beside a ``save_to_disk`` file; empty when there is none."""
    meta = table.schema.metadata or {}
    raw = meta.get(b"huggingface")
    if raw is not None:
        try:
            info = json.loads(raw)
        except json.JSONDecodeError:
            raise DatasetError(f"{str(path)!r}: the 'huggingface' schema metadata is not JSON") from None
        feats = (info.get("info") or {}).get("features") if isinstance(info, dict) else None
        if isinstance(feats, dict):
            return feats
    info_path = path.parent / "dataset_info.json"
    if path.suffix == ".arrow" and info_path.is_file():
        feats = _json(info_path).get("features")
        return feats if isinstance(feats, dict) else {}
    return {}


def _column(table: Any, given: str | None, candidates: tuple[str, ...], what: str, option: str, path: Path) -> str:
    names = list(table.column_names)
    if given is not None:
        if given not in names:
            raise DatasetError(f"{str(path)!r} has no column {given!r} ({option}); its columns: {', '.join(names)}")
        return given
    found = [c for c in candidates if c in names]
    if not found:
        raise DatasetError(f"{str(path)!r} has no {what} column named {' or '.join(candidates)}; name it with "
                           f"{option} (its columns: {', '.join(names)})")
    return found[0]


def load_hf(root: Path, image_size: list[int] | None = None, image_column: str | None = None,
            label_column: str | None = None, cache_dir: str | Path | None = None) -> Dataset:
    """The Hugging Face data set under ``root`` as a Dataset (module docstring for the layouts)."""
    root = Path(root)
    size = check_image_size(image_size)
    splits = _shards(root)
    if splits is None:
        splits = _saved_splits(root)
    files = [f for s in ("train", "test") for f in splits[s]]
    key = files_key("hf", {"image_size": size, "image_column": image_column, "label_column": label_column},
                    [_stat(f, root) for f in files])

    def build() -> dict[str, np.ndarray]:
        examples: dict[str, list[Example]] = {}
        names: list[str] | None = None
        max_label = -1
        for split in ("train", "test"):
            examples[split] = []
            for path in splits[split]:
                table = _read_table(path)
                img = _column(table, image_column, IMAGE_COLUMNS, "image", "--image-column", path)
                lab = _column(table, label_column, LABEL_COLUMNS, "label", "--label-column", path)
                if names is None:
                    feat = _features(table, path).get(lab) or {}
                    if feat.get("_type") == "ClassLabel" and isinstance(feat.get("names"), list):
                        names = [str(n) for n in feat["names"]]
                rows = _rows(table, img, lab, path, root, len(examples[split]))
                examples[split] += rows
                max_label = max([max_label] + [e.label for e in rows])
        class_names = names if names is not None else [str(k) for k in range(max_label + 1)]
        return decode_examples(examples, class_names, size)

    return load_own("hf", key, build, cache_dir)


def _stat(path: Path, root: Path) -> tuple[str, int, int]:
    try:
        return stat_key(path, str(path.relative_to(root)))
    except FileNotFoundError:
        raise DatasetError(f"missing file {str(path)!r}; expected {LAYOUT}") from None


def _rows(table: Any, img: str, lab: str, path: Path, root: Path, start: int) -> list[Example]:
    """The examples of one shard; ``start`` is the id of its first row within the split."""
    import pyarrow as pa

    labels = table.column(lab)
    if not pa.types.is_integer(labels.type):
        raise DatasetError(f"{str(path)!r}: label column {lab!r} holds {labels.type}, not integers")
    if labels.null_count:
        raise DatasetError(f"{str(path)!r}: label column {lab!r} has {labels.null_count} missing values")
    images = table.column(img)
    if not pa.types.is_struct(images.type) or images.type.get_field_index("bytes") < 0:
        raise DatasetError(f"{str(path)!r}: image column {img!r} holds {images.type}, not the Image struct {{bytes, path}}")
    y = labels.to_numpy()
    out: list[Example] = []
    for i, cell in enumerate(images.to_pylist()):
        where = f"{path}: row {i}"
        data, name = (cell or {}).get("bytes"), (cell or {}).get("path") or ""
        if data is None and not name:
            raise DatasetError(f"{where}: image {img!r} has neither bytes nor a path")
        source: Path | bytes = data if data is not None else root / name
        out.append(Example(source, int(y[i]), str(name), where))
    return out
