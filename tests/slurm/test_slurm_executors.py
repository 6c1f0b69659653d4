"""Executors without a Slurm cluster: config validation, in-process and local runs, failures, and
the sbatch script a Slurm run would submit."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from memadv.config import add_config_arguments, build_config
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError
from memadv.executors import ExecutorConfig, TasksFailedError, run_tasks
from memadv.executors.slurm.accounting import job_states
from memadv.executors.slurm.options import parse_sbatch_extra
from memadv.executors.slurm.submit import sbatch_script
from memadv_slurm_toys import ToyTask


def _outputs(root: Path) -> dict[int, str]:
    return {int(p.stem): p.read_text() for p in (root / "out").glob("*.txt")}


def _calls(root: Path) -> dict[int, int]:
    return {int(p.stem): len(p.read_text().splitlines()) for p in (root / "calls").glob("*.log")}


# ---- config -------------------------------------------------------------------------------------

def test_defaults_and_cli_toml(tmp_path):
    cfg = ExecutorConfig()
    assert (cfg.executor, cfg.workers, cfg.partition, cfg.timeout_min) == ("auto", 2, None, 240)
    assert (cfg.gpus_per_task, cfg.cpus_per_task, cfg.mem_gb, cfg.array_parallelism, cfg.sbatch_extra) == (0, 2, None, 64, [])
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ExecutorConfig)
    toml = tmp_path / "run.toml"
    toml.write_text('[run]\nexecutor = "slurm"\npartition = "gpu"\ntimeout_min = 30\nsbatch_extra = ["qos=high"]\n')
    args = parser.parse_args(["--timeout-min", "60", "--gpus-per-task", "1", "--sbatch-extra", "qos=low", "exclusive"])
    cfg = build_config(ExecutorConfig, args, toml, section="run")
    assert (cfg.executor, cfg.partition, cfg.timeout_min, cfg.gpus_per_task) == ("slurm", "gpu", 60, 1)
    assert cfg.sbatch_extra == ["qos=low", "exclusive"]


@pytest.mark.parametrize("kwargs, error", [
    (dict(executor="kubernetes"), UnknownChoiceError),
    (dict(workers=0), ConfigError),
    (dict(timeout_min=0), ConfigError),
    (dict(gpus_per_task=-1), ConfigError),
    (dict(cpus_per_task=0), ConfigError),
    (dict(mem_gb=0.0), ConfigError),
    (dict(array_parallelism=0), ConfigError),
    (dict(workers=1.5), ConfigError),
    (dict(sbatch_extra=["-p gpu"]), ConfigError),
    (dict(sbatch_extra=["=x"]), ConfigError),
    (dict(sbatch_extra=["array=0-3"]), ConfigError),
    (dict(sbatch_extra=["--output=x.log"]), ConfigError),
])
def test_bad_config_is_one_line_error(kwargs, error):
    with pytest.raises(error) as info:
        ExecutorConfig(**kwargs)
    assert isinstance(info.value, MemadvError)
    assert "\n" not in str(info.value)


def test_unknown_executor_names_choices():
    with pytest.raises(UnknownChoiceError, match="inprocess, local, slurm"):
        ExecutorConfig(executor="kubernetes")


def test_parse_sbatch_extra_forms():
    assert parse_sbatch_extra(["qos=high", "--constraint=a100&v100", "#SBATCH --exclusive", " mail-type = END "]) == {
        "qos": "high", "constraint": "a100&v100", "exclusive": True, "mail_type": "END"}


# ---- sbatch script ------------------------------------------------------------------------------

def test_sbatch_script_has_requested_lines(tmp_path):
    cfg = ExecutorConfig(executor="slurm", partition="gpu", gpus_per_task=2, cpus_per_task=8, timeout_min=90,
                         mem_gb=32, array_parallelism=3, sbatch_extra=["qos=high", "--constraint=a100", "exclusive"])
    text = sbatch_script(cfg, tmp_path / "jobs", 10, desc="cifar shards")
    lines = set(text.splitlines())
    for line in ["#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --time=90", "#SBATCH --mem=32G", "#SBATCH --array=0-9%3", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive", "#SBATCH --job-name=memadv-cifar-shards",
                 "#SBATCH --signal=USR2@90"]:
        assert line in lines, (line, text)
    assert "-m submitit.core._submit" in text


def test_sbatch_script_defaults_and_fractional_memory(tmp_path):
    text = sbatch_script(ExecutorConfig(executor="slurm", mem_gb=1.5), tmp_path, 2)
    assert "#SBATCH --mem=1536M" in text
    assert "--partition" not in text and "gpus" not in text  # cluster default partition, no GPUs
    assert "#SBATCH --time=240" in text and "#SBATCH --array=0-1%2" in text


@pytest.mark.parametrize("item, names", [
    ("signal=TERM@30", "USR2"), ("time=1", "--timeout-min"), ("--time-min=1", "--timeout-min"),
    ("job-name=x", "memadv names"), ("cpus-per-task=2", "--cpus-per-task"), ("#SBATCH --partition=gpu", "--partition"),
    ("mem=4G", "--mem-gb"), ("gpus_per_task=1", "--gpus-per-task"), ("ntasks=2", "one process"),
    ("nodes=2", "one process"), ("no-requeue", "requeues"), ("tim=5", "--timeout-min"), ("sig=TERM@30", "USR2"),
])
def test_sbatch_extra_refuses_what_memadv_sets(item, names):
    """Issue 18, item 2: an extra item naming a setting memadv owns (or an abbreviation sbatch would
    read as one) used to replace the generated #SBATCH line silently (signal=TERM@30: no requeue)."""
    with pytest.raises(ConfigError) as info:
        ExecutorConfig(executor="slurm", sbatch_extra=[item])
    msg = str(info.value)
    assert "\n" not in msg and repr(item) in msg and names in msg and "memadv sets" in msg


