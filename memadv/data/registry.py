"""Dataset registry: name -> loader. Loaders read local files only (``--data-root``); nothing downloads."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from memadv.data.dataset import Dataset
from memadv.errors import ConfigError, DatasetError, UnknownChoiceError

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


# Options of one loader only (the paper's Tiny ImageNet setting keeps the first 50 classes, Sec. 5.1).
# ``per_class`` / ``test_per_class`` apply to every data set (memadv.data.per_class).
LOADER_OPTIONS: dict[str, tuple[str, ...]] = {"tinyimagenet": ("classes",)}
# Every option that selects which examples a data set holds: what travels with a run (spec, score
# and split metadata, every later stage), so that each stage loads the data the scores were made on.
DATASET_OPTION_NAMES = ("classes", "per_class", "test_per_class")


def dataset_options(name: str, **given: Any) -> dict[str, Any]:
    """The options among ``given`` that are set (not None), checked against data set ``name``.

    Returns a dict for :func:`load_dataset` (and for metadata: it is what :attr:`Dataset.options`
    holds). Raises UnknownChoiceError for an unknown data set and ConfigError (one line) for an
    option that does not apply to ``name`` (``--classes`` with cifar100) or is not a data-set option.
    """
    if name not in DATASETS:
        raise UnknownChoiceError("dataset", name, DATASETS)
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if key not in DATASET_OPTION_NAMES:
            raise ConfigError(f"{key!r} is not a data-set option; valid options: {', '.join(DATASET_OPTION_NAMES)}")
        if key not in ("per_class", "test_per_class") and key not in LOADER_OPTIONS.get(name, ()):
            users = sorted(d for d, opts in LOADER_OPTIONS.items() if key in opts)
            raise ConfigError(f"--{key.replace('_', '-')} applies only to {', '.join(users)}, not to dataset {name!r}")
        out[key] = value
    return out


def options_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The data-set options a score/split/run file was made with: ``meta["dataset_options"]``, or
    for files written before that key existed the same fields of the estimate spec in
    ``meta["spec"]`` (empty for a full data set and for imported Feldman & Zhang scores)."""
    if isinstance(meta.get("dataset_options"), dict):
        return {k: v for k, v in meta["dataset_options"].items() if v is not None}
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    found = {k: spec.get(k) for k in DATASET_OPTION_NAMES}
    if "classes" not in LOADER_OPTIONS.get(str(meta.get("dataset")), ()):
        found.pop("classes")  # old specs recorded --classes for data sets that ignored it
    return {k: v for k, v in found.items() if v is not None}


def dataset_loader(name: str) -> tuple[Callable[..., Dataset], bool]:
    if name not in DATASETS:
        raise UnknownChoiceError("dataset", name, DATASETS)
    module, func, needs_root = DATASETS[name]
    return getattr(importlib.import_module(module), func), needs_root


def load_dataset(name: str, data_root: str | Path | None = None, *, per_class: int | None = None,
                 test_per_class: int | None = None, **options: Any) -> Dataset:
    """Load a registered dataset. ``options`` are loader-specific (``classes`` for tinyimagenet,
    :data:`LOADER_OPTIONS`); one given for another data set is a ConfigError.

    ``per_class`` / ``test_per_class`` keep the first N training / test examples of each class in
    canonical order (None = all; :func:`memadv.data.per_class.first_per_class`): ids stay the
    original positions and the fingerprints cover the choice. A data set read from disk without
    ``data_root`` is looked for at its :data:`DEFAULT_ROOTS` entry (Debian's folder for
    fashion-mnist). The returned data set's ``options`` hold the options given (what its files'
    metadata records). Raises DatasetError / UnknownChoiceError / ConfigError (one line).
    """
    chosen = dataset_options(name, per_class=per_class, test_per_class=test_per_class, **options)
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
    if per_class is not None or test_per_class is not None:
        from memadv.data.per_class import first_per_class  # only runs that ask for a reduced copy need it

        dataset = first_per_class(dataset, per_class, test_per_class)
    dataset.options = chosen
    return dataset
