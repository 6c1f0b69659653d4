"""memadv/executors/slurm/dev-cluster.sh: syntax, bounded waits that fail loudly, and idempotent start."""

from __future__ import annotations

import os
import subprocess

import pytest

from memadv.executors.slurm import DEV_CLUSTER_SCRIPT


def test_script_exists_and_parses():
    assert DEV_CLUSTER_SCRIPT.is_file()
    subprocess.run(["bash", "-n", str(DEV_CLUSTER_SCRIPT)], check=True)


def test_timeout_fails_and_prints_log_tails(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "slurmctld.log").write_text("error: something went wrong\n")
    env = {**os.environ, "MEMADV_SLURM_DIR": str(tmp_path)}
    proc = subprocess.run(["bash", "-c", f"source {DEV_CLUSTER_SCRIPT}; wait_for 2 'the controller' false"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "timed out after 2s waiting for the controller" in proc.stderr
    assert "something went wrong" in proc.stderr


def test_unknown_command_fails():
    proc = subprocess.run(["bash", str(DEV_CLUSTER_SCRIPT), "bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unknown command" in proc.stderr


@pytest.mark.slurm
def test_start_is_idempotent(slurm_cluster):
    if os.geteuid() != 0:
        pytest.skip("dev-cluster.sh start needs root")
    proc = subprocess.run(["bash", str(DEV_CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ready:" in proc.stdout
    assert "starting" not in proc.stdout  # everything was already running
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.split()
    assert any(s.startswith(("idle", "mix", "alloc")) for s in states), states
