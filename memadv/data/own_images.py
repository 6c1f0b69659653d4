"""Decoding and assembling a user's own images (``imagefolder``, ``hf``, ``arrays``) into a Dataset.

The three loaders (:mod:`memadv.data.imagefolder`, :mod:`memadv.data.hf_data`,
:mod:`memadv.data.arrays`) only find their examples: a split is a list of :class:`Example`
(image source, label, relative path). This module does what they share:

* decoding in worker processes (:func:`decode`), each image to grey (H, W) or colour (H, W, 3) uint8;
  ``image_size`` (H, W) resizes every image once (PIL bilinear, as torchvision's ``Resize``);
* one size for all images (mixed sizes without ``image_size`` are a one-line DatasetError naming
  the first file of another size) and one mode: the minority mode is converted to the majority
  (grey -> colour by repeating the plane, colour -> grey by ITU-R 601-2 luma, PIL's ``convert("L")``)
  and counted in a warning on stderr;
* a memory check before decoding (N x H x W x C bytes twice: decoded list and stacked tensor);
* the pixel digest that the fingerprints cover (:func:`memadv.data.dataset.fingerprint_labels`'s
  ``content``): sha256 of each split's uint8 (N, C, H, W) bytes, so one set of images and labels
  has one fingerprint whatever layout it came in;
* the decode cache: an uncompressed ``.npz`` (read back with ``allow_pickle=False``) named after
  the key of the files (names, sizes, modification times and the loader's options) in the run
  folder's ``data-cache/``, so later stages do not decode again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from memadv.cpus import usable_cpus
from memadv.data.dataset import Dataset
from memadv.errors import DatasetError

SPLITS = ("train", "test")
# The file name extensions torchvision's ImageFolder accepts (torchvision.datasets.folder.IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 2
_MEMO: dict[str, dict[str, np.ndarray]] = {}  # files key -> arrays of the last decode in this process


@dataclass(frozen=True)
class Example:
    """One image to decode: ``source`` is a file path or the encoded bytes; ``path`` the relative path
    written beside the id in split files (``""`` where the layout has none); ``where`` names it in errors."""

    source: Path | bytes
    label: int
    path: str
    where: str


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo, else all RAM)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(n: int, shape: Sequence[int], where: str) -> None:
    """DatasetError when ``n`` images of ``shape`` (H, W[, C]) need more than the available memory
    (twice the uint8 bytes: the decoded list and the stacked tensor exist at once)."""
    need = 2 * n * int(np.prod(shape))
    have = available_memory()
    if need > have:
        raise DatasetError(f"{where}: {n} images of {'x'.join(map(str, shape))} need {need / 2**30:.1f} GiB, more than "
                           f"the {have / 2**30:.1f} GiB of memory available; use --per-class on a smaller copy or --image-size")


def _decode_one(ex: Example, image_size: tuple[int, int] | None) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour uint8 of one image; DatasetError naming it when it cannot be read."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(ex.source) if isinstance(ex.source, bytes) else ex.source) as im:
            im.load()
            # palette, alpha, CMYK, 1-bit and 16-bit images become the nearest of the two modes
            grey = im.mode in ("L", "1", "I", "I;16", "F", "LA")
            im = im.convert("L" if grey else "RGB")
            if image_size is not None and im.size != (image_size[1], image_size[0]):
                im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"missing image {ex.where!r}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot decode image {ex.where!r} ({type(e).__name__}); the file is corrupt or not an image") from None


def _decode_chunk(examples: Sequence[Example], image_size: tuple[int, int] | None) -> list[np.ndarray]:
    return [_decode_one(ex, image_size) for ex in examples]


def decode(examples: Sequence[Example], image_size: tuple[int, int] | None, workers: int | None = None,
           chunk: int = 1024) -> list[np.ndarray]:
    """Every image of ``examples`` decoded (order kept); the first error is raised.

    Worker processes (default: the usable CPUs, at most 16), not threads: a small PNG or JPEG costs
    more Python per image than decoding, so threads serialise on the GIL (measured: 155 vs 165 us
    per 28x28 PNG with two threads vs one); forked workers scale like torchvision's DataLoader.
    """
    workers = min(16, usable_cpus()) if workers is None else workers
    # ``chunk`` examples per task: the pickled arrays coming back are small, the per-task overhead is not
    import multiprocessing

    # a daemonic worker (a multiprocessing.Pool task) may not start processes of its own
    if workers <= 1 or len(examples) < 2 * chunk or multiprocessing.current_process().daemon:
        return _decode_chunk(examples, image_size)
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("fork")  # the examples need not be re-imported
    except ValueError:  # pragma: no cover - no fork (not Linux): threads still overlap the decoding
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_decode_chunk, [examples[s:s + chunk] for s in range(0, len(examples), chunk)],
                                  [image_size] * (-(-len(examples) // chunk))))
        return [a for part in parts for a in part]
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        parts = pool.map(_decode_chunk, [examples[s:s + chunk] for s in range(0, len(examples), chunk)],
                         [image_size] * (-(-len(examples) // chunk)))
        return [a for part in parts for a in part]


def uint8_channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (n-1) std of uint8 (N, C, H, W) images in [0, 1] units, from an exact
    integer histogram per channel (the definition of :func:`memadv.data.dataset.channel_stats`, ten
    times faster on 60,000 images; the built-in loaders keep that one so their numbers stay as they were)."""
    means, stds = [], []
    n = x.shape[0] * x.shape[2] * x.shape[3]
    v = np.arange(256, dtype=np.float64) / 255.0
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].reshape(-1), minlength=256).astype(np.float64)
        mean = float(counts @ v) / n
        var = (float(counts @ (v * v)) - n * mean * mean) / max(n - 1, 1)
        means.append(mean)
        stds.append(max(float(np.sqrt(max(var, 0.0))), 1e-3))
    return tuple(means), tuple(stds)


