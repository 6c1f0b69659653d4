"""Shard runner: reproducible masks, skip finished shards, atomic files, spec checks, partial runs."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from memadv.scores.schema import read_scores
from memadv.estimate.aggregate import aggregate, load_shards
from memadv.estimate.shard_locks import lock_path
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate, estimate_status
from memadv.estimate.seeds import model_seed, subset_mask
from memadv.estimate.shards import ShardTask, write_or_check_spec, dataset_for
from memadv.errors import ConfigError, IncompleteRunError
from memadv.layout import RunLayout

TINY = dict(dataset="digits", models=6, models_per_shard=2, epochs=1, batch_size=256)


def test_subset_mask_depends_only_on_seed_and_model():
    a = subset_mask(0, 17, 1000, 0.7)
    assert a.sum() == 700
    assert np.array_equal(a, subset_mask(0, 17, 1000, 0.7))
    assert not np.array_equal(a, subset_mask(0, 18, 1000, 0.7))
    assert not np.array_equal(a, subset_mask(1, 17, 1000, 0.7))
    assert len({model_seed(0, 5, p) for p in ("subset", "init", "order")}) == 3


def test_shard_layout_does_not_change_models(tmp_path):
    """Model m is the same model whatever shard it lands in (seeds derive from (run seed, m))."""
    cfg_a = EstimateConfig(**{**TINY, "models_per_shard": 2})
    cfg_b = EstimateConfig(**{**TINY, "models_per_shard": 3})
    a = estimate(cfg_a, tmp_path / "a", progress=False, scheduler="sync")
    b = estimate(cfg_b, tmp_path / "b", progress=False, scheduler="sync")
    _, sh_a, _ = load_shards(tmp_path / "a")
    _, sh_b, _ = load_shards(tmp_path / "b")
    assert np.array_equal(sh_a["mask"], sh_b["mask"])
    # Packed training of different groups agrees up to float32 summation order: nearly every prediction.
    assert (sh_a["test_correct"] == sh_b["test_correct"]).mean() > 0.99
    assert len(a.mem) == len(b.mem) == 1437


def test_resume_skips_finished_shards_and_ends_equal(tmp_path, capsys):
    cfg = EstimateConfig(**TINY)
    full = estimate(cfg, tmp_path / "full", progress=False, scheduler="sync")

    run = tmp_path / "killed"
    write_or_check_spec(run, cfg, dataset_for(cfg))
    ShardTask(run)(1)                       # the job was killed after finishing shard 1 only
    leftover = RunLayout(run).shard(2).parent / ".shard-00002.parquet.123.tmp"
    leftover.write_bytes(b"half a file")    # and while writing shard 2: a temp file, never a shard
    with pytest.raises(IncompleteRunError, match="2 of 3 shards unfinished"):
        aggregate(run)
    partial = aggregate(run, allow_partial=True, scheduler="sync")
    assert partial.meta["complete"] is False and partial.meta["n_models"] == 2
    st = estimate_status(run)
    # nothing is working on it (the "job" was killed): no ETA, nothing running
    assert st["done"] == 1 and st["pending"] == 2 and st["running"] == [] and st["eta_seconds"] is None
    # a live process (here: a sleeping child) holding shard 2's claim is training it: running, with an ETA
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = lock_path(run, 2)
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid, "token": "t"}))
        st = estimate_status(run)
        assert st["running"] == [2] and st["pending"] == 1 and st["eta_seconds"] is not None
    finally:
        sleeper.kill()
        sleeper.wait()
    claim.unlink()

    mtime = os.stat(RunLayout(run).shard(1)).st_mtime_ns
    capsys.readouterr()
    resumed = estimate(cfg, run, progress=False, scheduler="sync")
    assert os.stat(RunLayout(run).shard(1)).st_mtime_ns == mtime  # not retrained
    assert f"{run}: 1 of 3 shards already finished, kept; 2 to train" in capsys.readouterr().out
    assert resumed.meta["complete"] is True
    for table in ("mem", "infl", "test_acc"):
        pd.testing.assert_frame_equal(getattr(resumed, table), getattr(full, table), check_exact=True)
    again = read_scores(run, dataset_for(cfg))
    pd.testing.assert_frame_equal(again.mem, full.mem)


def test_spec_mismatch_is_refused(tmp_path):
    cfg = EstimateConfig(**TINY)
    write_or_check_spec(tmp_path, cfg, dataset_for(cfg))
    with pytest.raises(ConfigError, match="different epochs"):
        write_or_check_spec(tmp_path, EstimateConfig(**{**TINY, "epochs": 2}), dataset_for(cfg))


def test_score_metadata_and_schema(tmp_path):
    scores = estimate(EstimateConfig(**TINY), tmp_path, progress=False, scheduler="sync")
    meta = scores.meta
    assert meta["dataset"] == "digits" and meta["n_models"] == 6 and meta["source"] == "memadv"
    assert list(scores.mem.columns) == ["idx", "label", "mem", "mem_se", "p_in", "p_out", "n_in", "n_out"]
    assert list(scores.infl.columns) == ["train_idx", "test_idx", "train_label", "test_label", "infl", "infl_se"]
    assert list(scores.test_acc.columns) == ["idx", "label", "p_correct", "n_models"]
    same = scores.infl["train_label"] == scores.infl["test_label"]
    cross = scores.infl[~same]
    assert (cross["infl"].abs() >= 0.15).all()
    # every same-class pair is there: sum over classes of n_train_c * n_test_c
    ds = dataset_for(EstimateConfig(**TINY))
    expected = sum(int((ds.y_train == c).sum()) * int((ds.y_test == c).sum()) for c in range(10))
    assert same.sum() == expected
