"""dask_scheduler: threads (default), dask.distributed LocalCluster, dask_jobqueue SLURMCluster."""

from __future__ import annotations

import os
import sys

import pytest

from memadv.errors import ConfigError, MemadvError, UnknownChoiceError
from memadv.executors.slurm.dask_cluster import MissingDependencyError, dask_scheduler


def _total() -> int:
    import dask.array as da

    return int(da.arange(1000, chunks=100).sum().compute())


def test_threads_is_default_and_starts_nothing():
    with dask_scheduler() as client:
        assert client is None
        import dask

        assert dask.config.get("scheduler") == "threads"
        assert _total() == 499500
    with dask_scheduler("threads", workers=2):
        assert _total() == 499500


def test_unknown_kind_and_option():
    with pytest.raises(UnknownChoiceError, match="local, slurm, threads"):
        with dask_scheduler("kubernetes"):
            pass
    with pytest.raises(ConfigError, match="unknown option"):
        with dask_scheduler("local", cores=3):
            pass
    with pytest.raises(ConfigError):
        with dask_scheduler("local", workers=0):
            pass


@pytest.mark.parametrize("kind, module", [("local", "distributed"), ("slurm", "dask_jobqueue")])
def test_missing_extra_names_pip_install(kind, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError) as info:
        with dask_scheduler(kind):
            pass
    assert "pip install memadv[cluster]" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, MemadvError)


def test_local_cluster():
    pytest.importorskip("distributed")
    with dask_scheduler("local", workers=1, threads_per_worker=1) as client:
        assert client is not None and len(client.scheduler_info()["workers"]) == 1
        assert _total() == 499500


def test_slurm_job_script_text():
    pytest.importorskip("dask_jobqueue")
    from memadv.executors.slurm.dask_cluster import slurm_job_script

    text = slurm_job_script(partition="gpu", cores=4, memory="8GB", walltime="00:30:00", job_extra=["qos=high"])
    for line in ["#SBATCH -p gpu", "#SBATCH --cpus-per-task=4", "#SBATCH -t 00:30:00", "#SBATCH --qos=high"]:
        assert line in text.splitlines(), (line, text)


@pytest.mark.slurm
def test_slurm_cluster_runs_a_computation(slurm_cluster, slurm_tmp):
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        if os.environ.get("MEMADV_REQUIRE_SLURM") == "1":
            pytest.fail("MEMADV_REQUIRE_SLURM=1 but dask-jobqueue is missing: pip install memadv[cluster]")
        pytest.skip("dask-jobqueue is not installed (pip install memadv[cluster])")
    with dask_scheduler("slurm", cores=1, memory="1GB", walltime="00:10:00", jobs=1,
                        log_directory=slurm_tmp, wait_timeout_s=120) as client:
        assert len(client.scheduler_info()["workers"]) >= 1
        assert _total() == 499500


@pytest.mark.slurm
def test_slurm_cluster_times_out_when_no_worker_arrives(slurm_cluster, slurm_tmp):
    """A worker job that never starts (held) ends in a one-line error after --dask-wait-s, not a hang
    (issue 10, item 12)."""
    import subprocess
    import time

    pytest.importorskip("dask_jobqueue")
    from memadv.executors.slurm.dask_cluster import DaskWorkerTimeoutError

    start = time.monotonic()
    with pytest.raises(DaskWorkerTimeoutError, match="--dask-wait-s") as info:
        with dask_scheduler("slurm", cores=1, memory="1GB", walltime="00:05:00", job_extra=["hold"],
                            log_directory=slurm_tmp, wait_timeout_s=5):
            pass
    assert time.monotonic() - start < 60 and "\n" not in str(info.value)
    time.sleep(2)  # closing the cluster cancels its held job
    names = subprocess.run(["squeue", "-h", "-o", "%j %u"], capture_output=True, text=True).stdout
    assert "dask-worker" not in names, names
