"""CIFAR-10 and CIFAR-100 read from the on-disk layouts that torchvision uses (no download).

Layouts (``root`` may be the folder holding the layout folder, or the layout folder itself)::

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta

Each file is a pickled dict (written by Python 2; read with ``encoding="latin1"`` as torchvision
does, so keys and names come back as ``str``; ``bytes`` keys are accepted as well). ``data`` is a
uint8 array (n, 3072): each row holds the red, green and blue 32x32 planes in row-major order, which
is exactly (n, 3, 32, 32) after a reshape. Labels are ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100, 100 classes; the 20 coarse labels are not used).

Canonical order (an example's id is its position): the order of the rows in the files, with the
CIFAR-10 training batches concatenated 1..5. This is the order torchvision's ``CIFAR10``/``CIFAR100``
datasets use and the order of the released Feldman & Zhang estimates. Class names come from the
meta file (``label_names`` / ``fine_label_names``); ``mean``/``std`` are the per-channel statistics
of the training images (:func:`memadv.data.dataset.channel_stats`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memadv.data.dataset import Dataset, channel_stats
from memadv.errors import DatasetError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)
CIFAR100_META = "meta"

_LAYOUT_HELP = {
    CIFAR10_FOLDER: f"{CIFAR10_FOLDER}/{{{','.join(CIFAR10_TRAIN)},{CIFAR10_TEST[0]},{CIFAR10_META}}}",
    CIFAR100_FOLDER: f"{CIFAR100_FOLDER}/{{train,test,meta}}",
}


def _layout_dir(root: Path, folder: str, probe: str) -> Path:
    """``root/folder`` if it exists, else ``root`` itself when it already is the layout folder."""
    root = Path(root)
    if (root / folder).is_dir():
        return root / folder
    if root.name == folder or (root / probe).is_file():
        return root
    raise DatasetError(f"no {folder!r} folder under {str(root)!r}; expected the torchvision layout "
                       f"{_LAYOUT_HELP[folder]} (pass its parent folder, or the folder itself, as --data-root)")


def _get(entry: dict, key: str) -> Any:
    if key in entry:
        return entry[key]
    bkey = key.encode()
    if bkey in entry:
        return entry[bkey]
    raise KeyError(key)


def _unpickle(path: Path, layout: str) -> dict:
    if not path.is_file():
        raise DatasetError(f"missing file {str(path)!r}; expected the torchvision layout {_LAYOUT_HELP[layout]}")
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as e:  # truncated / not a pickle / wrong protocol: all mean a corrupt file
        raise DatasetError(f"cannot read {str(path)!r} as a CIFAR pickle ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else 'no detail'}); the file is corrupt or "
                           f"not part of {layout}") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{str(path)!r} holds a {type(entry).__name__}, not the dict of a {layout} file")
    return entry


def _read_batch(path: Path, layout: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path, layout)
    try:
        data, labels = _get(entry, "data"), _get(entry, label_key)
    except KeyError as e:
        raise DatasetError(f"{str(path)!r} has no {e.args[0]!r} entry; not a {layout} data file") from None
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{str(path)!r}: 'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{str(path)!r}: {label_key!r} must be {data.shape[0]} integers, "
                           f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{str(path)!r}: labels must lie in 0..{num_classes - 1}, "
                           f"got {int(labels.min())}..{int(labels.max())}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_names(path: Path, layout: str, key: str, num_classes: int) -> list[str]:
    entry = _unpickle(path, layout)
    try:
        names = _get(entry, key)
    except KeyError:
        raise DatasetError(f"{str(path)!r} has no {key!r} entry; not the {layout} meta file") from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != num_classes:
        raise DatasetError(f"{str(path)!r}: {key!r} lists {len(names)} classes, expected {num_classes}")
    return names


def _load(name: str, root: Path, folder: str, train_files: tuple[str, ...], test_files: tuple[str, ...],
          meta_file: str, label_key: str, names_key: str, num_classes: int) -> Dataset:
    base = _layout_dir(root, folder, meta_file)
    # Check every file exists first, so a partial copy fails fast without unpickling 150 MB.
    for fname in (*train_files, *test_files, meta_file):
        if not (base / fname).is_file():
            raise DatasetError(f"missing file {str(base / fname)!r}; expected the torchvision layout "
                               f"{_LAYOUT_HELP[folder]}")
    names = _read_names(base / meta_file, folder, names_key, num_classes)
    splits = []
    for files in (train_files, test_files):
        parts = [_read_batch(base / f, folder, label_key, num_classes) for f in files]
        x = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))))
    (x_train, y_train), (x_test, y_test) = splits
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise DatasetError(f"{str(base)!r}: the training or test files hold no images")
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=num_classes, mean=mean, std=std, class_names=names)


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (or ``root`` itself): 50,000 train, 10,000 test, 10 classes."""
    return _load("cifar10", Path(root), CIFAR10_FOLDER, CIFAR10_TRAIN, CIFAR10_TEST, CIFAR10_META,
                 "labels", "label_names", 10)


def load_cifar100(root: Path) -> Dataset:
    """CIFAR-100 from ``root/cifar-100-python`` (or ``root`` itself): 50,000 train, 10,000 test, 100 fine classes."""
    return _load("cifar100", Path(root), CIFAR100_FOLDER, CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META,
                 "fine_labels", "fine_label_names", 100)
