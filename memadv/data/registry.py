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
}


def dataset_loader(name: str) -> tuple[Callable[..., Dataset], bool]:
    if name not in DATASETS:
        raise UnknownChoiceError("dataset", name, DATASETS)
    module, func, needs_root = DATASETS[name]
    return getattr(importlib.import_module(module), func), needs_root


def load_dataset(name: str, data_root: str | Path | None = None, **options: Any) -> Dataset:
    """Load a registered dataset. ``options`` are loader-specific (e.g. ``classes`` for tinyimagenet)."""
    loader, needs_root = dataset_loader(name)
    if needs_root:
        if data_root is None:
            raise DatasetError(f"dataset {name!r} is read from disk: pass --data-root (the folder holding its files)")
        root = Path(data_root)
        if not root.is_dir():
            raise DatasetError(f"--data-root {str(root)!r} is not a directory")
        return loader(root, **options)
    return loader(**options)
