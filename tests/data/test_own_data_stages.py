"""Issue 20: estimate -> splits -> train on a user's own data in each layout, through the CLI, and
Fashion-MNIST images written as an ImageFolder tree and as Hub parquet giving the same fingerprints
and the same scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from own_data_files import CLASSES, write_hub_parquet, write_imagefolder

from memadv.cli.main import main
from memadv.data import own_images
from memadv.data.registry import load_dataset

FAST = ["--net", "mlp", "--models", "4", "--models-per-shard", "4", "--epochs", "2", "--batch-size", "16",
        "--full-models", "2", "--no-progress"]


def _learnable(n_per_class: int, seed: int, shape=(8, 8)) -> tuple[np.ndarray, np.ndarray]:
    """Images whose brightness tells the class (so the models learn something), noise on top."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = np.clip(y.reshape(-1, *[1] * len(shape)) * 90 + rng.integers(0, 60, (y.size, *shape)), 0, 255).astype(np.uint8)
    return x, y


def _write(kind: str, root: Path) -> Path:
    (xtr, ytr), (xte, yte) = _learnable(8, 0), _learnable(4, 1)
    if kind == "imagefolder":
        write_imagefolder(root, {"train": xtr, "test": xte}, {"train": ytr, "test": yte})
        return root
    if kind == "hf":
        write_hub_parquet(root, {"train": xtr, "test": xte}, {"train": ytr, "test": yte})
        return root
    root.mkdir()
    np.savez(root / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, class_names=np.array(CLASSES))
    return root / "d.npz"


@pytest.mark.parametrize("kind", ["imagefolder", "hf", "arrays"])
def test_estimate_splits_train_on_own_data(tmp_path, kind, capsys):
    own_images._MEMO.clear()
    data = _write(kind, tmp_path / "data")
    run = tmp_path / "run"
    assert main(["estimate", "--dataset", kind, "--data-root", str(data), *FAST, "--out", str(run)]) == 0
    assert "memadv: " + kind + ": per-data-set defaults of fashion-mnist" in capsys.readouterr().err
    assert len(list((run / "data-cache").glob("own-data-*.npz"))) == 1  # decoded once, for every later stage
    spec = json.loads((run / "estimate" / "spec.json").read_text())
    ds = load_dataset(kind, data)
    assert spec["fingerprint_train"] == ds.fingerprint("train")
    assert main(["splits", str(run)]) == 0
    csv = pd.concat([pd.read_csv(run / "splits" / f"{s}_{k}.csv").assign(split=s)
                     for s in ("train", "test") for k in ("atypical", "typical")])
    rows = pd.read_parquet(run / "splits" / "splits.parquet")
    assert len(rows) == len(csv) > 0
    if kind == "imagefolder":  # the relative path beside the id, joinable back to the files
        assert list(csv.columns) == ["idx", "label", "path", "split"]
        assert all(ds.paths[s][i] == p for s, i, p in zip(csv["split"], csv["idx"], csv["path"]))
        assert all(Path(data, p).is_file() for p in rows["path"])
    else:
        assert list(csv.columns) == ["idx", "label", "split"] and "path" not in rows.columns
    out = tmp_path / "train"
    own_images._MEMO.clear()  # the figures read the run's cache, as a later process would
    assert main(["figures", "scores", str(run)]) == 0
    assert list((run / "report" / "scores").glob("mem_examples_class*.png"))
    # --data-root may be left out: the run takes the estimate's (its spec records it)
    root = [] if kind == "arrays" else ["--data-root", str(data)]
    assert main(["train", "--method", "bat", "--dataset", kind, *root, "--scores", str(run),
                 "--net", "mlp", "--epochs", "1", "--batch-size", "16", "--final-attacks", "clean",
                 "--progress", "false", "--out", str(out)]) == 0
    final = list(out.glob("*/final.json")) + list(out.glob("*/final*.parquet"))
    assert final, sorted(p.name for p in out.rglob("*"))[:20]


