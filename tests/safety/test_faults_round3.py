"""Issue 18 ("Faults round 3"), items 1, 6, 7, 8, 10, 12 and 13 (checkpoint message): damaged score
files, machine failures (memory, open files) and out-of-range options are one-line errors with
exit 2 before anything is written; local workers size their threads from the usable CPUs; the
default executor is the faster one for the estimator's CPU shards."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memadv.cli.main import main
from memadv.cpus import usable_cpus
from memadv.errors import MemadvError, SchemaError
from memadv.executors import ExecutorConfig

from cli_refusal import assert_one_line_refusal as one_line

ESTIMATE = ["estimate", "--dataset", "digits", "--models", "4", "--models-per-shard", "4", "--epochs", "1",
            "--full-models", "0", "--no-progress"]
TRAIN = ["train", "--method", "pgd", "--dataset", "digits", "--epochs", "1", "--final-attacks", "clean",
         "--progress", "false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 4-model digits estimate (one shard, one epoch)."""
    out = tmp_path_factory.mktemp("est") / "run"
    assert main(ESTIMATE + ["--out", str(out)]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil
    return Path(shutil.copytree(run, tmp_path / "run"))


# ------------------------------------------------------------------ item 1: damaged score files

@pytest.mark.parametrize("damage", ["empty mem", "half-written infl"])
def test_damaged_score_file_is_one_line_for_train_and_status_says_so(run, tmp_path, capsys, damage):
    r = _copy(run, tmp_path)
    name = "mem.parquet" if damage == "empty mem" else "infl.parquet"
    path = r / "scores" / name
    path.write_bytes(b"" if damage == "empty mem" else path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "t"
    one_line(main(["train", "--method", "bat", "--dataset", "digits", "--epochs", "1", "--scores", str(r / "scores"),
                   "--out", str(out)]), capsys.readouterr().err, name, "not a readable parquet file")
    assert not out.exists() or not any(out.rglob("*.pt"))
    assert main(["status", str(r)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("scores"))
    assert "damaged" in line and name in line and "written" not in line.split("damaged")[0]


# ------------------------------------------------------------------ items 6, 7: machine failures

@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 8589934592 bytes"),
                                   MemoryError()], ids=["cuda", "cpu-allocator", "MemoryError"])
def test_out_of_memory_in_train_is_one_line(tmp_path, capsys, monkeypatch, error):
    """No real machine runs out of memory on demand; the training step raises what torch raises."""
    import memadv.bat.train as bat_train

    def oom(*a, **k):
        raise error
    monkeypatch.setattr(bat_train, "train_one_epoch", oom)
    one_line(main(TRAIN + ["--out", str(tmp_path / "t")]), capsys.readouterr().err, "out of memory")


@pytest.mark.parametrize("limit", [16, 32])
def test_too_many_open_files_in_a_local_dask_cluster_is_one_line(run, tmp_path, limit):
    """A real low ``ulimit -n``: 32 as in the issue (190 lines of dask's tracebacks before); 16 hung
    inside distributed's startup until the floor was checked up front."""
    r = _copy(run, tmp_path)

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    p = subprocess.run([sys.executable, "-m", "memadv.cli.main", "aggregate", str(r), "--dask-cluster", "local"],
                       capture_output=True, text=True, preexec_fn=low_limit, timeout=120)
    one_line(p.returncode, p.stderr, "too many open files", f"ulimit -n is {limit}")


# ------------------------------------------------------------------ item 8: threads of local workers

@pytest.mark.skipif(usable_cpus() < 2, reason="needs 2 usable CPUs to restrict the affinity to one")
def test_local_workers_size_their_threads_from_the_usable_cpus():
    """Under taskset (one CPU of the machine's two or more) a lone worker gets one thread, not one per CPU."""
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from memadv.executors.local import worker_threads; print(worker_threads(1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


# ------------------------------------------------------------------ item 10: integers and devices up front

@pytest.mark.parametrize("args, flag", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
    (["--models", "99999999999999999999"], "--models"),
    (["--models", str(2**62)], "--models"),  # fits int64, but listing 2**59 shards hung before anything was said
    (["--models", "200", "--until-decided", "0.95", "--max-models", str(2**62)], "--max-models"),
    (["--device", "gpu"], "--device"),
])
def test_estimate_options_out_of_range_are_refused_before_anything_is_written(tmp_path, capsys, args, flag):
    out = tmp_path / "r"
    one_line(main(ESTIMATE + args + ["--out", str(out)]), capsys.readouterr().err, flag)
    assert not out.exists()


def test_a_refused_seed_leaves_no_folder_in_the_way(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(ESTIMATE + ["--seed", "-1", "--out", str(out)]) == 2
    assert main(ESTIMATE + ["--seed", "0", "--out", str(out)]) == 0  # was refused: "another estimate"


@pytest.mark.parametrize("cmd, flag", [
    (["train", "--dataset", "digits", "--seed", "-1"], "--seed"),
    (["train", "--dataset", "digits", "--val-seed", str(2**32)], "--val-seed"),
    (["train", "--dataset", "digits", "--eval-every", "99999999999999999999"], "--eval-every"),
    (["train", "--dataset", "digits", "--device", "gpu"], "--device"),
    (["pipeline", "--train-seeds", "0", "-3"], "--train-seeds"),
    (["pipeline", "--train-device", "gpu"], "--train-device"),
    (["estimate", "--workers", "99999999999999999999"], "--workers"),
])
def test_every_command_checks_integers_and_devices(tmp_path, capsys, cmd, flag):
    out = tmp_path / "o"
    one_line(main(cmd + ["--out", str(out)]), capsys.readouterr().err, flag)
    assert not out.exists()


def test_toml_values_get_the_same_range_check(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text("[estimate]\nseed = -2\n")
    out = tmp_path / "r"
    one_line(main(["estimate", "--config", str(toml), "--out", str(out)]), capsys.readouterr().err, "--seed")
    assert not out.exists()


def test_train_still_takes_auto_and_estimate_a_cuda_device_name(tmp_path):
    from memadv.bat.train_config import TrainConfig
    from memadv.config import build_config
    from memadv.estimate.config import EstimateConfig
    assert build_config(TrainConfig, {"device": "auto"}).device == "auto"
    # a login node without a GPU may submit --device cuda to Slurm: the name is checked, not the GPU
    assert build_config(EstimateConfig, {"device": "cuda:1"}).device == "cuda:1"


# ------------------------------------------------------------------ item 12: the default executor

def test_default_executor_is_auto_and_resolves_to_workers_over_the_usable_cpus():
    from memadv.executors import resolve_executor
    cfg = ExecutorConfig()
    assert cfg.executor == "auto"
    cpus = usable_cpus()
    local = resolve_executor(cfg, 20, cpu_tasks=True)
    if cpus > 1:
        assert (local.executor, local.workers) == ("local", min(cpus, 20))
        assert resolve_executor(cfg, 1, cpu_tasks=True).executor == "inprocess"  # one task: no process to spawn
    assert resolve_executor(cfg, 20).executor == "inprocess"  # tasks not measured: the old default
    assert resolve_executor(ExecutorConfig(executor="inprocess"), 20, cpu_tasks=True).executor == "inprocess"


@pytest.mark.skipif(usable_cpus() < 2, reason="needs 2 usable CPUs")
def test_default_estimate_trains_its_shards_in_single_threaded_workers(tmp_path, monkeypatch):
    """The README's first command, without --executor: its CPU shards go to local workers, one per
    usable CPU, each with one torch thread (a spy on the local executor, which still runs them)."""
    import memadv.executors.run as executors_run
    seen = []
    real = executors_run.run_local

    def spy(task, ids, cfg, *a, **k):
        seen.append((cfg.workers, task.threads, len(ids)))
        return real(task, ids, cfg, *a, **k)
    monkeypatch.setattr(executors_run, "run_local", spy)
    out = tmp_path / "r"
    assert main(["estimate", "--dataset", "digits", "--models", "4", "--models-per-shard", "2", "--epochs", "1",
                 "--full-models", "0", "--no-progress", "--out", str(out)]) == 0
    assert seen == [(2, usable_cpus() // 2, 2)]
    assert (out / "scores" / "mem.parquet").exists()


# ------------------------------------------------------------------ item 13: the refused checkpoint

class _Code:
    def __reduce__(self):
        return (os.getcwd, ())


def test_refused_checkpoint_is_one_short_line_without_colour_codes(tmp_path):
    from memadv.bat.runs import load_checkpoint
    from memadv.files.weights_only import load_weights_only
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "x": _Code()}, path)
    with pytest.raises(SchemaError) as err:
        load_weights_only(path)
    with pytest.raises(MemadvError) as err2:
        load_checkpoint(path)
    for msg in (str(err.value), str(err2.value)):
        assert "\x1b" not in msg and "\n" not in msg and len(msg) < 400, msg
        assert "refused" in msg and "weights_only=False" not in msg  # no advice to run the code
    assert str(path) in str(err2.value)