def to_one_mode(images: dict[str, list[np.ndarray]], wheres: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Stack each split's decoded images into uint8 (N, C, H, W), all of one size and one mode.

    Raises DatasetError naming the first image whose size differs from the first image's (with
    ``image_size``, decoding has resized them all). Grey and colour mixed: the minority is
    converted to the majority (ties: colour) and the count is printed as a warning.
    """
    first = next((imgs[0] for imgs in images.values() if imgs), None)
    if first is None:
        raise DatasetError("the data set holds no images")
    size = first.shape[:2]
    n_colour = 0
    for split, imgs in images.items():
        for i, a in enumerate(imgs):
            if a.shape[:2] != size:
                raise DatasetError(f"{wheres[split][i]!r} is {a.shape[1]}x{a.shape[0]} but {_first_where(wheres)!r} is "
                                   f"{size[1]}x{size[0]}; pass --image-size H W to resize every image once")
            n_colour += a.ndim == 3
    total = sum(len(v) for v in images.values())
    colour = 2 * n_colour >= total
    minority = total - n_colour if colour else n_colour
    if minority:
        print(f"memadv: warning: {minority} of {total} images were {'grey' if colour else 'colour'} and were converted "
              f"to {'colour' if colour else 'grey'} (the majority mode)", file=sys.stderr)
    out: dict[str, np.ndarray] = {}
    c = 3 if colour else 1
    for split, imgs in images.items():
        x = np.empty((len(imgs), c, size[0], size[1]), dtype=np.uint8)
        for i, a in enumerate(imgs):
            x[i] = _as_mode(a, colour).transpose(2, 0, 1)
        out[split] = x
    return out


def _first_where(wheres: dict[str, list[str]]) -> str:
    return next(w[0] for w in wheres.values() if w)


def _as_mode(a: np.ndarray, colour: bool) -> np.ndarray:
    """(H, W, C) of ``a`` in the chosen mode; colour -> grey is PIL's ITU-R 601-2 luma (L = R*299/1000 +
    G*587/1000 + B*114/1000, rounded as PIL does)."""
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2) if colour else a[:, :, None]
    if colour:
        return a
    luma = (a[..., 0].astype(np.uint32) * 19595 + a[..., 1].astype(np.uint32) * 38470
            + a[..., 2].astype(np.uint32) * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[:, :, None]


def pixel_digest(x: np.ndarray) -> str:
    """sha256 (16 hex digits) of uint8 (N, C, H, W) images: their shape and bytes."""
    h = hashlib.sha256(repr(tuple(x.shape)).encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()[:16]


def files_key(kind: str, options: dict[str, Any], files: Sequence[tuple[str, int, int]]) -> str:
    """Cache key of a data set: its kind, loader options and (name, size, mtime_ns) of every file read."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, kind, sorted(options.items())], default=str).encode())
    for name, size, mtime in files:
        h.update(f"{name}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:24]


def stat_key(path: Path, name: str) -> tuple[str, int, int]:
    st = path.stat()
    return name, st.st_size, st.st_mtime_ns


def _cache_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"own-data-{key}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, None when it is absent or unreadable (then the images are decoded again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    need = {"class_names", "mean", "std"} | {f"{k}_{s}" for k in ("x", "y", "paths", "digest") for s in SPLITS}
    return arrays if need <= set(arrays) else None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from memadv.files.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)  # uncompressed: the cached load is a plain read
    except OSError as e:  # a read-only run folder only costs the next stage a decode
        print(f"memadv: warning: cannot write the decode cache {str(path)!r} ({e.strerror})", file=sys.stderr)


