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
    # a user's own data (memadv.data.own_images): --data-root names their folder or file
    "imagefolder": ("memadv.data.imagefolder", "load_imagefolder", True),
    "hf": ("memadv.data.hf_data", "load_hf", True),
    "arrays": ("memadv.data.arrays", "load_arrays", True),
}
# The data sets a user brings: decoded once into the run folder's cache (``cache_dir``), their
# per-data-set defaults follow their image shape (:func:`defaults_like`).
OWN_DATASETS = ("imagefolder", "hf", "arrays")
# --data-root of these is a file, not a folder
FILE_ROOTS = ("arrays",)

# name -> (data root used when --data-root is not given, how to get the files there)
DEFAULT_ROOTS: dict[str, tuple[str, str]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist", "apt-get install dataset-fashion-mnist"),
}


# Options of one loader only (the paper's Tiny ImageNet setting keeps the first 50 classes, Sec. 5.1).
# ``per_class`` / ``test_per_class`` apply to every data set (memadv.data.per_class).
LOADER_OPTIONS: dict[str, tuple[str, ...]] = {"tinyimagenet": ("classes",), "imagefolder": ("image_size",),
                                              "hf": ("image_size", "image_column", "label_column"),
                                              "arrays": ("image_size", "array_layout")}
# Help of the options of a user's own data set (declared by EstimateConfig and TrainConfig alike).
OWN_DATA_HELP = {
    "image_size": "imagefolder/hf/arrays: resize every image once to H W (needed when image sizes differ)",
    "image_column": "hf only: the image column (default: img or image)",
    "label_column": "hf only: the integer label column (default: label or fine_label)",
    "array_layout": "arrays only: NHW, NHWC or NCHW (default: detected from the shapes)",
}
# Every option that selects which examples a data set holds: what travels with a run (spec, score
# and split metadata, every later stage), so that each stage loads the data the scores were made on.
DATASET_OPTION_NAMES = ("classes", "per_class", "test_per_class", "image_size", "image_column", "label_column",
                        "array_layout")


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


def defaults_like(shape: tuple[int, ...]) -> str:
    """The built-in data set whose per-data-set defaults (net, epochs, eps, batch) a user's own data
    set of image ``shape`` (C, H, W) takes: grey images up to 32 pixels -> fashion-mnist (MLP, eps
    0.1), colour images up to 32 pixels -> cifar10 (ResNet-18, eps 8/255), larger -> tinyimagenet
    (ResNet-32); grey images above 32 pixels take tinyimagenet's too (a conv net reads one channel)."""
    c, h, w = shape
    if max(h, w) <= 32:
        return "fashion-mnist" if c == 1 else "cifar10"
    return "tinyimagenet"


def defaults_name(name: str, data_root: str | Path | None, options: dict[str, Any]) -> str:
    """The data set whose per-data-set defaults a config of data set ``name`` takes: ``name`` itself
    for a built-in set; for a user's own set (:data:`OWN_DATASETS`) the built-in set of the same image
    shape (:func:`defaults_like`), found by loading it (decoded once per process)."""
    if name not in OWN_DATASETS:
        return name
    return defaults_like(load_dataset(name, data_root, **options).image_shape)


_ANNOUNCED: set[str] = set()


def announce_defaults(name: str, like: str, values: dict[str, Any]) -> None:
    """Print (stderr, once per process and choice) which built-in set's defaults a user's own data
    set took and their values, so that a user sees them and can override them (``--net`` ...)."""
    if name not in OWN_DATASETS or not values:
        return
    line = (f"memadv: {name}: per-data-set defaults of {like} (same image shape): "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(values.items())) + " (each overridable)")
    if line not in _ANNOUNCED:
        import sys

        _ANNOUNCED.add(line)
        print(line, file=sys.stderr)


def dataset_loader(name: str) -> tuple[Callable[..., Dataset], bool]:
    if name not in DATASETS:
        raise UnknownChoiceError("dataset", name, DATASETS)
    module, func, needs_root = DATASETS[name]
    return getattr(importlib.import_module(module), func), needs_root


def load_dataset(name: str, data_root: str | Path | None = None, *, per_class: int | None = None,
                 test_per_class: int | None = None, cache_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load a registered dataset. ``options`` are loader-specific (``classes`` for tinyimagenet,
    :data:`LOADER_OPTIONS`); one given for another data set is a ConfigError.

    ``per_class`` / ``test_per_class`` keep the first N training / test examples of each class in
    canonical order (None = all; :func:`memadv.data.per_class.first_per_class`): ids stay the
    original positions and the fingerprints cover the choice. A data set read from disk without
    ``data_root`` is looked for at its :data:`DEFAULT_ROOTS` entry (Debian's folder for
    fashion-mnist). The returned data set's ``options`` hold the options given (what its files'
    metadata records). ``cache_dir`` (a run folder's ``RunLayout.data_cache``) keeps the decoded
    images of a user's own data set (:data:`OWN_DATASETS`) for later stages; other data sets ignore it.
    Raises DatasetError / UnknownChoiceError / ConfigError (one line).
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
        if name in FILE_ROOTS:
            if not root.is_file():
                raise DatasetError(f"--data-root {str(root)!r} is not a file (dataset {name!r} reads one .npz file)")
        elif not root.is_dir():
            raise DatasetError(f"--data-root {str(root)!r} is not a directory")
        if name in OWN_DATASETS:
            options["cache_dir"] = cache_dir
        dataset = loader(root, **options)
    else:
        dataset = loader(**options)
    if per_class is not None or test_per_class is not None:
        from memadv.data.per_class import first_per_class  # only runs that ask for a reduced copy need it

        dataset = first_per_class(dataset, per_class, test_per_class)
    dataset.options = chosen
    return dataset
