"""``memadv estimate --until-decided`` (issue 19 item 3), ``--models`` raised later, ``memadv status``'s
decided table: real digits estimates of a few models (one epoch)."""

from __future__ import annotations

import json

import pytest

from memadv.cli.main import main
from memadv.splits.files import read_splits
from memadv.estimate.until_decided import looks_plan
from memadv.errors import ConfigError
from memadv.layout import RunLayout

TINY = ["--dataset", "digits", "--models-per-shard", "5", "--epochs", "1", "--batch-size", "256",
        "--full-models", "0", "--no-progress"]
# thresholds far from every estimate: a few models decide most examples, so the run stops at its first look
EASY = ["--mem-typical", "0.9", "--mem-atypical", "0.95", "--infl-typical", "0.9", "--infl-atypical", "0.95",
        "--min-test-acc", "0"]


def test_looks_plan():
    assert looks_plan(100, 1600, 100) == [100, 200, 400, 800, 1600]
    assert looks_plan(100, 1000, 64) == [128, 256, 448, 832, 1000]  # whole shards, the last look at the maximum
    assert looks_plan(100, 100, 100) == [100]
    with pytest.raises(ConfigError, match="at least --models"):
        looks_plan(200, 100, 10)


def test_until_decided_stops_resumes_and_extends(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["estimate", *TINY, *EASY, "--models", "10", "--until-decided", "0.5", "--max-models", "20",
            "--error-control", "fdr:0.05", "--out", str(run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rec = json.loads((run / "estimate" / "looks.json").read_text())
    assert rec["plan"] == [10, 20] and rec["stopped"] == 10 and len(rec["looks"]) == 1
    assert all(v >= 0.5 for v in rec["looks"][0]["decided"].values())
    assert "look 1/2 at 10 models (fdr:0.025 per look)" in out and "target 50% reached" in out
    spec = json.loads((run / "estimate" / "spec.json").read_text())
    assert spec["config"]["models"] == 10 and spec["n_shards"] == 2

    # resumed with the same options: answered already, nothing trained
    assert main(argv) == 0
    assert "already answered at 10 models" in capsys.readouterr().out
    # another plan cannot reuse the alpha already spent
    assert main([*argv[:-2], "--until-decided", "0.9", "--out", str(run)]) == 2
    assert "cannot be re-planned" in capsys.readouterr().err

    # splits of the sequential run spend alpha / 2
    assert main(["splits", str(run), *EASY, "--error-control", "fdr:0.05"]) == 0
    _, meta = read_splits(run)
    assert meta["thresholds"]["looks"] == 2
    assert "alpha spent over 2 planned looks" in (run / "splits" / "summary.md").read_text()
    capsys.readouterr()

    # --models raised later: only the new shards train, the old files stay as they are
    before = {s: RunLayout(run).shard(s).stat().st_mtime_ns for s in range(2)}
    assert main(["estimate", *TINY, "--models", "20", "--out", str(run)]) == 0
    assert "2 of 4 shards already finished, kept; 2 to train" in capsys.readouterr().out
    assert {s: RunLayout(run).shard(s).stat().st_mtime_ns for s in range(2)} == before
    assert json.loads((run / "estimate" / "spec.json").read_text())["n_shards"] == 4
    # ... but never lowered
    assert main(["estimate", *TINY, "--models", "10", "--out", str(run)]) == 2
    assert "can only grow" in capsys.readouterr().err

    # status: the decided table of each rule, under the splits' settings, and the plan
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    for rule in ("train-mem", "test-atypical", "test-typical"):
        assert rule in out
    assert "decided now" in out and "until-decided  50% of" in out
    assert main(["status", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    rows = {r["rule"]: r for r in status["decided"]["rules"]}
    assert rows["train-mem"]["models"] == 20 and 0 <= rows["train-mem"]["decided"] <= 1
    # 20 models is the plan's second look: alpha / 2 (a run extended beyond its plan would spend alpha / 3)
    assert rows["train-mem"]["control"] == "fdr:0.025"


def test_pipeline_error_control_option():
    from memadv.errors import UnknownChoiceError
    from memadv.executors import ExecutorConfig
    from memadv.experiments.pipeline import stages
    from memadv.experiments.pipeline_config import PipelineConfig

    with pytest.raises(UnknownChoiceError, match="fdr-by"):
        PipelineConfig(error_control="bh")
    from memadv.estimate.config import EstimateConfig
    splits = {s.name: s for s in stages(EstimateConfig(dataset="digits"), ExecutorConfig(), False,
                                        PipelineConfig(error_control="fdr:0.05"))}
    assert splits["splits"].stamp == {"error_control": "fdr:0.05"}
    default = {s.name: s for s in stages(EstimateConfig(dataset="digits"), ExecutorConfig(), False, PipelineConfig())}
    assert default["splits"].stamp == {"error_control": "fdr:0.05"}  # the pipeline's default (docs/splits.md)
    plain = {s.name: s for s in stages(EstimateConfig(dataset="digits"), ExecutorConfig(), False,
                                       PipelineConfig(error_control="none"))}
    assert plain["splits"].stamp is None  # the paper's reading: runs made before the option keep their splits
    assert PipelineConfig(quick=True).error_control == "none"  # 48 models decide no typical example
    assert PipelineConfig(quick=True, error_control="fdr:0.01").error_control == "fdr:0.01"
