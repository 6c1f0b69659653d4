"""The Table 2 learning-rate grid (pipeline --lr-grid): chosen on the validation slice, refused
without one, carried into every Table 2 run's configuration and folder name."""

from __future__ import annotations

import json
import math

import pytest

from memadv.bat.runs import run_name
from memadv.bat.train_config import TrainConfig
from memadv.errors import ConfigError
from memadv.estimate.config import EstimateConfig
from memadv.experiments import lr_grid
from memadv.experiments.pipeline_config import PipelineConfig, run_names
from memadv.paper.table2 import TABLE_RUNS
from memadv.layout import RunLayout


def test_choose_takes_the_highest_value_never_a_nan_and_the_first_listed_on_ties():
    assert lr_grid.choose({0.1: 0.30, 0.01: 0.42}) == 0.01
    assert lr_grid.choose({0.1: math.nan, 0.01: 0.05}) == 0.01          # a diverged run never wins
    assert lr_grid.choose({0.1: 0.30, 0.01: 0.30, 0.03: 0.2}) == 0.1    # ties: the first listed
    assert lr_grid.choose({0.1: math.nan, 0.01: math.nan}) == 0.1


@pytest.mark.parametrize("kw,match", [
    (dict(lr_grid=[0.1, 0.01]), "set --val-fraction"),
    (dict(lr_grid=[0.1, 0.01], val_fraction=0.1), "--ablation false"),
    (dict(lr_grid=[0.1, -1.0], val_fraction=0.1, ablation=False), "--lr-grid must be in"),
])
def test_the_grid_is_refused_without_a_validation_slice_or_with_the_ablation(kw, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig(**kw)


def test_a_run_at_another_lr_has_its_own_folder_name():
    assert run_name(TrainConfig(method="mart", seed=2)) == "mart-seed2"
    assert run_name(TrainConfig(method="mart", seed=2, lr=0.01, val_fraction=0.1)) == "mart-lr0.01-val0.1-seed2"


def test_table_runs_take_the_chosen_lr_once_the_grid_made_its_choice(tmp_path):
    pcfg = PipelineConfig(lr_grid=[0.1, 0.01], val_fraction=0.1, ablation=False, train_seeds=[0, 1])
    cfg = EstimateConfig(dataset="digits")
    before = run_names(pcfg.table_runs(cfg, tmp_path))
    assert "mart-val0.1-seed1" in before and pcfg.chosen_lrs(tmp_path) is None   # no choice yet: default lr
    grid = pcfg.lr_grid_runs(cfg, tmp_path)
    assert [len(g) for g in grid] == [2] * len(TABLE_RUNS) and {r["seed"] for g in grid for r in g} == {0}
    choices = [{"run": r, "lr": 0.01 if r["method"] == "mart" else 0.1} for r in TABLE_RUNS]
    path = RunLayout(tmp_path).lr_choice
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"grid": [0.1, 0.01], "choices": choices}))
    after = run_names(pcfg.table_runs(cfg, tmp_path))
    assert "mart-lr0.01-val0.1-seed1" in after and "pgd-val0.1-seed1" in after and len(after) == len(before)
    # a choice made with another grid is not this grid's
    path.write_text(json.dumps({"grid": [0.1, 0.03], "choices": choices}))
    assert pcfg.chosen_lrs(tmp_path) is None


def test_write_choice_reads_the_validation_accuracy_of_real_grid_runs(tmp_path):
    """Two real PGD-AT runs on digits with a validation slice: lr 0.1 learns, lr 1e-5 barely moves
    in 3 epochs, so the grid chooses 0.1 and records both validation accuracies."""
    from memadv.bat.train import train
    dirs = []
    for lr in (1e-5, 0.1):
        cfg = TrainConfig(method="pgd", dataset="digits", epochs=3, lr=lr, val_fraction=0.2, progress=False,
                          eval_max=100, final_attacks=["clean"], final_max=50)
        dirs.append(train(cfg, tmp_path / "grid"))
    assert dirs[0].name == "pgd-lr1e-05-val0.2-seed0"
    choices = lr_grid.write_choice(tmp_path, [{"method": "pgd"}], [1e-5, 0.1], [dirs])
    assert choices[0]["lr"] == 0.1 and choices[0]["val_clean"]["0.1"] > choices[0]["val_clean"]["1e-05"]
    assert json.loads(RunLayout(tmp_path).lr_choice.read_text())["grid"] == [1e-5, 0.1]
