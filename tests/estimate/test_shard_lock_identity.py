"""Who holds a shard's claim (issue 18, item 4): host + pid + process start time, and for Slurm the
job's restart count; a shared Slurm job id alone never makes a live claim stale."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from memadv.estimate import shard_locks


@pytest.fixture
def holder():
    """A live process other than this one (the claim's holder)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _write(path, **claim):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "t", **claim}))


def test_same_allocation_live_holder_keeps_its_claim(tmp_path, monkeypatch, holder):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # both processes inside one allocation
    path = shard_locks.lock_path(tmp_path, 0)
    start = shard_locks.process_start(holder.pid)
    _write(path, host=socket.gethostname(), pid=holder.pid, start=start, slurm_job="4242", slurm_restart=0)
    assert shard_locks.try_lock(tmp_path, 0) is None and shard_locks.is_locked(tmp_path, 0)
    # the same pid with another start time: the holder is gone and the system reused its pid
    _write(path, host=socket.gethostname(), pid=holder.pid, start=start - 100.0, slurm_job="4242", slurm_restart=0)
    claim = shard_locks.try_lock(tmp_path, 0)
    assert claim is not None and json.loads(path.read_text())["start"] == shard_locks.process_start(os.getpid())
    claim.release()


def test_requeued_attempt_takes_over_its_earlier_attempt_on_another_host(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    path = shard_locks.lock_path(tmp_path, 0)
    _write(path, host="elsewhere", pid=1, slurm_job="77_3", slurm_restart=0)  # heartbeat recent
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert shard_locks.try_lock(tmp_path, 0) is None  # same attempt elsewhere (e.g. an srun step): live
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    claim = shard_locks.try_lock(tmp_path, 0)  # Slurm ended attempt 0 before requeueing the task
    assert claim is not None
    claim.release()
