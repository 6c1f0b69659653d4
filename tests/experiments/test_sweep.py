"""Sweep files: expansion (methods x hyper-parameters x seeds), validation, running as resumable tasks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from memadv.experiments.sweep import expand_sweep, plan_sweep
from memadv.cli.main import main
from memadv.errors import ConfigError

torch.set_num_threads(1)  # tiny MLPs: threads only contend on a shared machine


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(text)
    return p


GRID = """
dataset = "digits"
epochs = 1
final_attacks = ["clean", "pgd"]
seeds = [0, 1]
[[runs]]
method = "pgd"
[[runs]]
method = "bat"
alpha = [0, 1, 2, 3]
beta = [0, 0.1, 0.2, 0.3]
"""


def test_expand_methods_grid_and_seeds(tmp_path):
    runs, settings = expand_sweep(_write(tmp_path, GRID))
    assert len(runs) == 2 * (1 + 16)
    assert all(r["final_attacks"] == ["clean", "pgd"] for r in runs)  # a list option is a value, not swept
    bat = [r for r in runs if r["method"] == "bat"]
    assert {(r["alpha"], r["beta"], r["seed"]) for r in bat} == {
        (a, b, s) for a in (0, 1, 2, 3) for b in (0, 0.1, 0.2, 0.3) for s in (0, 1)}
    assert settings["out"] is None
    task, names = plan_sweep(_write(tmp_path, GRID), tmp_path / "out")
    assert len(set(names)) == len(runs)
    assert "bat-alpha1-beta0.2-seed1" in names and "pgd-seed0" in names


def test_list_of_lists_sweeps_a_list_option(tmp_path):
    runs, _ = expand_sweep(_write(tmp_path, 'method = "erm"\nmilestones = [[1, 2], [2, 3]]\n'))
    assert [r["milestones"] for r in runs] == [[1, 2], [2, 3]]


@pytest.mark.parametrize("text, message", [
    ('method = "pgd"\nalphaa = 1\n', "unknown option 'alphaa'"),
    ('[[runs]]\nmethod = "bat"\nalpha = [1, -1]\n', "--alpha must be in"),
    ('[[runs]]\nmethod = "sgd"\n', "unknown method 'sgd'"),
    ('method = "pgd"\n[[runs]]\nseed = 1\n[[runs]]\nseed = 1\n', "both write 'pgd-seed1'"),
    ('seeds = []\n', "seeds must be a non-empty list"),
    ('method = "pgd"\n[[runs]]\ndevice = "cpu"\n', "machine options"),
    ('method = [\n', "not valid TOML"),
])
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, capsys, text, message):
    out = tmp_path / "out"
    rc = main(["train", "--sweep", str(_write(tmp_path, text)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_run_options_beside_sweep_are_refused(tmp_path, capsys):
    rc = main(["train", "--sweep", str(_write(tmp_path, GRID)), "--alpha", "2"])
    assert rc == 2 and "--alpha belong in the sweep file" in capsys.readouterr().err


def test_sweep_runs_every_point_as_a_resumable_task(tmp_path, capsys):
    sweep = _write(tmp_path, """
dataset = "digits"
epochs = 1
final_attacks = ["clean"]
eval_max = 200
[[runs]]
method = "erm"
steps = 3
[[runs]]
method = "pgd"
seed = [0, 1]
""")
    out = tmp_path / "out"
    assert main(["train", "--sweep", str(sweep), "--out", str(out), "--executor", "inprocess",
                 "--progress", "false"]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == ["erm-seed0", "pgd-seed0", "pgd-seed1"]
    for name in ("erm-seed0", "pgd-seed0", "pgd-seed1"):
        m = pd.read_parquet(out / name / "metrics.parquet")
        assert list(m["epoch"]) == [1] and (out / name / "final.parquet").exists()
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/last.pt")}
    # a re-run finds every run finished and trains nothing
    assert main(["train", "--sweep", str(sweep), "--out", str(out), "--progress", "false"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/last.pt")} == before


def test_missing_sweep_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        expand_sweep(tmp_path / "missing.toml")