def test_sbatch_extra_memory_per_cpu_conflicts_only_with_mem_gb(tmp_path):
    assert "#SBATCH --mem-per-cpu=1G" in sbatch_script(ExecutorConfig(executor="slurm", sbatch_extra=["mem-per-cpu=1G"]),
                                                       tmp_path, 1)
    assert "#SBATCH --gpus=1" in sbatch_script(ExecutorConfig(executor="slurm", sbatch_extra=["gpus=1"]), tmp_path, 1)
    with pytest.raises(ConfigError, match="--mem-gb"):
        ExecutorConfig(executor="slurm", mem_gb=2, sbatch_extra=["mem-per-cpu=1G"])


def test_cli_refuses_owned_sbatch_extra_before_anything_is_written(tmp_path, capsys):
    from memadv.cli.main import main

    code = main(["estimate", "--dataset", "digits", "--models", "4", "--executor", "slurm", "--sbatch-extra",
                 "signal=TERM@30", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "signal=TERM@30" in err and "USR2" in err, err
    assert not (tmp_path / "run").exists()


# ---- in-process and local ------------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_runs_every_id_once_and_resumes(executor, tmp_path, toy_path):
    root = tmp_path / "run"
    cfg = ExecutorConfig(executor=executor, workers=2)
    ids = [0, 1, 2, 3, 4, 5]
    results = run_tasks(ToyTask(root), ids, cfg, root / "exec", desc="toy", progress=False)
    assert results == [ToyTask.expected(i) for i in ids]
    assert _outputs(root) == {i: ToyTask.expected(i) for i in ids}
    assert _calls(root) == {i: 1 for i in ids}
    # a second run finds everything done: same results, nothing computed again
    assert run_tasks(ToyTask(root), list(reversed(ids)), cfg, root / "exec", progress=False) == \
        [ToyTask.expected(i) for i in reversed(ids)]
    assert _calls(root) == {i: 1 for i in ids}
    assert job_states(root / "exec") == {}  # no Slurm submission there


@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_failures_raise_named_error_after_the_rest_ran(executor, tmp_path, toy_path):
    root = tmp_path / "run"
    cfg = ExecutorConfig(executor=executor, workers=2)
    with pytest.raises(TasksFailedError) as info:
        run_tasks(ToyTask(root, fail_ids=(1, 4)), range(6), cfg, root / "exec", desc="toy shards", progress=False)
    err = info.value
    msg = str(err)
    assert "\n" not in msg
    assert "2 of 6 toy shards failed (ids 1, 4)" in msg and "ValueError: toy failure for id 1" in msg
    assert sorted(err.failed) == [1, 4]
    for i in (1, 4):
        log = Path(err.logs[i])
        assert log.is_file() and str(log) in msg
        assert f"toy failure for id {i}" in log.read_text()
    assert _outputs(root) == {i: ToyTask.expected(i) for i in (0, 2, 3, 5)}
    # fixing the cause and re-running computes only the failed ids
    assert run_tasks(ToyTask(root), range(6), cfg, root / "exec", progress=False) == [ToyTask.expected(i) for i in range(6)]
    assert _calls(root) == {i: 1 for i in range(6)}


def test_local_worker_death_is_a_failure(tmp_path, toy_path):
    from memadv_slurm_toys import DyingTask

    with pytest.raises(TasksFailedError, match="worker process died"):
        run_tasks(DyingTask(), [0, 1], ExecutorConfig(executor="local", workers=1), tmp_path, progress=False)


def test_empty_and_duplicate_ids(tmp_path):
    assert run_tasks(ToyTask(tmp_path), [], ExecutorConfig(), tmp_path) == []
    with pytest.raises(ConfigError, match="duplicate"):
        run_tasks(ToyTask(tmp_path), [1, 1], ExecutorConfig(), tmp_path)


def test_slurm_without_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MemadvError, match="needs Slurm's sbatch"):
        run_tasks(ToyTask(tmp_path), [0], ExecutorConfig(executor="slurm"), tmp_path)


def test_config_is_a_dataclass_with_help():
    for f in dataclasses.fields(ExecutorConfig):
        assert f.metadata.get("help"), f.name


def test_wait_ends_when_slurm_does_not_answer(tmp_path, monkeypatch):
    """Issue 18, item 5: every wait has a bound. sacct hangs and squeue fails (controller down): each
    call is cut off, and the wait ends in one line saying the job may still run. The jobs are
    stand-ins and the commands stand-ins on PATH (no controller can be taken down here); the bounds
    are shortened from 60 s / 600 s."""
    from types import SimpleNamespace

    from memadv.executors.slurm import accounting, submit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\nexec sleep 30\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    for name in ("sacct", "squeue"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(accounting, "COMMAND_TIMEOUT_S", 0.5)
    monkeypatch.setitem(submit._GRACE_S, "NO_ANSWER", 3.0)
    jobs = {0: SimpleNamespace(job_id="424242_0", paths=SimpleNamespace(stderr=tmp_path / "424242_0_0_log.err"))}
    with pytest.raises(TasksFailedError) as info:
        submit._wait_slurm(jobs, [0], tmp_path, "toy shards", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "Slurm gave no state for 3 s" in msg and "may still run" in msg, msg
    assert "sacct gave no answer within" in msg, msg
    assert "Unable to contact slurm controller" in msg, msg


def test_submission_hides_the_enclosing_jobs_variables():
    """Issue 18, item 3 (the real run is tests/slurm/test_slurm_faults.py): which variables sbatch
    does not see; the cluster's configuration and the user's standing SBATCH_* defaults stay."""
    from memadv.executors.slurm.submit import enclosing_job_variables

    env = {"SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_MEM_PER_CPU": "200", "SLURM_JOB_ID": "5",
           "SRUN_DEBUG": "3", "SLURMD_NODENAME": "vm", "SBATCH_ACCOUNT": "lab", "SBATCH_TIMELIMIT": "5",
           "SBATCH_SIGNAL": "TERM@30", "PATH": "/bin", "SUBMITIT_EXECUTOR": "slurm"}
    assert enclosing_job_variables(env) == ["SBATCH_SIGNAL", "SBATCH_TIMELIMIT", "SLURMD_NODENAME", "SLURM_JOB_ID",
                                            "SLURM_MEM_PER_CPU", "SRUN_DEBUG", "SUBMITIT_EXECUTOR"]