def _fashion_subset(per_class_train: int = 6, per_class_test: int = 2):
    ds = load_dataset("fashion-mnist", per_class=per_class_train, test_per_class=per_class_test)
    return ({"train": ds.x_train[:, 0].numpy(), "test": ds.x_test[:, 0].numpy()},
            {"train": ds.y_train.numpy(), "test": ds.y_test.numpy()}, ds.class_names)


def test_fashion_mnist_as_imagefolder_and_as_hub_parquet_same_fingerprints_and_scores(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    own_images._MEMO.clear()
    x, y, names = _fashion_subset()
    # 'T-shirt/top' cannot be a folder name; the k- prefix makes the sorted folder names (ImageFolder's
    # class order) the Fashion-MNIST label order
    names = [f"{k}-{n.replace('/', '-')}" for k, n in enumerate(names)]
    rels = write_imagefolder(tmp_path / "tree", x, y, classes=names)
    order = {s: np.array([int(r.rsplit("/", 1)[1][:3]) for r in rels[s]]) for s in x}
    write_hub_parquet(tmp_path / "hub", {s: x[s][order[s]] for s in x}, {s: y[s][order[s]] for s in x}, classes=names)
    tree, hub = load_dataset("imagefolder", tmp_path / "tree"), load_dataset("hf", tmp_path / "hub")
    for split in ("train", "test"):
        assert tree.fingerprint(split) == hub.fingerprint(split)
        assert np.array_equal(tree.images(split).numpy()[:, 0], x[split][order[split]])  # the Fashion-MNIST pixels
    mems = {}
    for kind, root in (("imagefolder", tmp_path / "tree"), ("hf", tmp_path / "hub")):
        run = tmp_path / f"run-{kind}"
        assert main(["estimate", "--dataset", kind, "--data-root", str(root), *FAST, "--out", str(run)]) == 0
        mems[kind] = pd.read_parquet(run / "scores" / "mem.parquet").sort_values("idx")
    a, b = mems["imagefolder"], mems["hf"]
    assert np.array_equal(a["idx"], b["idx"]) and np.allclose(a["mem"], b["mem"], equal_nan=True)


def test_pipeline_and_report_on_own_arrays(tmp_path):
    """Every stage of `memadv pipeline` (estimate, splits, figures, Sections 3.1/3.2, BAT table,
    report) on an own .npz data set, quick settings."""
    own_images._MEMO.clear()
    data = _write("arrays", tmp_path / "data")
    run = tmp_path / "run"
    assert main(["pipeline", "--quick", "--dataset", "arrays", "--data-root", str(data), "--net", "mlp",
                 "--models", "4", "--models-per-shard", "4", "--epochs", "2", "--full-models", "2",
                 "--train-epochs", "1", "--final-attacks", "clean", "--ablation", "false", "--no-progress",
                 "--out", str(run)]) == 0
    html = (run / "report" / "report.html").read_text()
    assert "arrays" in html and len(list((run / "data-cache").glob("own-data-*.npz"))) == 1


def test_every_training_method_on_own_data(tmp_path):
    """`memadv train` with each method (BAT with scores of an estimate on the same data)."""
    from memadv.bat.methods import METHODS

    own_images._MEMO.clear()
    data = _write("imagefolder", tmp_path / "data")
    run = tmp_path / "run"
    assert main(["estimate", "--dataset", "imagefolder", "--data-root", str(data), *FAST, "--out", str(run)]) == 0
    for method in METHODS:
        scores = ["--scores", str(run)] if method == "bat" else []
        out = tmp_path / f"train-{method}"
        assert main(["train", "--method", method, "--dataset", "imagefolder", "--data-root", str(data), *scores,
                     "--net", "mlp", "--epochs", "1", "--batch-size", "16", "--final-attacks", "clean",
                     "--progress", "false", "--out", str(out)]) == 0, method
        assert list(out.glob("*/final*")), method
