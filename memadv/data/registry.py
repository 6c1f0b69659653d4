"""Dataset registry: name -> loader. Loaders read local files only (``--data-root``); nothing downloads."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from memadv.data.dataset import Dataset
from memadv.errors import DatasetError, UnknownChoiceError

# name -> (module, function, needs data_root)
DATASETS: dict[str, tuple[str, str, bool]] = {
    "digits": ("memadv.data.digits", "load_digits", False),
    "synthetic-longtail": ("memadv.data.synthetic_longtail", "load_synthetic_longtail", False),
    "cifar10": ("memadv.data.cifar", "load_cifar10", True),
    "cifar100": ("memadv.data.cifar", "load_cifar100", True),
    "tinyimagenet": ("memadv.data.tinyimagenet", "load_tinyimagenet", True),
    "fashion-mnist": ("memadv.data.mnist", "load_fashion_mnist", True),
    "mnist": ("memadv.data.mnist", "load_mnist", True),
}

# name -> (data root used when --data-root is not given, how to get the files there)
DEFAULT_ROOTS: dict[str, tuple[str, str]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist", "apt-get install dataset-fashion-mnist"),
}


def dataset_loader(name: str) -> tuple[Callable[..., Dataset], bool]:
    if name not in DATASETS:
        raise UnknownChoiceError("dataset", name, DATASETS)
    module, func, needs_root = DATASETS[name]
    return getattr(importlib.import_module(module), func), needs_root


def load_dataset(name: str, data_root: str | Path | None = None, *, per_class: int | None = None,
                 test_per_class: int | None = None, **options: Any) -> Dataset:
    """Load a registered dataset. ``options`` are loader-specific (e.g. ``classes`` for tinyimagenet).

    ``per_class`` / ``test_per_class`` keep the first N training / test examples of each class in
    canonical order (None = all; :func:`memadv.data.per_class.first_per_class`): ids stay the
    original positions and the fingerprints cover the choice. A data set read from disk without
    ``data_root`` is looked for at its :data:`DEFAULT_ROOTS` entry (Debian's folder for
    fashion-mnist). Raises DatasetError / UnknownChoiceError / ConfigError (one line).
    """
    loader, needs_root = dataset_loader(name)
    if needs_root:
        if data_root is None and name in DEFAULT_ROOTS:
            default, install = DEFAULT_ROOTS[name]
            if not Path(default).is_dir():
                raise DatasetError(f"dataset {name!r} not found at its default --data-root {default!r}; "
                                   f"install it with `{install}` (as root) or pass --data-root")
            data_root = default
        if data_root is None:
            raise DatasetError(f"dataset {name!r} is read from disk: pass --data-root (the folder holding its files)")
        root = Path(data_root)
        if not root.is_dir():
            raise DatasetError(f"--data-root {str(root)!r} is not a directory")
        dataset = loader(root, **options)
    else:
        dataset = loader(**options)
    if per_class is None and test_per_class is None:
        return dataset
    from memadv.data.per_class import first_per_class  # only runs that ask for a reduced copy need it

    return first_per_class(dataset, per_class, test_per_class)
