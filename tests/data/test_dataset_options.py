"""Issue 10 item 17: every data-set option travels with a run, and is refused where it does not apply.

A small fake Tiny ImageNet layout (``--classes``) and small IDX files (``--per-class``) go through
estimate -> splits -> figures scores -> train on the command line, as a user would run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_disk_layouts import make_tinyimagenet  # same folder (pytest puts it on sys.path)
from test_idx_mnist import fake_arrays, write_idx_set

from memadv.cli.main import main
from memadv.data import load_dataset
from memadv.errors import ConfigError

TINY = ["--models", "4", "--models-per-shard", "4", "--epochs", "1", "--full-models", "0", "--net", "mlp"]


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def train_config(out: Path) -> dict:
    runs = [p for p in out.iterdir() if (p / "config.json").is_file()]
    assert len(runs) == 1, runs
    return json.loads((runs[0] / "config.json").read_text())["train"]


def through_every_stage(run_dir: Path, dataset: str, root: Path, opts: list[str], capsys) -> Path:
    """estimate (with ``opts``) -> splits -> figures scores -> train --scores (without ``opts``)."""
    code, err = run(["estimate", "--dataset", dataset, "--data-root", root, *opts, *TINY, "--out", run_dir], capsys)
    assert code == 0, err
    spec = json.loads((run_dir / "estimate" / "spec.json").read_text())
    code, err = run(["splits", run_dir, "--allow-partial"], capsys)
    assert code == 0, err
    # the figures reload the data set from the scores' metadata: no --data-root, no --classes
    code, err = run(["figures", "scores", run_dir, "--per-level", "1", "--n-pairs", "1"], capsys)
    assert code == 0, err
    out = run_dir / "train"
    code, err = run(["train", "--dataset", dataset, "--scores", run_dir / "scores", "--method", "bat",
                     "--epochs", "1", "--net", "mlp", "--device", "cpu", "--final-max", "2",
                     "--final-attacks", "clean", "--eval-max", "4", "--out", out], capsys)
    assert code == 0, err
    return out, spec


def test_classes_travel_from_estimate_to_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_tinyimagenet(tmp_path / "data")
    run_dir = tmp_path / "run"
    out, spec = through_every_stage(run_dir, "tinyimagenet", tmp_path / "data", ["--classes", "2"], capsys)
    assert spec["config"]["classes"] == 2 and spec["n_train"] == 8
    conf = train_config(out)
    assert conf["classes"] == 2 and conf["data_root"] == str(tmp_path / "data")
    assert sorted(p.name for p in (run_dir / "report" / "scores").iterdir() if p.suffix == ".png")
    # a different --classes than the scores' is refused in one line, before any run folder is made
    code, err = run(["train", "--dataset", "tinyimagenet", "--scores", run_dir / "scores", "--classes", "3",
                     "--epochs", "1", "--net", "mlp", "--out", tmp_path / "other"], capsys)
    assert code == 2 and "--classes 3 differs from the scores" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()


def test_per_class_travels_from_estimate_to_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "fm"
    write_idx_set(root, fake_arrays(n_train=80, n_test=30, side=6, seed=3), gz=True)
    run_dir = tmp_path / "run"
    out, spec = through_every_stage(run_dir, "fashion-mnist", root, ["--per-class", "3", "--test-per-class", "2"],
                                    capsys)
    ds = load_dataset("fashion-mnist", root, per_class=3, test_per_class=2)
    assert spec["n_train"] == ds.x_train.shape[0] < 80
    conf = train_config(out)
    assert (conf["per_class"], conf["test_per_class"], conf["classes"]) == (3, 2, None)
    # the scores' canonical ids land on the reduced copy's positions
    from memadv.bat.inputs import load_mem
    from memadv.scores.schema import read_scores

    mem = load_mem(run_dir / "scores", ds).numpy()
    by_id = dict(zip(read_scores(run_dir).mem["idx"], read_scores(run_dir).mem["mem"]))
    assert [by_id[i] for i in ds.ids("train")] == pytest.approx(mem.tolist(), nan_ok=True)
    assert ds.ids("train").max() >= len(ds.ids("train"))  # ids are not positions: the mapping is exercised


@pytest.mark.parametrize("cls", ["EstimateConfig", "TrainConfig"])
def test_classes_refused_where_it_does_not_apply(cls: str) -> None:
    from memadv.bat.train_config import TrainConfig
    from memadv.estimate.config import EstimateConfig

    make = {"EstimateConfig": EstimateConfig, "TrainConfig": TrainConfig}[cls]
    with pytest.raises(ConfigError, match="--classes applies only to tinyimagenet, not to dataset 'cifar100'"):
        make(dataset="cifar100", classes=50)
    assert make(dataset="tinyimagenet", classes=50).classes == 50


def test_classes_for_cifar100_on_the_command_line_writes_nothing(tmp_path: Path, capsys) -> None:
    code, err = run(["estimate", "--dataset", "digits", "--classes", "5", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "applies only to tinyimagenet" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_options_of_old_score_files_come_from_their_spec() -> None:
    from memadv.data.registry import options_from_meta

    # files written before dataset_options existed: the spec's fields, minus --classes where it was ignored
    old = {"dataset": "cifar100", "spec": {"classes": 50, "per_class": 10, "test_per_class": None}}
    assert options_from_meta(old) == {"per_class": 10}
    assert options_from_meta({"dataset": "tinyimagenet", "spec": {"classes": 50}}) == {"classes": 50}
    assert options_from_meta({"dataset": "digits", "dataset_options": {"per_class": 4}}) == {"per_class": 4}
    assert options_from_meta({"dataset": "cifar10", "source": "feldman-zhang"}) == {}


def test_loaded_dataset_records_its_options() -> None:
    ds = load_dataset("digits", per_class=5)
    assert ds.options == {"per_class": 5}
    assert load_dataset("digits").options == {}
    assert np.bincount(ds.y_train.numpy()).tolist() == [5] * 10


def test_full_data_models_of_a_reduced_copy_speak_canonical_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The full-data models' test_acc_full.parquet uses the same original ids as test_acc.parquet
    (a reduced copy's test positions are not its ids), so splits can use it."""
    root = tmp_path / "fm"
    write_idx_set(root, fake_arrays(n_train=80, n_test=30, side=6, seed=3), gz=True)
    run_dir = tmp_path / "run"
    tiny = [a if a != "0" or i == 0 or TINY[i - 1] != "--full-models" else "2" for i, a in enumerate(TINY)]
    code, err = run(["estimate", "--dataset", "fashion-mnist", "--data-root", root, "--per-class", "3",
                     "--test-per-class", "2", *tiny, "--out", run_dir], capsys)
    assert code == 0, err
    from memadv.splits.erm_accuracy import read_full_test_acc
    ds = load_dataset("fashion-mnist", root, per_class=3, test_per_class=2)
    assert sorted(read_full_test_acc(run_dir)["idx"]) == sorted(ds.ids("test"))
    assert ds.ids("test").max() >= len(ds.ids("test"))  # ids are not positions: the mapping is exercised
    code, err = run(["splits", run_dir], capsys)
    assert code == 0, err
