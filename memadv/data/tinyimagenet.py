"""Tiny ImageNet read from the ``tiny-imagenet-200`` folder as distributed (no download).

Layout (``root`` may be the folder holding ``tiny-imagenet-200``, or that folder itself)::

    tiny-imagenet-200/
      wnids.txt                     one WordNet id per line (200 classes)
      words.txt                     optional: "<wnid>\\t<names>" lines, used for class names
      train/<wnid>/images/*.JPEG    500 training images per class, 64x64
      val/val_annotations.txt       "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per validation image
      val/images/*.JPEG             10,000 labelled validation images, 64x64

The official test split has no labels, so the labelled validation set is memadv's test set.

Canonical order (an example's id is its position), the order torchvision's ``ImageFolder`` gives
``train/``:

* classes: the wnids of ``wnids.txt`` sorted as strings (= ``sorted(os.listdir("train"))``); label
  ``k`` is the k-th wnid in that order;
* ``classes=N`` keeps the first N classes of that sorted order (the paper uses 50), so labels are
  0..N-1 and ``classes=N`` is always a prefix of ``classes=M`` for M > N;
* training images: class by class in that order; within a class, the ``*.JPEG`` files of
  ``train/<wnid>/images`` sorted by file name as strings (``n01443537_0``, ``n01443537_1``,
  ``n01443537_10``, ...), like ``ImageFolder``;
* test images: the lines of ``val/val_annotations.txt`` in file order, keeping only the lines
  whose wnid is one of the kept classes.

Images are decoded with PIL in a thread pool (PIL releases the GIL while decoding), converted to
RGB (a few Tiny ImageNet JPEGs are greyscale) and held as uint8 (N, 3, 64, 64); an image of another
size is a malformed file. Class names are the first name of each wnid's ``words.txt`` entry (the
wnid itself when ``words.txt`` is absent or has no entry).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from memadv.cpus import usable_cpus
from memadv.data.dataset import Dataset, channel_stats
from memadv.errors import DatasetError

FOLDER = "tiny-imagenet-200"
SIZE = 64
LAYOUT = (f"{FOLDER}/{{wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt, "
          f"val/images/*.JPEG}}")
IMAGE_SUFFIXES = (".jpeg", ".jpg")


def _layout_dir(root: Path) -> Path:
    root = Path(root)
    if (root / FOLDER).is_dir():
        return root / FOLDER
    if root.name == FOLDER or (root / "wnids.txt").is_file():
        return root
    raise DatasetError(f"no {FOLDER!r} folder under {str(root)!r}; expected the layout {LAYOUT} "
                       f"(pass its parent folder, or the folder itself, as --data-root)")


def _missing(path: Path) -> DatasetError:
    return DatasetError(f"missing {'folder' if not path.suffix else 'file'} {str(path)!r}; "
                        f"expected the layout {LAYOUT}")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise _missing(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {str(path)!r} as UTF-8 text ({type(e).__name__})") from None
    return [line.rstrip("\r\n") for line in text.splitlines()]


def _wnids(base: Path) -> list[str]:
    path = base / "wnids.txt"
    wnids = [w.strip() for w in _read_lines(path) if w.strip()]
    if not wnids:
        raise DatasetError(f"{str(path)!r} lists no classes")
    bad = [w for w in wnids if any(c.isspace() or c in "/\\" for c in w)]
    if bad:
        raise DatasetError(f"{str(path)!r}: malformed wnid {bad[0]!r} (expected one id such as n01443537 per line)")
    if len(set(wnids)) != len(wnids):
        dup = next(w for w in wnids if wnids.count(w) > 1)
        raise DatasetError(f"{str(path)!r}: wnid {dup!r} is listed twice")
    return sorted(wnids)


def _class_names(base: Path, wnids: list[str]) -> list[str]:
    path = base / "words.txt"
    names: dict[str, str] = {}
    if path.is_file():
        for line in _read_lines(path):
            wnid, sep, words = line.partition("\t")
            if sep and words.strip():
                names[wnid.strip()] = words.split(",")[0].strip()
    return [names.get(w, w) for w in wnids]


def _train_files(base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise _missing(folder)
        names = sorted(e.name for e in os.scandir(folder)
                       if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
        if not names:
            raise DatasetError(f"{str(folder)!r} holds no .JPEG images; expected the layout {LAYOUT}")
        files += [folder / n for n in names]
        labels += [label] * len(names)
    return files, labels


def _val_files(base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    path = base / "val" / "val_annotations.txt"
    index = {w: k for k, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DatasetError(f"{str(path)}:{lineno}: malformed line {line[:60]!r}; expected "
                               f"'<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>'")
        fname, wnid = fields[0].strip(), fields[1].strip()
        if wnid in index:
            files.append(base / "val" / "images" / fname)
            labels.append(index[wnid])
    if not files:
        raise DatasetError(f"{str(path)!r} labels no validation image with one of the kept classes")
    return files, labels


def _decode_into(out: np.ndarray, files: list[Path], threads: int) -> None:
    from PIL import Image, UnidentifiedImageError

    def work(i: int) -> None:
        path = files[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (SIZE, SIZE):
                    raise DatasetError(f"{str(path)!r} is {im.size[0]}x{im.size[1]}, expected {SIZE}x{SIZE} "
                                       f"(a Tiny ImageNet image)")
                out[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        except FileNotFoundError:
            raise _missing(path) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DatasetError(f"cannot decode image {str(path)!r} ({type(e).__name__}); the file is corrupt") from None

    if threads <= 1 or len(files) < 64:
        for i in range(len(files)):
            work(i)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # Chunks keep the per-task overhead small; list() re-raises the first error.
        chunk = 256
        list(pool.map(lambda s: [work(i) for i in range(s, min(s + chunk, len(files)))],
                      range(0, len(files), chunk)))


def _decode(files: list[Path], threads: int) -> torch.Tensor:
    out = np.empty((len(files), 3, SIZE, SIZE), dtype=np.uint8)
    _decode_into(out, files, threads)
    return torch.from_numpy(out)


def load_tinyimagenet(root: Path, classes: int | None = None, threads: int | None = None) -> Dataset:
    """Tiny ImageNet (100,000 train / 10,000 test images for all 200 classes) in the canonical order above.

    ``classes``: keep the first N classes of the sorted-wnid order (labels 0..N-1); ``None`` keeps all.
    ``threads``: decoding threads (default: the CPUs this process may use, at most 16).
    """
    base = _layout_dir(root)
    wnids = _wnids(base)
    if classes is not None:
        if isinstance(classes, str) and classes.strip().isdigit():
            classes = int(classes)
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or not 1 <= classes <= len(wnids):
            raise DatasetError(f"tinyimagenet classes must be an integer in 1..{len(wnids)} "
                               f"(the classes in wnids.txt), got {classes!r}")
        wnids = wnids[: int(classes)]
    if threads is None:
        threads = min(16, usable_cpus())
    train_files, train_labels = _train_files(base, wnids)
    val_files, val_labels = _val_files(base, wnids)
    x_train = _decode(train_files, threads)
    x_test = _decode(val_files, threads)
    mean, std = channel_stats(x_train)
    # The name stays the registry name; a class subset has its own fingerprint through its labels.
    return Dataset(name="tinyimagenet", x_train=x_train, y_train=torch.tensor(train_labels, dtype=torch.int64),
                   x_test=x_test, y_test=torch.tensor(val_labels, dtype=torch.int64),
                   num_classes=len(wnids), mean=mean, std=std, class_names=_class_names(base, wnids))
