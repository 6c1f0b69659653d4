"""`memadv train --executor local|slurm` runs the one training run as a task of that executor."""

from __future__ import annotations

import pandas as pd

from memadv.cli.main import main

TINY = ["--method", "pgd", "--epochs", "1", "--eval-max", "60", "--final-max", "30", "--final-attacks", "clean",
        "--progress", "false"]


def test_train_with_slurm_executor_goes_through_the_executor(tmp_path, capsys, monkeypatch):
    """Without sbatch the Slurm executor refuses with one line; nothing is trained in-process."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert main(["train", *TINY, "--executor", "slurm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch" in err
    assert not list(out.glob("*/config.json"))


def test_train_with_local_executor_equals_inprocess(tmp_path, capsys):
    """A worker process trains the same run, bit for bit, as this process does."""
    runs = {}
    for executor in ("inprocess", "local"):
        out = tmp_path / executor
        assert main(["train", *TINY, "--executor", executor, "--workers", "1", "--out", str(out)]) == 0
        printed = capsys.readouterr().out.strip()
        assert printed == str(out / "pgd-seed0")
        runs[executor] = out / "pgd-seed0"
    drop = ["time_s", "eval_time_s"]
    a, b = (pd.read_parquet(runs[k] / "metrics.parquet").drop(columns=drop) for k in ("inprocess", "local"))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_parquet(runs["inprocess"] / "final.parquet"),
                                  pd.read_parquet(runs["local"] / "final.parquet"))
    assert (tmp_path / "local" / ".sweep" / "pgd-seed0").is_dir()
