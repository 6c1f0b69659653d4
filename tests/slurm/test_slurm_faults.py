"""Slurm faults of issue 18 on the real cluster (items 3, 4, 5 and 13; item 2 is refused before
anything reaches Slurm: tests/slurm/test_slurm_executors.py): submitting from inside a job,
two estimates inside one allocation, a cluster without accounting, more shards than MaxArraySize."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memadv
from memadv.cli.main import main
from memadv.estimate.config import EstimateConfig
from memadv.estimate.shards import dataset_for, write_or_check_spec
from memadv.executors import ExecutorConfig, TasksFailedError
from memadv.layout import RunLayout
from memadv_slurm_toys import ToyTask
from test_slurm_real import CFG, Background, _task_job_id, _wait_for

pytestmark = pytest.mark.slurm

REPO = Path(memadv.__file__).resolve().parents[1]


def _sbatch(*args: str) -> str:
    """Submit a batch job (``args``: sbatch options and --wrap); its job id."""
    return subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=True).stdout.strip()


def _wait_job_done(job: str, timeout: float) -> None:
    def done() -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
        return out.strip() in ("", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY")
    try:
        _wait_for(done, timeout, f"batch job {job}", step=1.0)
    except AssertionError:
        subprocess.run(["scancel", job])
        raise


SUBMIT_INSIDE = """
import json, sys
from memadv.executors import ExecutorConfig, run_tasks
from memadv_slurm_toys import ToyTask
root = sys.argv[1]
try:
    result = run_tasks(ToyTask(root + "/run"), [0, 1], ExecutorConfig(executor="slurm", cpus_per_task=1,
                       timeout_min=5, mem_gb=0.25), root + "/jobs", progress=False)
except Exception as e:
    result = f"{type(e).__name__}: {e}"
open(root + "/result.json", "w").write(json.dumps(result))
"""


def test_submitting_from_inside_a_mem_per_cpu_job(slurm_cluster, slurm_tmp, toy_path):
    """Item 3: the enclosing job's SLURM_MEM_PER_CPU reached every array task (sbatch exports the
    environment), whose srun then died next to the array's own SLURM_MEM_PER_NODE."""
    script = slurm_tmp / "inside.py"
    script.write_text(SUBMIT_INSIDE)
    job = _sbatch("--mem-per-cpu=200M", "-c", "1", "-o", str(slurm_tmp / "outer.log"),
                  f"--wrap={sys.executable} {script} {slurm_tmp}")
    _wait_job_done(job, 150)
    result = json.loads((slurm_tmp / "result.json").read_text())
    assert result == [ToyTask.expected(0), ToyTask.expected(1)], result


LOGGED_ESTIMATE = Path(__file__).parents[1] / "estimate" / "logged_estimate.py"


def _logged_estimate_config() -> dict:
    """logged_estimate.CONFIG (the script lives beside the claim tests of tests/estimate)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("logged_estimate", LOGGED_ESTIMATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CONFIG


def test_two_estimates_in_one_allocation_train_each_shard_once(slurm_cluster, slurm_tmp):
    """Item 4: both processes carry the same SLURM_JOB_ID and no array task id; the claim named only
    the job, so each took over the other's live claim and trained its shard again."""
    run, log = slurm_tmp / "run", slurm_tmp / "trained.log"
    cfg = EstimateConfig(**_logged_estimate_config())
    write_or_check_spec(run, cfg, dataset_for(cfg))  # both find the spec: no race on creating it
    one = f"OMP_NUM_THREADS=1 PYTHONPATH={REPO} {sys.executable} {LOGGED_ESTIMATE} {run} {log} 2"
    env = f"echo $SLURM_JOB_ID ${{SLURM_ARRAY_TASK_ID:-none}} > {slurm_tmp}/env"
    job = _sbatch("-c", "1", "-o", str(slurm_tmp / "job.log"),
                  f"--wrap={env}; ({one}; echo $? > {slurm_tmp}/rc.1) & ({one}; echo $? > {slurm_tmp}/rc.2) & wait")
    _wait_job_done(job, 240)
    # before: the second took the live claim over, and found the first's attempt record under its own
    # job id: a bogus "one epoch takes longer than the time limit" (or, later, the shard trained twice)
    assert [(slurm_tmp / f"rc.{k}").read_text().strip() for k in (1, 2)] == ["0", "0"], \
        (slurm_tmp / "job.log").read_text()[-2000:]
    assert (slurm_tmp / "env").read_text().split() == [job, "none"]  # one allocation, no array task
    trained = sorted(int(x) for x in log.read_text().split())
    assert trained == [0, 2, 4, 6], f"shards trained more than once: {trained}"


def _no_accounting(bin_dir: Path) -> None:
    """sacct as on a cluster without accounting, squeue as after MinJobAge: finished jobs forgotten.
    (The shared test cluster keeps its accounting and its MinJobAge of 300 s: stand-ins on PATH.)"""
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    (bin_dir / "squeue").write_text(
        f"#!/bin/bash\n{shutil.which('squeue')} \"$@\" | grep -v -E "
        "'[|](COMPLETED|CANCELLED|FAILED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)$'\n"
        "exit ${PIPESTATUS[0]}\n")
    for name in ("sacct", "squeue"):
        (bin_dir / name).chmod(0o755)


def test_cancelled_job_without_accounting_ends_the_wait(slurm_cluster, slurm_tmp, toy_path, monkeypatch):
    """Item 5: sacct fails and squeue has forgotten the cancelled tasks: the wait used to read their
    state as UNKNOWN, as if still queued, forever. It ends in one line naming both."""
    _no_accounting(slurm_tmp / "bin")
    monkeypatch.setenv("PATH", f"{slurm_tmp / 'bin'}{os.pathsep}{os.environ['PATH']}")
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    run = Background(ToyTask(root, sleep_s=300), [0, 1], ExecutorConfig(**CFG), folder, progress=False)
    array_id = _task_job_id(folder, 0).split("_")[0]
    subprocess.run(["scancel", array_id], check=True)
    start = time.monotonic()
    with pytest.raises(TasksFailedError) as info:
        run.join(90)
    msg = str(info.value)
    assert "\n" not in msg and "ids 0, 1" in msg, msg
    assert "accounting storage is disabled" in msg and "squeue no longer lists it" in msg, msg
    print(f"wait ended {time.monotonic() - start:.1f} s after the cancel")


def test_more_shards_than_max_array_size_names_models_per_shard(slurm_cluster, slurm_tmp, capsys):
    """Item 13: sbatch refused the array ("Invalid job array specification") without a word of
    --models-per-shard; now one line, exit 2, before the run folder is written."""
    limit = int(next(line.split("=")[1] for line in subprocess.run(["scontrol", "show", "config"], capture_output=True,
                text=True, check=True).stdout.splitlines() if line.startswith("MaxArraySize")))
    run = slurm_tmp / "run"
    code = main(["estimate", "--dataset", "digits", "--models", str(limit + 1), "--models-per-shard", "1",
                 "--epochs", "1", "--executor", "slurm", "--no-progress", "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"MaxArraySize allows at most {limit}" in err and "--models-per-shard to at least 2" in err, err
    assert not RunLayout(run).spec.exists() and not (run / "estimate" / "jobs").exists()
