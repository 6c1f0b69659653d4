"""Fixtures for the executor / Slurm tests.

Slurm tests (marker ``slurm``) need a running cluster: ``bash memadv/executors/slurm/dev-cluster.sh start``.
Without one they skip, unless ``MEMADV_REQUIRE_SLURM=1`` (set by CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the toy tasks module, for this process
    sys.path.insert(0, str(HERE))


@pytest.fixture
def toy_path(monkeypatch):
    """Put this folder on PYTHONPATH so spawned workers and Slurm jobs can import the toy tasks."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(HERE) + (os.pathsep + old if old else ""))
    return HERE


def _slurm_problem() -> str | None:
    """Why Slurm cannot be used here, or None if sbatch exists and sinfo/sacct answer."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    for cmd in (["sinfo", "-h", "-o", "%a %t"], ["sacct", "-n", "-X"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{cmd[0]} failed: {e}"
        if proc.returncode != 0:
            return f"{cmd[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}"
        if cmd[0] == "sinfo" and not any(line.startswith("up ") and line.split()[1].startswith(("idle", "mix", "alloc"))
                                         for line in proc.stdout.splitlines()):
            return f"no usable Slurm node (sinfo: {proc.stdout.strip()!r})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """A usable Slurm cluster; skips (or fails when MEMADV_REQUIRE_SLURM=1) otherwise."""
    problem = _slurm_problem()
    if problem:
        msg = f"no Slurm cluster ({problem}); start one with: bash memadv/executors/slurm/dev-cluster.sh start"
        if os.environ.get("MEMADV_REQUIRE_SLURM") == "1":
            pytest.fail(f"MEMADV_REQUIRE_SLURM=1 but {msg}", pytrace=False)
        pytest.skip(msg)
    return True


@pytest.fixture
def slurm_tmp(tmp_path_factory):
    """A fresh folder for one Slurm test (readable by the compute node: on one machine any local folder)."""
    return tmp_path_factory.mktemp("slurm")
