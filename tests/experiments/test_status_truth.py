"""Issue 10 item 16: ``memadv status`` reports what is on disk, and a refused command changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memadv.cli.main import main
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate, estimate_status
from memadv.estimate.shards import read_shard
from memadv.executors import ExecutorConfig, TasksFailedError
from memadv.layout import RunLayout

SMALL = dict(dataset="digits", per_class=5, test_per_class=3, models=4, models_per_shard=2, epochs=1, full_models=0)


def status_text(run_dir: Path, capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    return capsys.readouterr().out


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_truncated_shard_is_damaged_and_estimate_retrains_it(tmp_path: Path, capsys) -> None:
    cfg = EstimateConfig(**SMALL)
    estimate(cfg, tmp_path, progress=False)
    path = RunLayout(tmp_path).shard(0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    st = estimate_status(tmp_path)
    assert st["done"] == 1 and list(st["damaged"]) == [0] and st["pending"] == 0
    text = status_text(tmp_path, capsys)
    assert "1 damaged" in text and f"memadv estimate --out {tmp_path}" in text
    estimate(cfg, tmp_path, progress=False)  # the re-run the status names
    assert len(read_shard(path, spec=json.loads((tmp_path / "estimate" / "spec.json").read_text()),
                          shard=0)["model_id"]) == 2
    assert estimate_status(tmp_path)["done"] == 2 and estimate_status(tmp_path)["damaged"] == {}


@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_shard_that_failed_with_its_log_on_disk_is_failed(tmp_path: Path, executor: str,
                                                          monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cfg = EstimateConfig(**SMALL)
    if executor == "local":
        # a worker process does not see a monkeypatch: a shard whose data cannot be read fails there
        estimate(cfg, tmp_path, progress=False)
        RunLayout(tmp_path).shard(1).unlink()
        spec_file = tmp_path / "estimate" / "spec.json"
        good = spec_file.read_text()
        spec = json.loads(good)
        spec["fingerprint_train"] = "0" * 16  # the shard task refuses data that is not the run's
        spec_file.write_text(json.dumps(spec))
        from memadv.estimate.shards import ShardTask
        from memadv.executors import run_tasks
        with pytest.raises(TasksFailedError):
            run_tasks(ShardTask(tmp_path), [1], ExecutorConfig(executor="local", workers=1),
                      tmp_path / "estimate" / "jobs", progress=False)
        spec_file.write_text(good)
    else:
        import memadv.estimate.shards as shards
        real = shards.train_models

        def fail_on_shard_1(cfg, dataset, models, **kw):  # type: ignore[no-untyped-def]
            if 2 in models:
                raise RuntimeError("boom")
            return real(cfg, dataset, models, **kw)

        monkeypatch.setattr(shards, "train_models", fail_on_shard_1)
        with pytest.raises(TasksFailedError):
            estimate(cfg, tmp_path, ExecutorConfig(executor=executor), progress=False)
    st = estimate_status(tmp_path)
    assert (st["done"], st["failed"], st["pending"]) == (1, [1], 0)
    assert "1 failed, 0 damaged, 0 pending" in status_text(tmp_path, capsys)


def _plan_stages(cfg: EstimateConfig):  # type: ignore[no-untyped-def]
    from memadv.experiments.pipeline import stages
    from memadv.experiments.pipeline_config import PipelineConfig

    pcfg = PipelineConfig(quick=True)
    return pcfg, stages(cfg, ExecutorConfig(), False, pcfg)


def test_running_stage_only_while_its_process_lives(tmp_path: Path, capsys) -> None:
    from memadv.experiments.pipeline import write_plan

    cfg = EstimateConfig(**SMALL)
    pcfg, todo = _plan_stages(cfg)
    write_plan(tmp_path, todo, cfg, pcfg, {s.name: "pending" for s in todo} | {"sec31": "running"})
    text = status_text(tmp_path, capsys)
    assert "running stage: sec31" in text and "pid" in text
    # the process that held it is gone (SIGKILL leaves the plan as it was): "interrupted"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    plan = json.loads((tmp_path / "pipeline" / "plan.json").read_text())
    plan["owner"]["pid"], plan["owner"]["start"] = int(dead.stdout), None
    (tmp_path / "pipeline" / "plan.json").write_text(json.dumps(plan))
    text = status_text(tmp_path, capsys)
    assert "running stage" not in text and "sec31 interrupted" in text


def test_report_stage_is_done_only_when_its_files_exist(tmp_path: Path, capsys) -> None:
    from memadv.experiments.pipeline import write_plan
    from memadv.layout import RunLayout

    cfg = EstimateConfig(**SMALL)
    pcfg, todo = _plan_stages(cfg)
    write_plan(tmp_path, todo, cfg, pcfg, {s.name: "pending" for s in todo})
    plan = json.loads((tmp_path / "pipeline" / "plan.json").read_text())
    assert {s["name"]: s["state"] for s in plan["stages"]}["report"] == "pending"
    # a plan that says "done" while the report is not on disk: status believes the disk
    write_plan(tmp_path, todo, cfg, pcfg, {s.name: "done" for s in todo})
    assert "report incomplete" in status_text(tmp_path, capsys)
    RunLayout(tmp_path).report_html.parent.mkdir(parents=True, exist_ok=True)
    RunLayout(tmp_path).report_html.write_text("<html></html>")
    assert "report done" in status_text(tmp_path, capsys)


def test_refused_pipeline_command_changes_nothing(tmp_path: Path, capsys) -> None:
    from memadv.errors import ConfigError
    from memadv.experiments.pipeline import run_pipeline
    from memadv.experiments.pipeline_config import PipelineConfig

    estimate(EstimateConfig(**SMALL), tmp_path, progress=False)
    before = snapshot(tmp_path)
    status_before = status_text(tmp_path, capsys)
    # --models may grow (issue 19: only new shards train) but never shrink
    with pytest.raises(ConfigError, match="different models .*can only grow"):
        run_pipeline(EstimateConfig(**{**SMALL, "models": 2}), tmp_path, progress=False, log=lambda s: None,
                     pcfg=PipelineConfig(train_epochs=1))
    assert snapshot(tmp_path) == before
    assert status_text(tmp_path, capsys) == status_before
