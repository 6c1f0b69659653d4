"""Local workers exit when their parent dies, even by SIGKILL (issue 10, item 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import memadv  # noqa: E402

REPO = Path(memadv.__file__).resolve().parents[1]  # the memadv under test, for the subprocesses

SLEEPER = '''
import os, time
from pathlib import Path

class Sleeper:
    """A task that records its worker's pid, then sleeps far longer than the test waits."""
    def __init__(self, folder):
        self.folder = folder
    def __call__(self, i):
        Path(self.folder, f"worker-{os.getpid()}").write_text("")
        time.sleep(120)
'''

PARENT = '''
import sys
from sleeper import Sleeper
from memadv.executors import ExecutorConfig, run_tasks
run_tasks(Sleeper(sys.argv[1]), [0, 1], ExecutorConfig(executor="local", workers=2), sys.argv[2], progress=False)
'''


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a container's init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pids_dir), str(tmp_path / "jobs")], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids_dir.iterdir())) < 2:
            assert parent.poll() is None, "the parent exited before its workers started"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        workers = [int(p.name.split("-")[1]) for p in pids_dir.iterdir()]
        assert all(_running(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if _running(w)]
        assert not left, f"workers {left} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in pids_dir.iterdir():  # only the workers this test started
            try:
                os.kill(int(p.name.split("-")[1]), signal.SIGKILL)
            except ProcessLookupError:
                pass


THREADS_TASK = '''
class Threads:
    """A task that reports how many threads torch uses in its worker."""
    def __call__(self, i):
        import torch
        return torch.get_num_threads()
'''

THREADS_PARENT = '''
import os, sys
from threads_task import Threads
from memadv.executors import ExecutorConfig, run_tasks
n = int(sys.argv[2])
print(run_tasks(Threads(), list(range(n)), ExecutorConfig(executor="local", workers=n), sys.argv[1], progress=False))
'''


def test_local_workers_share_the_cpus_instead_of_each_taking_all(tmp_path):
    """N workers on N CPUs use one torch thread each, for any task (not only estimator shards):
    without the limit each worker started one thread per CPU (N x N threads on N cores), which made
    a Fashion-MNIST PGD-AT epoch 7x slower on 2 cores with 2 workers."""
    cpus = os.cpu_count() or 1
    if cpus < 2:
        import pytest
        pytest.skip("needs 2 CPUs: with one, one thread per worker is also torch's default")
    (tmp_path / "threads_task.py").write_text(THREADS_TASK)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    out = subprocess.run([sys.executable, "-c", THREADS_PARENT, str(tmp_path / "jobs"), str(cpus)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([1] * cpus)
