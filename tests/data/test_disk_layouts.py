"""Small fake copies of the torchvision / Tiny ImageNet on-disk layouts, loaded through load_dataset.

The fakes use the real file formats (pickled dicts of numpy arrays, JPEG files) with a few images
per class, so every test takes well under a second.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from memadv.data import load_dataset
from memadv.data.dataset import channel_stats
from memadv.errors import DatasetError

# ---------------------------------------------------------------------------------------------- CIFAR


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def make_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict:
    """root/cifar-10-batches-py with str keys (what torchvision's latin1 unpickling gives)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = [f"class{c}" for c in range(10)]
    _pickle(base / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    xs, ys = [], []
    for b in range(1, 6):
        x, y = _rows(rng, per_batch), [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(base / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "data": x, "labels": y,
                                           "filenames": [f"img{b}_{i}.png" for i in range(per_batch)]})
        xs.append(x)
        ys += y
    xt, yt = _rows(rng, n_test), [int(v) for v in rng.integers(0, 10, n_test)]
    _pickle(base / "test_batch", {"batch_label": "testing batch 1 of 1", "data": xt, "labels": yt})
    return {"x_train": np.concatenate(xs), "y_train": ys, "x_test": xt, "y_test": yt, "names": names, "base": base}


def make_cifar100(root: Path, n_train: int = 7, n_test: int = 3, seed: int = 1) -> dict:
    """root/cifar-100-python with bytes keys and names (what encoding='bytes' pickles look like)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    names = [f"fine{c:02d}" for c in range(100)]
    _pickle(base / "meta", {b"fine_label_names": [n.encode() for n in names],
                            b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)]})
    out = {"names": names, "base": base}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _rows(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        fine[0] = 99  # the largest label must be accepted
        _pickle(base / split, {b"data": x, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
                               b"filenames": [f"{split}{i}.png".encode() for i in range(n)]})
        out[f"x_{split}"], out[f"y_{split}"] = x, fine
    return out


def _check_cifar(ds, ref: dict, name: str, num_classes: int) -> None:
    assert ds.name == name and ds.num_classes == num_classes
    for split in ("train", "test"):
        x, y = ds.images(split), ds.labels(split)
        n = ref[f"x_{split}"].shape[0]
        assert x.dtype == torch.uint8 and x.shape == (n, 3, 32, 32)
        assert y.dtype == torch.int64 and y.tolist() == list(ref[f"y_{split}"])
        # Canonical order = row order of the files; pixel layout = R, G, B planes, row-major.
        assert torch.equal(x, torch.from_numpy(ref[f"x_{split}"].reshape(n, 3, 32, 32)))
    assert torch.equal(ds.x_train[0, 1, 0], torch.from_numpy(ref["x_train"][0, 1024:1056]))
    assert ds.class_names == ref["names"]
    assert ds.mean == pytest.approx(channel_stats(ds.x_train)[0])
    assert ds.std == pytest.approx(channel_stats(ds.x_train)[1])


def test_cifar10_layout(tmp_path: Path) -> None:
    ref = make_cifar10(tmp_path)
    _check_cifar(load_dataset("cifar10", data_root=tmp_path), ref, "cifar10", 10)
    # The layout folder itself is accepted as the root too.
    _check_cifar(load_dataset("cifar10", data_root=ref["base"]), ref, "cifar10", 10)


def test_cifar100_layout(tmp_path: Path) -> None:
    ref = make_cifar100(tmp_path)
    ds = load_dataset("cifar100", data_root=str(tmp_path))
    _check_cifar(ds, ref, "cifar100", 100)
    _check_cifar(load_dataset("cifar100", data_root=ref["base"]), ref, "cifar100", 100)


def _one_line_error(name: str, root: Path, *must_contain: str, **options) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(name, data_root=root, **options)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for s in must_contain:
        assert s in msg, msg
    return msg


def test_cifar_missing_layout(tmp_path: Path) -> None:
    _one_line_error("cifar10", tmp_path, "cifar-10-batches-py")
    _one_line_error("cifar100", tmp_path, "cifar-100-python")
    _one_line_error("cifar10", tmp_path / "nope", "not a directory")
    with pytest.raises(DatasetError):
        load_dataset("cifar10")  # no data root at all


def test_cifar_missing_file(tmp_path: Path) -> None:
    ref = make_cifar10(tmp_path)
    (ref["base"] / "data_batch_3").unlink()
    _one_line_error("cifar10", tmp_path, "data_batch_3", "missing")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong-shape", "no-labels", "bad-label", "not-dict"])
def test_cifar_corrupt_file(tmp_path: Path, damage: str) -> None:
    ref = make_cifar10(tmp_path)
    path = ref["base"] / "test_batch"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a pickle\n" * 10)
    elif damage == "wrong-shape":
        _pickle(path, {"data": np.zeros((4, 3000), np.uint8), "labels": [0, 1, 2, 3]})
    elif damage == "no-labels":
        _pickle(path, {"data": np.zeros((4, 3072), np.uint8)})
    elif damage == "bad-label":
        _pickle(path, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
    else:
        path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    _one_line_error("cifar10", tmp_path, "test_batch")


def test_cifar100_bad_meta(tmp_path: Path) -> None:
    ref = make_cifar100(tmp_path)
    _pickle(ref["base"] / "meta", {"fine_label_names": ["a", "b"]})
    _one_line_error("cifar100", tmp_path, "meta", "2 classes")


# -------------------------------------------------------------------------------------- Tiny ImageNet

# Deliberately not sorted in wnids.txt: the canonical class order is the sorted one.
WNIDS = ["n03000000", "n01000000", "n04000000", "n02000000"]
# File names whose string order differs from numeric order (ImageFolder sorts strings).
TRAIN_NAMES = ["{w}_0.JPEG", "{w}_10.JPEG", "{w}_2.JPEG", "{w}_1.JPEG"]
SORTED_IDX = [0, 1, 10, 2]  # the numbers of TRAIN_NAMES in string order


def _colour(cls: int, idx: int) -> tuple[int, int, int]:
    return (20 + 40 * cls, 10 + 20 * idx, 200)


def _val_colour(cls: int, i: int) -> tuple[int, int, int]:
    return (20 + 40 * cls, 200, 10 + 25 * i)


def _jpeg(path: Path, colour: tuple[int, int, int], size: int = 64, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), colour)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format="JPEG", quality=95)


def make_tinyimagenet(root: Path, grey_first_val: bool = True) -> dict:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(w + "\n" for w in WNIDS))
    (base / "words.txt").write_text("".join(f"{w}\tthing {w[-7]}, other name\n" for w in WNIDS)
                                    + "n09999999\tunused class\n")
    sorted_w = sorted(WNIDS)
    for w in WNIDS:
        cls = sorted_w.index(w)
        for name in TRAIN_NAMES:
            idx = int(name.split("_")[1].split(".")[0])
            _jpeg(base / "train" / w / "images" / name.format(w=w), _colour(cls, idx))
        (base / "train" / w / f"{w}_boxes.txt").write_text("")  # present in the real layout, ignored
    # val: 2 images per class, interleaved and out of class order.
    val = []
    for j in range(2):
        for w in reversed(WNIDS):
            val.append((f"val_{len(val)}.JPEG", w))
    lines = []
    for i, (fname, w) in enumerate(val):
        mode = "L" if (grey_first_val and i == 0) else "RGB"
        _jpeg(base / "val" / "images" / fname, _val_colour(sorted_w.index(w), i), mode=mode)
        lines.append(f"{fname}\t{w}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True)  # unlabelled official test set: ignored
    return {"base": base, "val": val, "sorted": sorted_w}


def _pixel(x: torch.Tensor) -> list[int]:
    return x[:, 32, 32].tolist()


def _close(got: list[int], want: tuple[int, int, int], tol: int = 4) -> bool:
    return all(abs(g - w) <= tol for g, w in zip(got, want))


def test_tinyimagenet_layout(tmp_path: Path) -> None:
    ref = make_tinyimagenet(tmp_path)
    ds = load_dataset("tinyimagenet", data_root=tmp_path)
    n_cls, per = len(WNIDS), len(TRAIN_NAMES)
    assert ds.name == "tinyimagenet" and ds.num_classes == n_cls
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (n_cls * per, 3, 64, 64)
    assert ds.x_test.dtype == torch.uint8 and ds.x_test.shape == (len(ref["val"]), 3, 64, 64)
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    # Classes in sorted-wnid order; within a class, files in string order of their names.
    assert ds.y_train.tolist() == [c for c in range(n_cls) for _ in range(per)]
    for i in range(n_cls * per):
        cls, idx = divmod(i, per)
        assert _close(_pixel(ds.x_train[i]), _colour(cls, SORTED_IDX[idx])), (i, _pixel(ds.x_train[i]))
    # Test set: val_annotations.txt order.
    assert ds.y_test.tolist() == [ref["sorted"].index(w) for _, w in ref["val"]]
    for i in range(1, len(ref["val"])):
        assert _close(_pixel(ds.x_test[i]), _val_colour(int(ds.y_test[i]), i))
    # A greyscale JPEG becomes three equal channels.
    g = _pixel(ds.x_test[0])
    assert g[0] == g[1] == g[2]
    assert ds.class_names == [f"thing {w[-7]}" for w in ref["sorted"]]
    assert ds.mean == pytest.approx(channel_stats(ds.x_train)[0])
    # The layout folder itself works as the root too, with the same result.
    again = load_dataset("tinyimagenet", data_root=ref["base"])
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_tinyimagenet_first_classes(tmp_path: Path) -> None:
    ref = make_tinyimagenet(tmp_path)
    full = load_dataset("tinyimagenet", data_root=tmp_path)
    ds = load_dataset("tinyimagenet", data_root=tmp_path, classes=2)
    per = len(TRAIN_NAMES)
    assert ds.num_classes == 2 and ds.class_names == full.class_names[:2]
    # The first N classes of the canonical order: a prefix of the full training set.
    assert torch.equal(ds.x_train, full.x_train[: 2 * per]) and torch.equal(ds.y_train, full.y_train[: 2 * per])
    keep = [i for i, (_, w) in enumerate(ref["val"]) if w in ref["sorted"][:2]]
    assert ds.y_test.tolist() == [ref["sorted"].index(ref["val"][i][1]) for i in keep]
    assert torch.equal(ds.x_test, full.x_test[keep])
    assert set(ds.y_test.tolist()) == {0, 1}
    assert ds.fingerprint("train") != full.fingerprint("train")
    assert load_dataset("tinyimagenet", data_root=tmp_path, classes=4).fingerprint("test") == full.fingerprint("test")
    for bad in (0, 5, -1):
        _one_line_error("tinyimagenet", tmp_path, "classes", classes=bad)


def test_tinyimagenet_missing_layout(tmp_path: Path) -> None:
    _one_line_error("tinyimagenet", tmp_path, "tiny-imagenet-200")


@pytest.mark.parametrize("damage", ["no-wnids", "no-val-annotations", "no-class-folder", "empty-class",
                                    "missing-val-image", "corrupt-jpeg", "wrong-size", "bad-annotation"])
def test_tinyimagenet_damaged(tmp_path: Path, damage: str) -> None:
    ref = make_tinyimagenet(tmp_path)
    base = ref["base"]
    w = ref["sorted"][1]
    if damage == "no-wnids":
        (base / "wnids.txt").unlink()
        want = "wnids.txt"
    elif damage == "no-val-annotations":
        (base / "val" / "val_annotations.txt").unlink()
        want = "val_annotations.txt"
    elif damage == "no-class-folder":
        for f in (base / "train" / w / "images").iterdir():
            f.unlink()
        (base / "train" / w / "images").rmdir()
        want = w
    elif damage == "empty-class":
        for f in (base / "train" / w / "images").iterdir():
            f.unlink()
        want = w
    elif damage == "missing-val-image":
        (base / "val" / "images" / "val_3.JPEG").unlink()
        want = "val_3.JPEG"
    elif damage == "corrupt-jpeg":
        p = base / "train" / w / "images" / f"{w}_2.JPEG"
        p.write_bytes(p.read_bytes()[:40])
        want = f"{w}_2.JPEG"
    elif damage == "wrong-size":
        _jpeg(base / "train" / w / "images" / f"{w}_1.JPEG", (1, 2, 3), size=32)
        want = "32x32"
    else:
        with open(base / "val" / "val_annotations.txt", "a") as f:
            f.write("val_99.JPEG\n")
        want = "val_annotations.txt"
    _one_line_error("tinyimagenet", tmp_path, want)
