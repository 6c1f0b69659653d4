"""IDX reader and the fashion-mnist / mnist loaders, on small IDX files the tests write (gzipped
and unpacked, Debian's flat layout and torchvision's FashionMNIST/raw and MNIST/raw layouts), every
bad-file case with its one-line error, and the real Debian files when they are installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from memadv.data import load_dataset
from memadv.data.dataset import channel_stats
from memadv.data.idx import idx_bytes, read_idx
from memadv.data.mnist import DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES
from memadv.data.registry import DEFAULT_ROOTS
from memadv.errors import DatasetError, IdxFileError

STEMS = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def fake_arrays(n_train: int = 23, n_test: int = 11, side: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}


def write_idx_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in STEMS.items():
        data = idx_bytes(arrays[key])
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return folder


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------ reader

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "a.idx"
    p.write_bytes(gzip.compress(idx_bytes(a)) if gz else idx_bytes(a))
    got = read_idx(p, 3)
    assert got.dtype == np.uint8 and np.array_equal(got, a)


def test_read_idx_header_is_big_endian(tmp_path: Path) -> None:
    # written by hand, not by idx_bytes: 0x00000103 images would read as 0x03010000 little-endian
    p = tmp_path / "labels"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 1, 3]) + bytes(range(259 % 256)) + bytes(259 - 259 % 256))
    assert read_idx(p, 1).shape == (259,)


@pytest.mark.parametrize("gz", [False, True])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path: Path, gz: bool) -> None:
    good = idx_bytes(np.zeros((4, 3, 3), np.uint8))
    cases = {
        "missing": None,
        "not-idx": b"\x12\x34" + good[2:],
        "wrong-type": good[:2] + b"\x0d" + good[3:],          # float32 elements
        "wrong-ndim": good[:3] + b"\x01" + good[4:],          # a labels header on an images file
        "short-header": good[:9],
        "truncated": good[:-5],
        "too-long": good + b"\x00",
        "empty": b"",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}{'.gz' if gz else ''}"
        if data is not None:
            p.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(IdxFileError) as err:
            read_idx(p, 3)
        assert str(p) in one_line(err), name


def test_damaged_gzip_is_an_idx_error(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 4, 4), np.uint8)))[:-20])
    with pytest.raises(IdxFileError) as err:
        read_idx(p, 3)
    assert "gzip" in one_line(err) and str(p) in str(err.value)


# ------------------------------------------------------------------------------------------ layouts

LAYOUTS = {  # name -> (dataset, folder written under tmp_path, --data-root given)
    "debian-flat": ("fashion-mnist", "fm", "fm"),
    "tv-fashion": ("fashion-mnist", "root/FashionMNIST/raw", "root"),
    "tv-fashion-folder": ("fashion-mnist", "root/FashionMNIST/raw", "root/FashionMNIST"),
    "tv-mnist": ("mnist", "root/MNIST/raw", "root"),
    "mnist-flat": ("mnist", "m", "m"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_load_in_canonical_order(tmp_path: Path, layout: str, gz: bool) -> None:
    name, folder, root = LAYOUTS[layout]
    a = fake_arrays()
    write_idx_set(tmp_path / folder, a, gz)
    ds = load_dataset(name, tmp_path / root)
    assert ds.name == name and ds.num_classes == 10
    assert ds.x_train.shape == (23, 1, 5, 5) and ds.x_test.shape == (11, 1, 5, 5)
    assert np.array_equal(ds.x_train[:, 0].numpy(), a["x_train"]) and np.array_equal(ds.x_test[:, 0].numpy(), a["x_test"])
    assert np.array_equal(ds.y_train.numpy(), a["y_train"]) and np.array_equal(ds.y_test.numpy(), a["y_test"])
    assert (ds.mean, ds.std) == channel_stats(ds.x_train)
    assert ds.class_names == (FASHION_MNIST_CLASSES if name == "fashion-mnist" else [str(d) for d in range(10)])


def test_unpacked_file_wins_over_gz(tmp_path: Path) -> None:
    """torchvision keeps the .gz next to the file it extracted; both hold the same data, so the
    faster unpacked one is read (checked by making the .gz unreadable)."""
    a = fake_arrays()
    folder = write_idx_set(tmp_path / "FashionMNIST" / "raw", a, gz=False)
    for stem in STEMS.values():
        (folder / (stem + ".gz")).write_bytes(b"garbage")
    assert np.array_equal(load_dataset("fashion-mnist", tmp_path).y_train.numpy(), a["y_train"])


def test_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    a = fake_arrays()
    folder = tmp_path / "fm"
    write_idx_set(folder, {**a, "y_train": a["y_train"][:-1]}, gz=True)
    with pytest.raises(IdxFileError) as err:
        load_dataset("fashion-mnist", folder)
    msg = one_line(err)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg and "23" in msg and "22" in msg
    write_idx_set(folder, {**a, "y_test": np.full(11, 10, np.uint8)}, gz=True)
    with pytest.raises(IdxFileError) as err:
        load_dataset("fashion-mnist", folder)
    assert "t10k-labels-idx1-ubyte.gz" in one_line(err) and "0..9" in str(err.value)


def test_missing_file_and_missing_layout(tmp_path: Path) -> None:
    folder = write_idx_set(tmp_path / "fm", fake_arrays(), gz=True)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(IdxFileError) as err:
        load_dataset("fashion-mnist", folder)
    assert str(folder / "t10k-images-idx3-ubyte") in one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path / "empty")
    assert "MNIST/raw" in one_line(err)


def test_default_root_missing_names_the_apt_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memadv.data.registry as registry

    monkeypatch.setitem(registry.DEFAULT_ROOTS, "fashion-mnist", (str(tmp_path / "absent"), DEFAULT_ROOTS["fashion-mnist"][1]))
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in one_line(err) and str(tmp_path / "absent") in str(err.value)
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist")
    assert "--data-root" in one_line(err)


def test_cli_error_is_one_line_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from memadv.cli.main import main

    folder = tmp_path / "fm"
    write_idx_set(folder, fake_arrays(), gz=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08\x03")
    out = tmp_path / "run"
    code = main(["estimate", "--dataset", "fashion-mnist", "--data-root", str(folder), "--models", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train-labels-idx1-ubyte.gz" in err
    assert not (out / "estimate" / "spec.json").exists()


@pytest.mark.parametrize("side", [0, (3, 0)], ids=["0x0", "3x0"])
def test_images_without_pixels_are_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     side) -> None:
    """Issue 18 item 9: IDX images of 0 x 0 pixels were accepted; estimate trained on nothing and wrote scores."""
    from memadv.cli.main import main

    arrays = fake_arrays()
    rows, cols = (side, side) if isinstance(side, int) else side
    arrays = {k: (np.zeros((len(v), rows, cols), np.uint8) if k.startswith("x") else v) for k, v in arrays.items()}
    folder = write_idx_set(tmp_path / "fm", arrays, gz=False)
    with pytest.raises(IdxFileError) as err:
        read_idx(folder / "train-images-idx3-ubyte", 3)
    assert "train-images-idx3-ubyte" in one_line(err) and "at least" in str(err.value)
    out = tmp_path / "run"
    code = main(["estimate", "--dataset", "fashion-mnist", "--data-root", str(folder), "--models", "2",
                 "--out", str(out), "--no-progress"])
    err_text = capsys.readouterr().err.strip()
    assert code == 2 and err_text.count("\n") == 0 and "images-idx3-ubyte" in err_text
    assert not out.exists()


# ------------------------------------------------------------------------------------------ real files

@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST, "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_real_debian_fashion_mnist() -> None:
    ds = load_dataset("fashion-mnist")  # the default root
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class (its README)
    assert np.bincount(ds.y_train.numpy(), minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.y_test.numpy(), minlength=10).tolist() == [1000] * 10
    # the fingerprint the code computes is stable across reads and differs between splits and sizes
    again = load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST)
    assert ds.fingerprint("train") == again.fingerprint("train") and ds.fingerprint("test") == again.fingerprint("test")
    assert ds.fingerprint("train") != ds.fingerprint("test")
    small = load_dataset("fashion-mnist", per_class=100)
    assert small.fingerprint("train") != ds.fingerprint("train") and small.fingerprint("test") == ds.fingerprint("test")
    print(f"fashion-mnist fingerprints: train {ds.fingerprint('train')}, test {ds.fingerprint('test')}")
