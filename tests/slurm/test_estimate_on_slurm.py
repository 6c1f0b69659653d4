"""A real Slurm sweep: an estimate submitted as a submitit job array gives exactly the in-process scores."""

import time

import pandas as pd
import pytest

from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate, estimate_status
from memadv.executors import ExecutorConfig
from memadv.executors.slurm.accounting import read_jobs

pytestmark = pytest.mark.slurm


def test_estimate_sweep_on_slurm_equals_inprocess(slurm_cluster, slurm_tmp):
    cfg = EstimateConfig(dataset="digits", models=8, models_per_shard=2, epochs=2, batch_size=128)
    assert cfg.n_shards == 4
    on_slurm = estimate(cfg, slurm_tmp / "slurm", ExecutorConfig(executor="slurm", cpus_per_task=1, timeout_min=10),
                        progress=False, scheduler="sync")
    jobs = read_jobs(slurm_tmp / "slurm" / "estimate" / "jobs")
    assert jobs is not None and sorted(int(t) for t in jobs["tasks"]) == [0, 1, 2, 3]
    status = estimate_status(slurm_tmp / "slurm")
    assert status["done"] == 4 and not status["failed"]

    in_process = estimate(cfg, slurm_tmp / "local", ExecutorConfig(executor="inprocess"), progress=False,
                          scheduler="sync")
    for table in ("mem", "infl", "test_acc"):
        pd.testing.assert_frame_equal(getattr(on_slurm, table), getattr(in_process, table), check_exact=True)
    assert on_slurm.meta["fingerprint_train"] == in_process.meta["fingerprint_train"]


def test_dask_cluster_on_slurm_starts_after_the_shards(slurm_cluster, slurm_tmp, capsys, monkeypatch):
    """`--dask-cluster slurm`: the worker job is submitted after the shards' job array (its job id
    is higher), with the partition / memory / walltime options (issue 10, item 12)."""
    import json
    import subprocess

    pytest.importorskip("dask_jobqueue")
    from memadv.cli.main import main

    run = slurm_tmp / "run"
    monkeypatch.chdir(slurm_tmp)  # the dask worker job's slurm-N.out lands in the submit folder
    code = main(["estimate", "--dataset", "digits", "--models", "4", "--models-per-shard", "2", "--epochs", "1",
                 "--full-models", "0", "--executor", "slurm", "--cpus-per-task", "1", "--timeout-min", "10",
                 "--dask-cluster", "slurm", "--dask-partition", "debug", "--dask-memory", "4GB",
                 "--dask-walltime", "00:07:00", "--dask-wait-s", "120", "--no-progress", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    array = int(json.loads((run / "estimate" / "jobs" / "jobs.json").read_text())["array_job_ids"][-1])
    # slurmctld hands job records to slurmdbd asynchronously: on a loaded machine the worker job (which
    # did run: the estimate finished through it) reaches sacct seconds later, so look for up to 60 s
    deadline = time.monotonic() + 60.0
    while True:
        rows = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-1hour", "-o", "JobIDRaw,JobName,Timelimit"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        dask_jobs = [r.split("|") for r in rows if r.split("|")[1] == "dask-worker"]
        dask_jobs = [(int(j), limit) for j, _, limit in dask_jobs if int(j) > array - 1]
        if dask_jobs or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert dask_jobs and all(j > array for j, _ in dask_jobs), (array, dask_jobs)
    assert all(limit == "00:07:00" for _, limit in dask_jobs)
