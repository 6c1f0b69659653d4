"""A user's own images in torchvision's ``ImageFolder`` layout (``--dataset imagefolder``).

Layout of ``--data-root DIR``::

    DIR/train/<class>/**/<image>     training images, one folder per class (sub-folders allowed)
    DIR/test/<class>/**/<image>      test images (``DIR/val/`` when there is no ``test/``)

Conventions (those of ``torchvision.datasets.ImageFolder``, so results join back to a
torchvision pipeline): class index = position of the class folder's name in the sorted names of
``train/``'s folders; images are the files whose extension (case-insensitive) is one of
:data:`memadv.data.own_images.IMAGE_EXTENSIONS`. Hidden files and folders (name starting with
``.``) are ignored. An example's id is its position in the sorted relative-path order (POSIX
``class/sub/file``) within its split; that relative path is kept and written beside the id in
split files. Refused, each with a one-line DatasetError naming the file or folder: a missing
``train/`` or test folder, a class folder with no image, a test class that is not a training
class, any other file in a class folder (or beside the class folders), an image that cannot be decoded.
"""

from __future__ import annotations

import os
from pathlib import Path

from memadv.data.dataset import Dataset
from memadv.data.own_images import IMAGE_EXTENSIONS, Example, decode_examples, files_key, load_own
from memadv.errors import DatasetError

TEST_FOLDERS = ("test", "val")
LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image> (or DIR/val/<class>/<image>)"


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: str, rel: str, out: list[tuple[str, str, os.stat_result]]) -> None:
    """Append (relative POSIX path, path, stat) of every non-hidden file under ``folder`` (paths stay
    strings: a Path per file would cost more than the cached load itself)."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise DatasetError(f"cannot list folder {str(folder)!r} ({e.strerror})") from None
    for e in entries:
        if _hidden(e.name):
            continue
        if e.is_dir():
            _walk(e.path, f"{rel}/{e.name}", out)
        else:
            out.append((f"{rel}/{e.name}", e.path, e.stat()))


def _split_files(split_dir: Path, split: str) -> dict[str, list[tuple[str, str, os.stat_result]]]:
    """Class name -> its files (relative path to DIR, path, stat), from one split folder."""
    if not split_dir.is_dir():
        raise DatasetError(f"missing folder {str(split_dir)!r}; expected the layout {LAYOUT}")
    classes: dict[str, list[tuple[str, str, os.stat_result]]] = {}
    for e in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if _hidden(e.name):
            continue
        if not e.is_dir():
            raise DatasetError(f"{e.path!r} is a file beside the class folders; expected the layout {LAYOUT}")
        files: list[tuple[str, str, os.stat_result]] = []
        _walk(e.path, f"{split}/{e.name}", files)
        for rel, path, _ in files:
            if not rel.lower().endswith(IMAGE_EXTENSIONS):
                raise DatasetError(f"{path!r} is not an image file (accepted extensions: "
                                   f"{', '.join(IMAGE_EXTENSIONS)}); move it out of the class folder")
        if not files:
            raise DatasetError(f"class folder {e.path!r} holds no image")
        classes[e.name] = files
    if not classes:
        raise DatasetError(f"{str(split_dir)!r} holds no class folder; expected the layout {LAYOUT}")
    return classes


def _layout(root: Path) -> tuple[list[str], dict[str, dict[str, list[tuple[str, str, os.stat_result]]]]]:
    """(sorted class names, split -> class -> files)."""
    test = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), root / "test")
    found = {"train": _split_files(root / "train", "train"), "test": _split_files(test, test.name)}
    classes = sorted(found["train"])
    missing = sorted(set(found["test"]) - set(classes))
    if missing:
        raise DatasetError(f"test class folder {str(test / missing[0])!r} has no training folder "
                           f"{str(root / 'train' / missing[0])!r}; every test class must be a training class")
    return classes, found


def load_imagefolder(root: Path, image_size: list[int] | None = None, cache_dir: str | Path | None = None) -> Dataset:
    """The ImageFolder tree under ``root`` as a Dataset (module docstring for the conventions).

    ``image_size`` (H, W): resize every image once (needed when the images differ in size).
    ``cache_dir``: the run folder's decode cache (:func:`memadv.data.own_images.load_own`).
    """
    root = Path(root)
    size = check_image_size(image_size)
    classes, found = _layout(root)
    index = {c: k for k, c in enumerate(classes)}
    listing = {split: sorted((rel, path, st, index[c]) for c, files in per.items() for rel, path, st in files)
               for split, per in found.items()}
    key = files_key("imagefolder", {"image_size": size, "classes": classes},
                    [(rel, st.st_size, st.st_mtime_ns) for split in ("train", "test") for rel, _, st, _ in listing[split]])

    def build() -> dict:
        examples = {split: [Example(Path(path), label, rel, path) for rel, path, _, label in items]
                    for split, items in listing.items()}
        return decode_examples(examples, classes, size)

    return load_own("imagefolder", key, build, cache_dir)


def check_image_size(image_size: list[int] | tuple[int, ...] | None) -> tuple[int, int] | None:
    """``--image-size H W`` as a tuple; DatasetError unless two integers in 1..4096."""
    if image_size is None:
        return None
    vals = list(image_size)
    if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in vals):
        raise DatasetError(f"--image-size takes two integers H W in 1..4096, got {image_size!r}")
    return vals[0], vals[1]
