"""Estimate jobs that finish and do not leak (issue 10, items 6, 11, 12, 14; item 13 is in
tests/executors/test_local_workers.py): settings of a re-run, epoch checkpoints and resume,
the dask cluster for aggregation only, shard locks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import memadv.estimate.checkpoints as checkpoints
import memadv.estimate.shard_locks as shard_locks
from memadv.cli.main import main
from memadv.scores.schema import read_scores
from memadv.files.tables import read_table
from memadv.errors import ConfigError, TimeLimitTooShortError
from memadv.estimate.config import EstimateConfig
from memadv.estimate.proxy_log import PROXY_COLUMNS
from memadv.estimate.run import estimate, estimate_status
from memadv.estimate.shards import ShardTask, dataset_for, write_or_check_spec
from memadv.executors.slurm.dask_cluster import slurm_cli_options
from logged_estimate import CONFIG

TINY = dict(dataset="digits", models=4, models_per_shard=2, epochs=1, batch_size=256, full_models=0)
import memadv  # noqa: E402
from memadv.layout import RunLayout

REPO = Path(memadv.__file__).resolve().parents[1]  # the memadv under test, for the subprocesses


# ---- item 6: what defines the estimate vs. where and how it runs


def test_rerun_takes_device_from_the_command_line_not_the_spec(tmp_path):
    """A run started with a device this machine lacks (`--device cuda:7`) can be finished on another."""
    run = tmp_path / "run"
    started = EstimateConfig(**{**TINY, "full_models": 2}, device="cuda:7")
    write_or_check_spec(run, started, dataset_for(started))  # the first run got as far as its spec
    estimate(EstimateConfig(**{**TINY, "full_models": 2}, device="cpu"), run, progress=False)
    assert all(RunLayout(run).shard(s).exists() for s in range(2))
    assert json.loads((run / "estimate" / "spec.json").read_text())["config"]["device"] == "cpu"  # latest run


def test_rerun_takes_cross_class_threshold_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    estimate(EstimateConfig(**TINY, cross_class_threshold=0.15), run, progress=False, scheduler="sync")
    scores = estimate(EstimateConfig(**TINY, cross_class_threshold=0.5), run, progress=False, scheduler="sync")
    assert scores.meta["cross_class_threshold"] == 0.5
    assert read_scores(run).meta["cross_class_threshold"] == 0.5


def test_rerun_refuses_a_change_of_what_defines_the_estimate(tmp_path):
    run = tmp_path / "run"
    cfg = EstimateConfig(**TINY)
    write_or_check_spec(run, cfg, dataset_for(cfg))
    with pytest.raises(ConfigError, match=r"epochs \(1 there, 2 now\)"):
        write_or_check_spec(run, EstimateConfig(**{**TINY, "epochs": 2}), dataset_for(cfg))


def test_lr_milestones_define_the_estimate_and_older_specs_had_the_papers():
    from memadv.estimate.train import lr_at

    cfg = EstimateConfig(**{**TINY, "epochs": 10, "lr": 1.0})
    assert [lr_at(e, cfg) for e in (4, 5, 6, 7)] == pytest.approx([1.0, 0.1, 0.1, 0.01])  # 50% and 75%
    early = EstimateConfig(**{**TINY, "epochs": 10, "lr": 1.0, "lr_milestones": [0.3]})
    assert [lr_at(e, early) for e in (2, 3, 9)] == pytest.approx([1.0, 0.1, 0.1])
    with pytest.raises(ConfigError, match="lr-milestones"):
        EstimateConfig(**{**TINY, "lr_milestones": [1.5]})
    for repeated_or_unordered in ([0.5, 0.5], [0.75, 0.5]):  # a repeat would be a silent x0.01
        with pytest.raises(ConfigError, match="increasing"):
            EstimateConfig(**{**TINY, "lr_milestones": repeated_or_unordered})


def test_a_spec_written_before_lr_milestones_existed_still_resumes(tmp_path):
    run = tmp_path / "run"
    cfg = EstimateConfig(**TINY)
    write_or_check_spec(run, cfg, dataset_for(cfg))
    spec = json.loads(RunLayout(run).spec.read_text())
    del spec["config"]["lr_milestones"]  # as an earlier memadv wrote it
    RunLayout(run).spec.write_text(json.dumps(spec))
    write_or_check_spec(run, cfg, dataset_for(cfg))  # the paper's schedule: the same estimate
    with pytest.raises(ConfigError, match=r"lr_milestones \(\[0.5, 0.75\] there, \[0.4\] now\)"):
        write_or_check_spec(run, EstimateConfig(**{**TINY, "lr_milestones": [0.4]}), dataset_for(cfg))


def test_runtime_fields_are_not_identity_fields():
    assert not set(EstimateConfig.RUNTIME) & set(EstimateConfig.IDENTITY)
    assert "cross_class_threshold" not in EstimateConfig.IDENTITY


# ---- item 11: epoch checkpoints, resume bit-identical, status, time limit too short


class Interrupted(BaseException):
    """Stands in for the end of a Slurm time limit (not an Exception: nothing may swallow it)."""


def _shard_frame(run: Path) -> pd.DataFrame:
    df, _ = read_table(RunLayout(run).shard(0))
    return df.drop(columns=["seconds"])  # wall time: the only column that may differ


def _as_older_checkpoint(ckpt: checkpoints.ShardCheckpoint, packing: str) -> None:
    """Rewrite a checkpoint in the two schemas memadv wrote before one loop trained both packings:
    packed (``model`` of all K, no ``group``, no ``final``) and one by one (``models`` of nets 0..j,
    ``model_index`` j)."""
    import torch

    state = ckpt.load()
    groups, group = state.pop("groups"), state.pop("group")
    if packing == "one-by-one":
        state["models"], state["model_index"] = [*groups, state.pop("model")], group
    else:
        state.pop("final")
    torch.save(state, ckpt.path)


@pytest.mark.parametrize("older", [False, True], ids=["checkpoint", "older-checkpoint"])
@pytest.mark.parametrize("packing", ["packed", "one-by-one"])
def test_interrupted_shard_resumes_bit_identical(tmp_path, monkeypatch, capsys, packing, older):
    cfg = EstimateConfig(**{**TINY, "epochs": 4, "models": 2}, packing=packing, augment=True)
    total = cfg.epochs * (1 if packing == "packed" else cfg.models_per_shard)
    # one by one: stop in the second model's training, so the first is restored as a finished model
    stop_at = 2 if packing == "packed" else cfg.epochs + 1
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for run in (whole, broken):
        write_or_check_spec(run, cfg, dataset_for(cfg))
    ShardTask(whole, runtime=cfg.runtime())(0)

    saved: list[int] = []
    original = checkpoints.ShardCheckpoint.save

    def save_then_stop(self, state, done, total_):
        original(self, state, done, total_)
        saved.append(done)
        if len(saved) == stop_at:
            raise Interrupted

    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", save_then_stop)
    with pytest.raises(Interrupted):
        ShardTask(broken, runtime=cfg.runtime())(0)
    assert not RunLayout(broken).shard(0).exists()
    st = estimate_status(broken)
    assert st["epochs"] == {0: {"done": stop_at, "total": total}} and st["interrupted"] == [0]  # its claim was released
    assert main(["status", str(broken)]) == 0
    assert f"interrupted, resume at: shard 0 (epoch {stop_at}/{total})" in capsys.readouterr().out
    assert torch_load_is_tensors_only(checkpoints.ShardCheckpoint(broken, 0).path)
    if older:  # a shard interrupted under an earlier memadv resumes as well
        _as_older_checkpoint(checkpoints.ShardCheckpoint(broken, 0), packing)

    saved.clear()
    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", lambda self, state, done, total_: (
        saved.append(done), original(self, state, done, total_)))
    ShardTask(broken, runtime=cfg.runtime())(0)
    assert saved[0] == stop_at + 1, "the re-run started over instead of resuming"
    pd.testing.assert_frame_equal(_shard_frame(broken), _shard_frame(whole))
    assert set(PROXY_COLUMNS) <= set(_shard_frame(whole).columns)  # the proxies resume bit-identical too
    assert not RunLayout(broken).checkpoints.exists()  # removed by the task once the shard is written


def torch_load_is_tensors_only(path: Path) -> bool:
    import torch

    torch.load(path, weights_only=True)  # raises on anything but tensors and plain containers
    return True


def test_slurm_attempt_without_a_new_checkpoint_names_timeout_min(tmp_path, monkeypatch):
    cfg = EstimateConfig(**{**TINY, "epochs": 2})
    run = tmp_path / "run"
    write_or_check_spec(run, cfg, dataset_for(cfg))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")

    def killed_by_time_limit(self, state, done, total):
        raise Interrupted

    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", killed_by_time_limit)
    with pytest.raises(Interrupted):
        ShardTask(run, runtime=cfg.runtime())(0)  # first attempt: no epoch finished in time
    with pytest.raises(Interrupted):
        ShardTask(run, runtime=cfg.runtime())(0)  # another process of the same allocation (same task, same restart count): no time-out
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(TimeLimitTooShortError, match="--timeout-min"):
        ShardTask(run, runtime=cfg.runtime())(0)  # the requeued attempt of the same array task


def test_local_rerun_after_a_crash_is_not_flagged(tmp_path, monkeypatch):
    cfg = EstimateConfig(**{**TINY, "epochs": 2})
    run = tmp_path / "run"
    write_or_check_spec(run, cfg, dataset_for(cfg))
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    original = checkpoints.ShardCheckpoint.save
    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save",
                        lambda *a: (_ for _ in ()).throw(Interrupted()))
    with pytest.raises(Interrupted):
        ShardTask(run, runtime=cfg.runtime())(0)
    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", original)
    ShardTask(run, runtime=cfg.runtime())(0)
    assert RunLayout(run).shard(0).exists()


# ---- item 12: the dask cluster is for aggregation only, with its own options and a time-out


def test_aggregation_scheduler_is_entered_after_the_shards(tmp_path):
    run = tmp_path / "run"
    seen: list[bool] = []

    import contextlib

    @contextlib.contextmanager
    def scheduler():
        seen.append(all(RunLayout(run).shard(s).exists() for s in range(2)))
        yield None

    estimate(EstimateConfig(**TINY), run, progress=False, aggregation_scheduler=scheduler)
    assert seen == [True]


def test_dask_slurm_options_are_checked_and_refused_for_other_kinds():
    assert slurm_cli_options("slurm", partition="cpu", memory="16GB", walltime="02:00:00",
                             wait_timeout_s=60)["walltime"] == "02:00:00"
    with pytest.raises(ConfigError, match="--dask-partition only apply to --dask-cluster slurm"):
        slurm_cli_options("threads", partition="cpu")
    with pytest.raises(ConfigError, match="dask-wait-s"):
        slurm_cli_options("slurm", wait_timeout_s=0)
    with pytest.raises(ConfigError, match="--dask-walltime"):
        slurm_cli_options("slurm", walltime="1 hour")
    with pytest.raises(ConfigError, match="--dask-memory"):
        slurm_cli_options("slurm", memory="lots")


def test_cli_dask_option_without_slurm_is_a_one_line_error(tmp_path, capsys):
    code = main(["estimate", "--dataset", "digits", "--out", str(tmp_path / "r"), "--dask-memory", "8GB"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--dask-memory" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---- item 14: shard locks


def test_stale_claims_are_taken_over_and_live_ones_are_not(tmp_path, monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    path = shard_locks.lock_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def write(host, pid, age=0.0):
        path.write_text(json.dumps({"host": host, "pid": pid, "token": f"t{pid}{host}"}))
        os.utime(path, (time.time() - age, time.time() - age))

    write(socket.gethostname(), os.getppid())  # a live process on this host
    assert shard_locks.try_lock(tmp_path, 0) is None
    write("elsewhere", 1, age=10.0)  # another host, heartbeat recent
    assert shard_locks.try_lock(tmp_path, 0) is None
    write("elsewhere", 1, age=shard_locks.STALE_AFTER_S + 1)  # another host, silent too long
    claim = shard_locks.try_lock(tmp_path, 0)
    assert claim is not None and json.loads(path.read_text())["pid"] == os.getpid()
    claim.release()
    assert not path.exists() and not list(path.parent.glob("*.takeover"))
    write(socket.gethostname(), dead.pid)  # dead pid on this host
    claim = shard_locks.try_lock(tmp_path, 0)
    assert claim is not None
    assert shard_locks.try_lock(tmp_path, 0) is None  # held by this live process
    claim.release()


LOGGED_ESTIMATE = Path(__file__).with_name("logged_estimate.py")


def test_two_processes_on_one_run_train_each_shard_once(tmp_path):
    run, log = tmp_path / "run", tmp_path / "trained.log"
    cfg = EstimateConfig(**CONFIG)
    write_or_check_spec(run, cfg, dataset_for(cfg))  # both find the spec: no race on creating it
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(LOGGED_ESTIMATE), str(run), str(log), "2"], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trained = sorted(int(x) for x in log.read_text().split())
    assert trained == [0, 2, 4, 6], f"shards trained more than once: {trained}"
    assert not list(shard_locks.lock_path(run, 0).parent.glob("*.lock"))
