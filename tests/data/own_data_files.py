"""Writers of a user's own data sets for the tests: real files through Pillow (PNG, JPEG), pyarrow
(Hub-schema parquet, ``save_to_disk`` Arrow streams) and numpy (.npz); no memadv code is used, so
what memadv reads back is checked against an independent writing and reading."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CLASSES = ["ant", "bee", "cat"]


def random_images(n: int, seed: int, shape: tuple[int, ...] = (8, 8, 3)) -> np.ndarray:
    """uint8 (n, H, W[, C]) images with a different brightness per image (so classes can be learnt)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def write_imagefolder(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                      classes: list[str] = CLASSES, ext: str = ".png", test_folder: str = "test") -> dict[str, list[str]]:
    """Write ``root/<split>/<class>/<k:03d><ext>``; returns the relative paths in sorted order per split."""
    written: dict[str, list[str]] = {}
    for split, x in images.items():
        folder = "train" if split == "train" else test_folder
        rels = []
        for k, (img, y) in enumerate(zip(x, labels[split])):
            rel = f"{folder}/{classes[int(y)]}/{k:03d}{ext}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel, quality=95) if ext.lower() in (".jpg", ".jpeg") else \
                Image.fromarray(img).save(root / rel)
            rels.append(rel)
        written[split] = sorted(rels)
    return written


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def hf_features(classes: list[str], image_column: str = "img", label_column: str = "label") -> dict:
    """The ``features`` dict the ``datasets`` library stores (Image and ClassLabel features)."""
    return {image_column: {"_type": "Image"}, label_column: {"names": classes, "_type": "ClassLabel"}}


def hf_table(x: np.ndarray, y: np.ndarray, classes: list[str] | None, image_column: str = "img",
             label_column: str = "label", paths: list[str] | None = None) -> pa.Table:
    """A table with the Hub schema: image struct {bytes, path}, int64 labels, ``huggingface`` metadata."""
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": png_bytes(img), "path": None if paths is None else paths[i]} for i, img in enumerate(x)]
    table = pa.table({image_column: pa.array(cells, type=struct), label_column: pa.array(y.astype(np.int64))})
    if classes is not None:
        meta = {"info": {"features": hf_features(classes, image_column, label_column)}}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()})
    return table


def write_hub_parquet(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                      classes: list[str] | None = CLASSES, shards: int = 2, **kw) -> None:
    """``root/data/<split>-0000k-of-0000n.parquet`` as the Hub distributes a data set."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, x in images.items():
        parts = np.array_split(np.arange(x.shape[0]), shards)
        for k, idx in enumerate(parts):
            pq.write_table(hf_table(x[idx], labels[split][idx], classes, **kw),
                           root / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet")


def write_save_to_disk(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                       classes: list[str] = CLASSES) -> None:
    """A ``DatasetDict.save_to_disk`` folder: dataset_dict.json, <split>/{data-*.arrow (IPC stream),
    dataset_info.json, state.json}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(images)}))
    for split, x in images.items():
        d = root / split
        d.mkdir()
        table = hf_table(x, labels[split], None)
        files = []
        for k, idx in enumerate(np.array_split(np.arange(x.shape[0]), 2)):
            name = f"data-{k:05d}-of-00002.arrow"
            with pa.OSFile(str(d / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table.take(pa.array(idx)))
            files.append({"filename": name})
        (d / "state.json").write_text(json.dumps({"_data_files": files, "_split": split}))
        (d / "dataset_info.json").write_text(json.dumps({"features": hf_features(classes)}))
