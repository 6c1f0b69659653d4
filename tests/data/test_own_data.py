"""Issue 20: a user's own data (imagefolder, hf, arrays), read from real files this test writes and
checked against an independent reading (Pillow, pyarrow, numpy, hashlib)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from own_data_files import (CLASSES, random_images, write_hub_parquet, write_imagefolder,
                            write_save_to_disk)
from PIL import Image

from memadv.data import own_images
from memadv.data.dataset import OWN_DATA, fingerprint_labels
from memadv.data.registry import load_dataset
from memadv.errors import DatasetError


def _data(n_train: int = 12, n_test: int = 6, shape=(8, 8, 3), seed: int = 0):
    x = {"train": random_images(n_train, seed, shape), "test": random_images(n_test, seed + 1, shape)}
    y = {"train": np.arange(n_train) % 3, "test": np.arange(n_test) % 3}
    return x, y


def _independent_fingerprint(split: str, x_nchw: np.ndarray, labels: np.ndarray) -> str:
    """The documented fingerprint, computed here from scratch: sha256 over (own-data, split, N, int64
    labels, pixel digest), the pixel digest being sha256 over the (N, C, H, W) shape and bytes."""
    pix = hashlib.sha256(repr(tuple(x_nchw.shape)).encode())
    pix.update(np.ascontiguousarray(x_nchw, dtype=np.uint8).tobytes())
    h = hashlib.sha256(f"{OWN_DATA}\0{split}\0{labels.shape[0]}\0".encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    h.update(b"\0pixels\0" + pix.hexdigest()[:16].encode())
    return h.hexdigest()[:16]


@pytest.fixture(autouse=True)
def _fresh_memo():
    own_images._MEMO.clear()  # each test reads its own files
    yield
    own_images._MEMO.clear()


def test_imagefolder_png_ids_paths_labels_fingerprints_against_independent_reading(tmp_path):
    x, y = _data()
    rels = write_imagefolder(tmp_path, x, y)
    (tmp_path / "train" / "ant" / ".DS_Store").write_bytes(b"hidden: ignored")
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.class_names == CLASSES and ds.num_classes == 3
    for split in ("train", "test"):
        assert ds.paths[split] == rels[split]  # id = position in sorted relative-path order
        want_x = np.stack([np.asarray(Image.open(tmp_path / r).convert("RGB")) for r in rels[split]]).transpose(0, 3, 1, 2)
        want_y = np.array([CLASSES.index(r.split("/")[1]) for r in rels[split]])
        assert np.array_equal(ds.images(split).numpy(), want_x)
        assert np.array_equal(ds.labels(split).numpy(), want_y)
        assert ds.fingerprint(split) == _independent_fingerprint(split, want_x, want_y)
    train = np.stack([np.asarray(Image.open(tmp_path / r).convert("RGB")) for r in rels["train"]]) / 255.0
    assert np.allclose(ds.mean, train.mean(axis=(0, 1, 2)), rtol=1e-12)  # statistics of the training images
    assert np.allclose(ds.std, train.reshape(-1, 3).std(axis=0, ddof=1), rtol=1e-12)


def test_imagefolder_jpeg_upper_case_extension_and_val_folder(tmp_path):
    x, y = _data(seed=3)
    write_imagefolder(tmp_path, x, y, ext=".JPG", test_folder="val")
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.paths["test"][0].startswith("val/") and ds.x_test.shape == (6, 3, 8, 8)
    want = np.asarray(Image.open(tmp_path / ds.paths["train"][4]).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(ds.x_train[4].numpy(), want)  # the JPEG as Pillow decodes it


def test_hub_parquet_and_save_to_disk_equal_the_imagefolder_tree(tmp_path):
    x, y = _data(seed=5)
    rels = write_imagefolder(tmp_path / "tree", x, y)
    # the tree's canonical order (sorted paths) is the row order written to the Hub files
    order = {s: np.array([int(r.rsplit("/", 1)[1][:3]) for r in rels[s]]) for s in x}
    xs, ys = {s: x[s][order[s]] for s in x}, {s: y[s][order[s]] for s in x}
    write_hub_parquet(tmp_path / "hub", xs, ys)
    write_save_to_disk(tmp_path / "saved", xs, ys)
    tree = load_dataset("imagefolder", tmp_path / "tree")
    for kind, root in (("hf", tmp_path / "hub"), ("hf", tmp_path / "saved")):
        ds = load_dataset(kind, root)
        assert ds.class_names == CLASSES  # from the ClassLabel feature
        for split in ("train", "test"):
            assert np.array_equal(ds.images(split).numpy(), tree.images(split).numpy())
            assert np.array_equal(ds.labels(split).numpy(), tree.labels(split).numpy())
            assert ds.fingerprint(split) == tree.fingerprint(split)


def test_hf_named_columns_and_no_class_label(tmp_path):
    x, y = _data(seed=7)
    write_hub_parquet(tmp_path, x, y, classes=None, image_column="picture", label_column="target", shards=1)
    with pytest.raises(DatasetError, match="no image column named img or image.*--image-column"):
        load_dataset("hf", tmp_path)
    ds = load_dataset("hf", tmp_path, image_column="picture", label_column="target")
    assert ds.class_names == ["0", "1", "2"] and np.array_equal(ds.y_train.numpy(), y["train"])


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_arrays_layouts_detected(tmp_path, layout):
    x, y = _data(shape=(8, 8, 3) if layout != "NHW" else (8, 8))
    arrays = {s: (x[s].transpose(0, 3, 1, 2) if layout == "NCHW" else x[s]) for s in x}
    np.savez(tmp_path / "d.npz", x_train=arrays["train"], y_train=y["train"], x_test=arrays["test"], y_test=y["test"],
             class_names=np.array(CLASSES))
    ds = load_dataset("arrays", tmp_path / "d.npz")
    want = x["train"][:, None] if layout == "NHW" else x["train"].transpose(0, 3, 1, 2)
    assert np.array_equal(ds.x_train.numpy(), want) and ds.class_names == CLASSES
    assert ds.fingerprint("train") == _independent_fingerprint("train", want, y["train"])


def test_arrays_ambiguous_layout_needs_the_option(tmp_path):
    x = np.zeros((4, 3, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(4, int), x_test=x, y_test=np.zeros(4, int))
    with pytest.raises(DatasetError, match="--array-layout"):
        load_dataset("arrays", tmp_path / "d.npz")
    assert load_dataset("arrays", tmp_path / "d.npz", array_layout="NCHW").x_train.shape == (4, 3, 5, 3)


def test_mixed_sizes_refused_then_resized_and_mixed_modes_converted(tmp_path, capsys):
    x, y = _data()
    write_imagefolder(tmp_path, x, y)
    Image.fromarray(random_images(1, 9, (10, 6, 3))[0]).save(tmp_path / "train" / "bee" / "zzz.png")
    with pytest.raises(DatasetError, match=r"zzz.png' is 6x10 .*--image-size"):
        load_dataset("imagefolder", tmp_path)
    Image.fromarray(random_images(1, 9, (8, 8))[0]).save(tmp_path / "test" / "ant" / "grey.png")
    ds = load_dataset("imagefolder", tmp_path, image_size=[8, 8])
    assert ds.x_train.shape[1:] == (3, 8, 8) and ds.x_train.shape[0] == 13
    assert "1 of 20 images were grey and were converted to colour" in capsys.readouterr().err
    grey = ds.x_test[ds.paths["test"].index("test/ant/grey.png")].numpy()
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[0], grey[2])


def test_cache_serves_a_later_load_without_decoding(tmp_path, monkeypatch):
    x, y = _data()
    write_imagefolder(tmp_path / "d", x, y)
    first = load_dataset("imagefolder", tmp_path / "d", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("own-data-*.npz"))) == 1
    own_images._MEMO.clear()
    monkeypatch.setattr(own_images, "_decode_one", lambda *a: pytest.fail("decoded again"))
    again = load_dataset("imagefolder", tmp_path / "d", cache_dir=tmp_path / "cache", per_class=2)
    assert again.fingerprint("test") == first.fingerprint("test") and again.paths == first.paths
    assert again.example_paths("train") == [first.paths["train"][i] for i in (0, 1, 4, 5, 8, 9)]
    os.utime(tmp_path / "d" / first.paths["train"][0], ns=(1, 1))  # a changed file: another key, decoded again
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        load_dataset("imagefolder", tmp_path / "d", cache_dir=tmp_path / "cache")


def _tree(tmp_path):
    x, y = _data()
    write_imagefolder(tmp_path, x, y)
    return tmp_path


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "train/ant/000.png").write_bytes((r / "train/ant/000.png").read_bytes()[:40]),
     r"cannot decode image '.*train/ant/000.png'"),
    (lambda r: (r / "train/bee/x.png").write_bytes(b"not a png"), r"cannot decode image '.*train/bee/x.png'"),
    (lambda r: (r / "train/dog").mkdir(), r"class folder '.*train/dog' holds no image"),
    (lambda r: (r / "test/emu").mkdir() or (r / "test/emu/1.png").write_bytes(b""),
     r"test class folder '.*test/emu' has no training folder"),
    (lambda r: (r / "train/cat/notes.txt").write_text("x"), r"'.*train/cat/notes.txt' is not an image file"),
    (lambda r: (r / "test").rename(r / "elsewhere"), r"missing folder '.*test'"),
])
def test_imagefolder_bad_input_is_one_line_naming_the_file(tmp_path, damage, message):
    root = _tree(tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset("imagefolder", root)
    assert "\n" not in str(e.value)


def test_hf_label_outside_the_class_range(tmp_path):
    x, y = _data()
    y["test"][2] = 3  # three ClassLabel names: 0..2
    write_hub_parquet(tmp_path, x, y, shards=1)
    with pytest.raises(DatasetError, match=r"test-00000-of-00001.parquet: row 2: label 3 is outside the class range 0..2"):
        load_dataset("hf", tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("x_train", np.full((4, 8, 8), np.nan), "x_train holds NaN"),
    ("x_test", np.full((4, 8, 8), 300, dtype=np.int32), "x_test holds values outside 0..255"),
    ("y_train", np.array([0, 1, 2, 9]), r"y_train\[3\]: label 9 is outside the class range 0..2"),
    ("y_test", None, "has no key 'y_test'"),
])
def test_arrays_bad_input_names_the_key(tmp_path, key, value, message):
    arrays = {"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 2, 0]),
              "x_test": np.zeros((4, 8, 8), np.uint8), "y_test": np.array([0, 1, 2, 0]), "class_names": np.array(CLASSES)}
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset("arrays", tmp_path / "d.npz")


def test_larger_than_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.setattr(own_images, "available_memory", lambda: 1000)  # 18 images of 8x8x3 need 3,456 bytes
    with pytest.raises(DatasetError, match="need .* GiB, more than the .* GiB of memory available"):
        load_dataset("imagefolder", root)


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from memadv.cli.main import main

    root = _tree(tmp_path / "d")
    (root / "train/cat/notes.txt").write_text("x")
    out = tmp_path / "run"
    code = main(["estimate", "--dataset", "imagefolder", "--data-root", str(root), "--net", "mlp", "--models", "2",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "notes.txt' is not an image file" in err and not out.exists()


def test_decoding_in_worker_processes_keeps_order_and_names_a_bad_file(tmp_path):
    x, y = _data(n_train=20)
    rels = write_imagefolder(tmp_path, x, y)
    examples = [own_images.Example(tmp_path / r, 0, r, r) for r in rels["train"]]
    serial = own_images.decode(examples, None, workers=1)
    parallel = own_images.decode(examples, None, workers=2, chunk=3)
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel)) and len(parallel) == 20
    (tmp_path / rels["train"][13]).write_bytes(b"broken")
    with pytest.raises(DatasetError, match=f"cannot decode image '{rels['train'][13]}'"):
        own_images.decode(examples, None, workers=2, chunk=3)


def test_histogram_statistics_equal_channel_stats():
    import torch

    from memadv.data.dataset import channel_stats

    x = np.random.default_rng(0).integers(0, 256, (50, 3, 9, 7), dtype=np.uint8)
    got, want = own_images.uint8_channel_stats(x), channel_stats(torch.from_numpy(x))
    assert np.allclose(got, want, rtol=1e-12, atol=0)


def test_hf_rows_with_a_path_only_and_a_validation_split(tmp_path):
    """A Hub row may hold only the image's path (read relative to the data root); `validation-*`
    shards serve as the test split when there are no `test-*` shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = _data(seed=11)
    rels = write_imagefolder(tmp_path, x, y)
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for split, name in (("train", "train"), ("test", "validation")):
        cells = [{"bytes": None, "path": r} for r in rels[split]]
        labels = [CLASSES.index(r.split("/")[1]) for r in rels[split]]
        pq.write_table(pa.table({"image": pa.array(cells, type=struct), "fine_label": pa.array(labels)}),
                       tmp_path / f"{name}-00000-of-00001.parquet")
    ds, tree = load_dataset("hf", tmp_path), load_dataset("imagefolder", tmp_path)
    assert ds.paths == tree.paths and ds.fingerprint("test") == tree.fingerprint("test")
    assert ds.class_names == ["0", "1", "2"]  # no ClassLabel feature: the label values
