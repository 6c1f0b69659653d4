"""The files of a training run: checkpoints are read without unpickling code."""

from __future__ import annotations

import collections

import pytest
import torch

from memadv.bat.runs import load_checkpoint, save_checkpoint
from memadv.errors import MemadvError


class NotAllowed:
    """Any class: unpickling it would import and run code named by the file."""


def test_checkpoint_round_trip_with_rng_states(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": {"torch": torch.get_rng_state(),
             "python": (3, tuple(range(5)), None), "numpy": ["MT19937", torch.arange(4), 1, 0, 0.0]},
             "metrics": [{"epoch": 1, "lr": 0.1}], "best": {"adv": (0.5, 1)},
             "milestones": collections.Counter({15: 1, 23: 1})}
    save_checkpoint(tmp_path / "last.pt", state)
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["rng"]["python"] == state["rng"]["python"] and back["milestones"] == state["milestones"]


def test_a_checkpoint_holding_an_arbitrary_object_is_refused(tmp_path):
    torch.save({"model": {}, "epoch": 1, "payload": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(MemadvError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def _fake_run(folder, method="pgd", metrics=True, final=False):
    """A run folder as memadv.bat.train writes it, without training (config, metrics, final)."""
    import json

    import pandas as pd

    from memadv.bat.runs import FINAL_COLUMNS
    from memadv.files.tables import write_table

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"method": method, "seed": 0},
                                                    "objective": {"alpha": 2.0, "eps": 0.25, "not_a_field": 1}}))
    if metrics:  # written out of epoch order: the reader sorts
        write_table(folder / "metrics.parquet", pd.DataFrame({"epoch": [2, 1], "loss": [0.5, 0.9]}), {})
    if final:
        write_table(folder / "final.parquet", pd.DataFrame([["last", 2, "test/all", "clean", 0.5, 10]],
                                                           columns=FINAL_COLUMNS), {})
    return folder


def test_find_training_runs_in_a_run_folder_a_train_folder_and_one_run(tmp_path):
    from memadv.bat.runs import find_training_runs

    train = tmp_path / "RUN" / "train"
    _fake_run(train / "pgd-seed0")
    _fake_run(train / "bat-seed0", method="bat", metrics=False)
    (train / ".sweep" / "x").mkdir(parents=True)  # bookkeeping of the sweep: not a run
    (train / ".sweep" / "config.json").write_text("{}")
    (train / "empty").mkdir()
    names = ["bat-seed0", "pgd-seed0"]
    assert [r.name for r in find_training_runs(tmp_path / "RUN")] == names
    assert [r.name for r in find_training_runs(train)] == names
    assert [r.name for r in find_training_runs(train / "pgd-seed0")] == ["pgd-seed0"]
    assert find_training_runs(tmp_path / "absent") == []


def test_training_run_reads_metrics_in_epoch_order_and_its_objective_config(tmp_path):
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.runs import TrainingRun

    run = TrainingRun(_fake_run(tmp_path / "bat-seed0", method="bat", final=True))
    assert run.has_config() and run.has_metrics() and run.is_finished() and not run.has_checkpoint()
    m = run.metrics()
    assert m["epoch"].tolist() == [1, 2] and m["loss"].tolist() == [0.9, 0.5] and m.index.tolist() == [0, 1]
    ocfg = run.objective_config()  # a key this version does not know is left out
    assert isinstance(ocfg, ObjectiveConfig) and ocfg.alpha == 2.0 and ocfg.eps == 0.25
    assert run.final()["acc"].tolist() == [0.5]
    with pytest.raises(MemadvError, match="no config.json"):
        TrainingRun(tmp_path / "absent").config()