def load_own(kind: str, key: str, build: Callable[[], dict[str, np.ndarray]],
             cache_dir: str | Path | None) -> Dataset:
    """The Dataset of a user's own images: from ``cache_dir`` (or this process's last load) when the
    files' ``key`` matches, else ``build()`` (:func:`decode_examples` or :func:`own_arrays`), whose
    arrays are then written to the cache."""
    arrays = _MEMO.get(key)
    cache = _cache_file(Path(cache_dir), key) if cache_dir is not None else None
    if arrays is None and cache is not None:
        arrays = _read_cache(cache)
    if arrays is None:
        arrays = build()
    _MEMO.clear()
    _MEMO[key] = arrays
    if cache is not None and not cache.is_file():
        _write_cache(cache, arrays)
    return _dataset(kind, arrays)


def decode_examples(examples: dict[str, list[Example]], class_names: list[str],
                    image_size: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """Decode every example (train and test) into the arrays :func:`own_arrays` makes. Raises
    DatasetError for an empty split, a label outside 0..K-1, an unreadable image, mixed sizes, too
    little memory (checked from the first image before the rest are decoded)."""
    wheres = {s: [e.where for e in v] for s, v in examples.items()}
    for split, exs in examples.items():
        if not exs:
            raise DatasetError(f"the {split} split holds no images")
        check_labels([e.label for e in exs], len(class_names), wheres[split].__getitem__)
    first = _decode_one(examples["train"][0], image_size)
    check_memory(sum(len(v) for v in examples.values()), (*first.shape[:2], first.shape[2] if first.ndim == 3 else 1),
                 _first_where(wheres))
    images = {split: decode(exs, image_size) for split, exs in examples.items()}
    x = to_one_mode(images, wheres)
    return own_arrays(x, {s: np.array([e.label for e in v], dtype=np.int64) for s, v in examples.items()},
                      {s: [e.path for e in v] for s, v in examples.items()}, class_names)


def check_labels(labels: Sequence[int] | np.ndarray, k: int, where: Callable[[int], str]) -> None:
    """DatasetError naming (``where(i)``) the first example whose label is outside 0..k-1."""
    y = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        raise DatasetError(f"{where(int(bad[0]))}: label {int(y[bad[0]])} is outside the class range 0..{k - 1}")


def own_arrays(x: dict[str, np.ndarray], y: dict[str, np.ndarray], paths: dict[str, list[str]],
               class_names: list[str]) -> dict[str, np.ndarray]:
    """The arrays a cache file holds: ``x_<split>`` uint8 (N, C, H, W), ``y_<split>`` int64 (N,),
    ``paths_<split>`` str (N,), ``digest_<split>`` (:func:`pixel_digest`) and ``class_names``."""
    arrays: dict[str, np.ndarray] = {"class_names": np.array(class_names, dtype=str)}
    for split in SPLITS:
        arrays[f"x_{split}"] = x[split]
        arrays[f"y_{split}"] = np.asarray(y[split], dtype=np.int64)
        arrays[f"paths_{split}"] = np.array(list(paths[split]) or [""] * len(y[split]), dtype=str)
        arrays[f"digest_{split}"] = np.array(pixel_digest(x[split]))
    # the statistics are cached too: on 60,000 images they cost more than reading the cache
    arrays["mean"], arrays["std"] = (np.array(v) for v in uint8_channel_stats(x["train"]))
    return arrays


def _dataset(kind: str, arrays: dict[str, np.ndarray]) -> Dataset:
    x_train = torch.from_numpy(np.ascontiguousarray(arrays["x_train"]))
    mean, std = (tuple(float(v) for v in arrays[k].tolist()) for k in ("mean", "std"))
    names = [str(n) for n in arrays["class_names"].tolist()]
    paths = {s: [str(p) for p in arrays[f"paths_{s}"].tolist()] for s in SPLITS}
    return Dataset(name=kind, x_train=x_train, y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
                   x_test=torch.from_numpy(np.ascontiguousarray(arrays["x_test"])),
                   y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)), num_classes=len(names),
                   mean=mean, std=std, class_names=names,
                   content={s: str(arrays[f"digest_{s}"]) for s in SPLITS},
                   paths=paths if any(any(p) for p in paths.values()) else {})


PATH_COLUMNS = ["split", "idx", "path"]


def write_example_paths(path: str | Path, dataset: Dataset) -> None:
    """Write each example's relative path (columns split, idx, path; the data set's fingerprints in
    the metadata) for the split files to join; nothing when ``dataset`` has no paths."""
    import pandas as pd

    from memadv.files.tables import write_table

    if not dataset.paths:
        return
    parts = [pd.DataFrame({"split": split, "idx": np.arange(len(dataset.paths[split]), dtype=np.int64),
                           "path": dataset.paths[split]}) for split in SPLITS]
    meta = {"dataset": dataset.name, **{f"fingerprint_{s}": dataset.fingerprint(s) for s in SPLITS}}
    write_table(path, pd.concat(parts, ignore_index=True)[PATH_COLUMNS], meta)


def read_example_paths(path: str | Path) -> Any:
    """The table :func:`write_example_paths` wrote (a pandas DataFrame), None when there is none."""
    from memadv.files.tables import read_table

    return read_table(path, required=PATH_COLUMNS)[0] if Path(path).is_file() else None
