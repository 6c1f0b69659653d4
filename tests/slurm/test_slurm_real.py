"""Executors on a real Slurm cluster (bash memadv/executors/slurm/dev-cluster.sh start): one job array per run,
failures, cancellation, re-attaching to a running submission, and requeue-and-resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memadv.executors import ExecutorConfig, TasksFailedError, run_tasks
from memadv.executors.slurm.accounting import job_states, read_jobs
from memadv_slurm_toys import ToyTask, UnitsTask

pytestmark = pytest.mark.slurm

CFG = dict(executor="slurm", cpus_per_task=1, timeout_min=10)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class Background:
    """run_tasks in a thread, so the test can act on the jobs while they run."""

    def __init__(self, *args, **kwargs):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs):
        try:
            self.result = run_tasks(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in join()
            self.error = e

    def join(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"run_tasks still waiting after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def _wait_for(cond, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(step)


def _task_job_id(folder: Path, i: int) -> str:
    _wait_for(lambda: (folder / "jobs.json").exists(), 60, "jobs.json")
    return read_jobs(folder)["tasks"][str(i)]


def test_job_array_runs_every_task(slurm_cluster, slurm_tmp, toy_path):
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    ids = list(range(6))
    start = time.monotonic()
    results = run_tasks(ToyTask(root), ids, ExecutorConfig(**CFG), folder, desc="toy", progress=False)
    elapsed = time.monotonic() - start
    assert results == [ToyTask.expected(i) for i in ids]
    for i in ids:
        assert (root / "out" / f"{i}.txt").read_text() == ToyTask.expected(i)
        assert len(_lines(root / "calls" / f"{i}.log")) == 1
    jobs = json.loads((folder / "jobs.json").read_text())
    assert len(jobs["array_job_ids"]) == 1  # ONE job array
    array_id = jobs["array_job_ids"][0]
    assert jobs["tasks"] == {str(i): f"{array_id}_{i}" for i in ids}
    assert job_states(folder) == {i: "COMPLETED" for i in ids}
    print(f"6-task job array: {elapsed:.1f} s")


def test_failed_task_raises_with_ids_and_logs(slurm_cluster, slurm_tmp, toy_path):
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    with pytest.raises(TasksFailedError) as info:
        run_tasks(ToyTask(root, fail_ids=(2,)), range(4), ExecutorConfig(**CFG), folder, desc="toy", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "1 of 4 toy failed (ids 2)" in msg and "toy failure for id 2" in msg
    log = Path(info.value.logs[2])
    assert str(log) in msg and "toy failure for id 2" in log.read_text()
    assert sorted(p.stem for p in (root / "out").glob("*.txt")) == ["0", "1", "3"]
    states = job_states(folder)
    assert states[2] == "FAILED" and all(states[i] == "COMPLETED" for i in (0, 1, 3))


def test_cancelled_job_is_reported_not_waited_for_forever(slurm_cluster, slurm_tmp, toy_path):
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    run = Background(ToyTask(root, sleep_s=300), [0, 1], ExecutorConfig(**CFG), folder, progress=False)
    array_id = _task_job_id(folder, 0).split("_")[0]
    subprocess.run(["scancel", array_id], check=True)
    with pytest.raises(TasksFailedError, match=r"ids 0, 1.*CANCELLED"):
        run.join(120)
    assert set(job_states(folder).values()) == {"CANCELLED"}


def test_rerun_reattaches_to_running_array(slurm_cluster, slurm_tmp, toy_path):
    """The submitting process dies; the same call again waits for the queued/running tasks."""
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    code = (f"from memadv.executors import ExecutorConfig, run_tasks; from memadv_slurm_toys import ToyTask; "
            f"run_tasks(ToyTask({str(root)!r}, sleep_s=4), range(4), ExecutorConfig(**{CFG!r}), {str(folder)!r}, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        _task_job_id(folder, 0)
    finally:
        proc.kill()
        proc.wait()
    results = run_tasks(ToyTask(root, sleep_s=4), range(4), ExecutorConfig(**CFG), folder, progress=False)
    assert results == [ToyTask.expected(i) for i in range(4)]
    assert len(read_jobs(folder)["array_job_ids"]) == 1  # nothing submitted twice
    assert all(len(_lines(root / "calls" / f"{i}.log")) == 1 for i in range(4))


def test_preempted_task_requeues_and_resumes(slurm_cluster, slurm_tmp, toy_path):
    from submitit.slurm.slurm import SlurmJob

    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    task = UnitsTask(root, units=6, unit_s=1.0)
    run = Background(task, [0, 1], ExecutorConfig(**CFG), folder, desc="units", progress=False)
    job_id = _task_job_id(folder, 0)
    _wait_for(lambda: (root / "units" / "0-1.txt").exists(), 120, "two units of task 0")
    SlurmJob(folder=folder, job_id=job_id)._interrupt(timeout=False)  # SIGTERM then USR2, as on pre-emption
    # Slurm holds a requeued job back for AuthInfo cred_expire seconds (dev cluster: 30 s)
    assert run.join(400) == [6, 6]
    starts = _lines(root / "starts" / "0.log")
    assert len(starts) == 2 and starts[0] != starts[1]  # task 0 ran twice, in two processes
    assert len(_lines(root / "starts" / "1.log")) == 1
    computed = [int(u) for u in _lines(root / "computed" / "0.log")]
    assert sorted(set(computed)) == list(range(6))
    assert computed.count(0) == 1 and computed.count(1) == 1  # finished units were not redone
    assert len(computed) <= 7  # at most the interrupted unit twice
    assert job_states(folder) == {0: "COMPLETED", 1: "COMPLETED"}


@pytest.mark.slow
def test_real_time_limit_requeues_and_resumes(slurm_cluster, slurm_tmp, toy_path):
    """A 2-minute limit: Slurm sends USR2 90 s before it (within Slurm's ~30 s check period), submitit
    requeues the task, and the next run resumes at the next unfinished unit. Takes 2-3 minutes."""
    root, folder = slurm_tmp / "run", slurm_tmp / "jobs"
    task = UnitsTask(root, units=35, unit_s=2.0)  # 70 s of work > the ~30-60 s before the signal
    cfg = ExecutorConfig(executor="slurm", cpus_per_task=1, timeout_min=2, max_timeouts=5)
    assert run_tasks(task, [0], cfg, folder, desc="units", progress=False) == [35]
    assert len(_lines(root / "starts" / "0.log")) >= 2  # it was requeued at least once
    computed = [int(u) for u in _lines(root / "computed" / "0.log")]
    assert sorted(set(computed)) == list(range(35))
    assert len(computed) <= 35 + len(_lines(root / "starts" / "0.log")) - 1  # only interrupted units redone
