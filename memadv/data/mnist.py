"""Fashion-MNIST and MNIST read from their four IDX files (gzipped or not; no download).

Layouts (``root`` = ``--data-root``), tried in this order:

* torchvision's: ``root/FashionMNIST/raw/`` or ``root/MNIST/raw/`` (``root`` may also be the
  ``FashionMNIST`` / ``MNIST`` folder itself);
* flat: the four files directly in ``root`` -- Debian's package ``dataset-fashion-mnist`` installs
  them flat in ``/usr/share/datasets/fashion-mnist/``, which is the default root of
  ``fashion-mnist`` (:data:`DEBIAN_FASHION_MNIST`).

Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each either unpacked or with ``.gz`` (torchvision keeps both after
extracting; the unpacked one is read then, as it is faster). Format: :mod:`memadv.data.idx`.

Canonical order (an example's id is its position): the order of the records in the files, which is
the order of torchvision's ``FashionMNIST`` / ``MNIST`` datasets. 60,000 training and 10,000 test
images of 28x28 grey pixels, 10 classes. Class names: Fashion-MNIST's README (Xiao, Rasul &
Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist, "Labels"; also in
``/usr/share/doc/dataset-fashion-mnist/README.md.gz``); MNIST's classes are the digits 0-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memadv.data.dataset import Dataset, channel_stats
from memadv.data.idx import read_idx
from memadv.errors import DatasetError, IdxFileError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
# split -> (images file, labels file), names as in the original distribution
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def layout_dir(root: Path, tv_folder: str) -> Path:
    """The folder holding the IDX files under ``root``: torchvision's ``<tv_folder>/raw`` layout or
    a flat folder. Raises DatasetError listing both layouts when neither holds a training-images file."""
    root = Path(root)
    candidates = [root / tv_folder / "raw", root / "raw" if root.name == tv_folder else None, root]
    for folder in candidates:
        if folder is not None and folder.is_dir() and _find(folder, FILES["train"][0]) is not None:
            return folder
    raise DatasetError(f"no {FILES['train'][0]}[.gz] under {str(root)!r}; expected torchvision's layout "
                       f"{tv_folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] or those four files "
                       f"directly in the folder (pass it as --data-root)")


def _read_split(folder: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = FILES[split]
    paths = []
    for stem in (images_stem, labels_stem):
        path = _find(folder, stem)
        if path is None:
            raise IdxFileError(f"missing file {str(folder / stem)!r} (or {stem}.gz)")
        paths.append(path)
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if images.shape[0] != labels.shape[0]:
        raise IdxFileError(f"{str(paths[0])!r} holds {images.shape[0]} images but {str(paths[1])!r} "
                           f"holds {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise IdxFileError(f"{str(paths[0])!r} holds no images")
    if labels.max() >= num_classes:
        raise IdxFileError(f"{str(paths[1])!r}: labels must lie in 0..{num_classes - 1}, found {int(labels.max())}")
    return images, labels


def _load(name: str, root: Path, tv_folder: str, class_names: list[str]) -> Dataset:
    folder = layout_dir(root, tv_folder)
    (xtr, ytr), (xte, yte) = (_read_split(folder, s, len(class_names)) for s in ("train", "test"))
    if xtr.shape[1:] != xte.shape[1:]:
        raise IdxFileError(f"{str(folder)!r}: training images are {xtr.shape[1:]} but test images {xte.shape[1:]}")
    # (n, rows, cols) -> (n, 1, rows, cols); copies, because frombuffer arrays are read-only
    x_train = torch.from_numpy(xtr.copy()).unsqueeze(1)
    x_test = torch.from_numpy(xte.copy()).unsqueeze(1)
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=torch.from_numpy(ytr.astype(np.int64)),
                   x_test=x_test, y_test=torch.from_numpy(yte.astype(np.int64)), num_classes=len(class_names),
                   mean=mean, std=std, class_names=list(class_names))


def load_fashion_mnist(root: Path) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test, uint8 (N, 1, 28, 28), 10 classes) from ``root``:
    torchvision's ``FashionMNIST/raw`` or a flat folder such as Debian's :data:`DEBIAN_FASHION_MNIST`.
    Raises DatasetError / IdxFileError (one line, naming the file) for a missing or malformed file."""
    return _load("fashion-mnist", Path(root), "FashionMNIST", FASHION_MNIST_CLASSES)


def load_mnist(root: Path) -> Dataset:
    """MNIST (60,000 train / 10,000 test, uint8 (N, 1, 28, 28), digits 0-9) from ``root``:
    torchvision's ``MNIST/raw`` or a flat folder. Errors as :func:`load_fashion_mnist`."""
    return _load("mnist", Path(root), "MNIST", MNIST_CLASSES)
