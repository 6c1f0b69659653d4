"""A user's own images as plain arrays in one ``.npz`` file (``--dataset arrays --data-root FILE.npz``).

Keys: ``x_train``, ``y_train``, ``x_test``, ``y_test``; optional ``class_names`` (strings, one per
class). Images are integer arrays with values 0..255 (uint8 or any integer type) in one of the
layouts ``NHW`` (grey), ``NHWC`` or ``NCHW`` (C = 1 or 3), given with ``--array-layout`` or detected:
a 3-D array is NHW; a 4-D array is NHWC when only its last axis is 1 or 3, NCHW when only its
second is; when both are (say (N, 3, 32, 3)) the layout must be given. Labels are integers in
0..K-1, K = len(class_names) or else max training label + 1. An example's id is its row. The file
is read without unpickling anything (:func:`memadv.files.npz.load_npz`). Refused with a one-line
DatasetError naming the key: a missing key, NaN or values outside 0..255, float images, a label
outside the class range, train and test images of different shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memadv.data.dataset import Dataset
from memadv.data.imagefolder import check_image_size
from memadv.data.own_images import SPLITS, check_labels, check_memory, files_key, load_own, own_arrays, stat_key
from memadv.errors import DatasetError, SchemaError

ARRAY_LAYOUTS = ("NHW", "NHWC", "NCHW")
KEYS = ("x_train", "y_train", "x_test", "y_test")


def detect_layout(shape: tuple[int, ...], key: str) -> str:
    """The layout of an image array of ``shape`` (module docstring); DatasetError when it cannot tell."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise DatasetError(f"{key} has shape {shape}; expected N x H x W, N x H x W x C or N x C x H x W")
    last, second = shape[3] in (1, 3), shape[1] in (1, 3)
    if last and not second:
        return "NHWC"
    if second and not last:
        return "NCHW"
    raise DatasetError(f"{key} has shape {shape}: cannot tell channels-last from channels-first; "
                       f"pass --array-layout ({', '.join(ARRAY_LAYOUTS[1:])})")


def _images(a: np.ndarray, key: str, layout: str | None) -> np.ndarray:
    """uint8 (N, C, H, W) of one image array; DatasetError naming ``key`` when it is not 0..255 integers."""
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise DatasetError(f"{key} holds NaN values; images must be integers 0..255")
        raise DatasetError(f"{key} holds floats ({a.dtype}); store the images as uint8 0..255")
    if a.dtype.kind not in "iu":
        raise DatasetError(f"{key} holds {a.dtype}, not integer images 0..255")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise DatasetError(f"{key} holds values outside 0..255 (min {a.min()}, max {a.max()})")
    layout = layout or detect_layout(a.shape, key)
    want = len(layout)
    if a.ndim != want:
        raise DatasetError(f"{key} has shape {a.shape}, which is not --array-layout {layout}")
    x = a.astype(np.uint8, copy=False)
    x = {"NHW": lambda v: v[:, None], "NHWC": lambda v: v.transpose(0, 3, 1, 2), "NCHW": lambda v: v}[layout](x)
    if x.shape[1] not in (1, 3):
        raise DatasetError(f"{key} has {x.shape[1]} channels in layout {layout}; expected 1 or 3")
    return np.ascontiguousarray(x)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, C, H, W) resized to ``size`` (H, W) with PIL bilinear (as image files are)."""
    from PIL import Image

    if x.shape[2:] == size:
        return x
    out = np.empty((x.shape[0], x.shape[1], *size), dtype=np.uint8)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = np.asarray(Image.fromarray(x[i, c]).resize((size[1], size[0]), Image.BILINEAR))
    return out


def load_arrays(root: Path, image_size: list[int] | None = None, array_layout: str | None = None,
                cache_dir: str | Path | None = None) -> Dataset:
    """The arrays of the ``.npz`` file ``root`` as a Dataset (module docstring for the keys and checks)."""
    path = Path(root)
    size = check_image_size(image_size)
    if array_layout is not None and array_layout not in ARRAY_LAYOUTS:
        raise DatasetError(f"--array-layout {array_layout!r} is not one of {', '.join(ARRAY_LAYOUTS)}")
    if not path.is_file():
        raise DatasetError(f"--data-root {str(path)!r} is not a .npz file (dataset arrays reads x_train, y_train, "
                           f"x_test, y_test from one .npz file)")
    key = files_key("arrays", {"image_size": size, "array_layout": array_layout}, [stat_key(path, path.name)])

    def build() -> dict[str, np.ndarray]:
        from memadv.files.npz import load_npz

        try:
            z = load_npz(path)
        except SchemaError as e:
            raise DatasetError(str(e)) from None
        missing = [k for k in KEYS if k not in z]
        if missing:
            raise DatasetError(f"{str(path)!r} has no key {missing[0]!r}; expected keys {', '.join(KEYS)} "
                               f"(and optionally class_names); it has {', '.join(sorted(z)) or 'none'}")
        x: dict[str, np.ndarray] = {}
        y: dict[str, np.ndarray] = {}
        for split in SPLITS:
            xs = z[f"x_{split}"]
            check_memory(xs.shape[0] if xs.ndim else 0, xs.shape[1:] if xs.ndim > 1 else (1,), str(path))
            x[split] = _images(xs, f"x_{split}", array_layout)
            y[split] = _labels(z[f"y_{split}"], f"y_{split}", x[split].shape[0])
            if size is not None:
                x[split] = _resize(x[split], size)
        if x["train"].shape[1:] != x["test"].shape[1:]:
            raise DatasetError(f"{str(path)!r}: x_train images are {x['train'].shape[1:]} (C, H, W) but x_test images are "
                               f"{x['test'].shape[1:]}; pass --image-size H W to resize both, or store one shape")
        if "class_names" in z:
            names = [str(n) for n in np.asarray(z["class_names"]).ravel().tolist()]
        else:
            names = [str(k) for k in range(int(y["train"].max()) + 1 if y["train"].size else 0)]
        for split in SPLITS:
            check_labels(y[split], len(names), lambda i: f"{path}: y_{split}[{i}]")
            if not y[split].size:
                raise DatasetError(f"{str(path)!r}: y_{split} is empty")
        return own_arrays(x, y, {s: [] for s in SPLITS}, names)

    return load_own("arrays", key, build, cache_dir)


def _labels(a: np.ndarray, key: str, n: int) -> np.ndarray:
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.isnan(a).any():
            raise DatasetError(f"{key} holds NaN values; labels must be integers")
        raise DatasetError(f"{key} holds {a.dtype}, not integer labels")
    if a.shape != (n,):
        raise DatasetError(f"{key} has shape {a.shape}; expected ({n},), one label per image")
    return a.astype(np.int64)
