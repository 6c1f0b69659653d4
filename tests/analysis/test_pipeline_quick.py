"""The quick pipeline end to end: every file, tables equal metrics.parquet, valid PNGs with the
expected panels, a self-contained HTML report, and a re-run that trains nothing and rewrites only
the report."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memadv.experiments.pipeline import run_pipeline
from memadv.experiments.pipeline_config import PipelineConfig
from memadv.estimate.config import EstimateConfig
from memadv.executors import ExecutorConfig

FILES = [
    "scores/mem.parquet", "splits/splits.parquet", "report/scores/mem_histogram.png",
    "report/sec31/fig1_pgd_atypical.png", "report/sec31/fig9_erm_atypical.png", "report/sec31/sec31.csv",
    "report/sec31/sec31.md", "report/sec32/fig2_pgd_typical.png", "report/sec32/fig15_erm_typical.png",
    "report/sec32/fig21_cosine.png", "report/sec32/table1.csv", "report/sec32/table1.md",
    "report/sec32/fig3_poisoning.png", "report/sec32/poisoning.csv", "report/sec32/cosine_reading.json",
    "report/table2.md", "report/table2.csv", "report/table4.md", "report/fig4_curves.png",
    "report/ablation/fig5_ablation.png", "report/ablation/ablation.csv",
    "report/report.md", "report/report.html", "report/claims.json", "pipeline/plan.json",
]
# figure -> panel titles it must have (from the PNG's memadv metadata)
PANELS = {
    "report/sec31/fig1_pgd_atypical.png": ["Clean Acc. (%)", "Adv. Acc., PGD-20 (%)"],
    "report/sec31/fig9_erm_atypical.png": ["Clean Acc. (%)", "Adv. Acc., PGD-20 (%)"],
    "report/sec32/fig2_pgd_typical.png": ["Clean Acc. (%)", "Adv. Acc., PGD-20 (%)"],
    "report/sec32/fig15_erm_typical.png": ["Clean Acc. (%)", "Adv. Acc., PGD-20 (%)"],
}


def _run(run_dir: Path, logs: list[str]) -> dict[str, str]:
    return run_pipeline(EstimateConfig(dataset="digits"), run_dir, ExecutorConfig(), progress=False,
                        log=logs.append, pcfg=PipelineConfig(quick=True))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipe") / "run"
    logs: list[str] = []
    outcome = _run(run_dir, logs)
    return run_dir, outcome, logs


def test_every_file_and_stage(quick_run):
    run_dir, outcome, logs = quick_run
    assert set(outcome.values()) == {"ran"}
    missing = [f for f in FILES if not (run_dir / f).is_file()]
    assert not missing
    plan = json.loads((run_dir / "pipeline" / "plan.json").read_text())
    jobs = [j for s in plan["stages"] for j in s["jobs"]]
    # sec31 2, sec32 6, C3's poisoning control 2 (one seed), bat table 6, ablation 3
    assert len(jobs) == 2 + 6 + 2 + 6 + 3 and all((run_dir / j / "final.parquet").is_file() for j in jobs)
    control = json.loads((run_dir / "sec32/controls/subsets/poison-high-pgd-seed0.json").read_text())
    low = json.loads((run_dir / "sec32/controls/subsets/poison-low-pgd-seed0.json").read_text())
    q = dict(zip(control["atypical_ids"], control["q"]))
    assert len(control["half_ids"]) == len(low["half_ids"]) == len(q) // 2 > 0
    assert min(q[i] for i in control["half_ids"]) >= max(q[i] for i in low["half_ids"])
    assert "C3-P" in (run_dir / "report/claims.json").read_text()
    assert any("training jobs to run" in line and "ETA" in line for line in logs)


def _png_meta(path: Path) -> dict:
    from PIL import Image
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        return json.loads(im.text["memadv"]) if "memadv" in im.text else {}


def test_figures_valid_png_with_panels(quick_run):
    run_dir, _, _ = quick_run
    pngs = sorted((run_dir / "report").rglob("*.png"))
    assert len(pngs) >= 10
    for p in pngs:
        _png_meta(p)  # every figure is a valid PNG
    for rel, panels in PANELS.items():
        meta = _png_meta(run_dir / rel)
        assert meta["panels"] == panels and meta["n_axes"] == 2
    cos = _png_meta(run_dir / "report/sec32/fig21_cosine.png")
    assert cos["n_axes"] == 2 and cos["panels"][0].startswith("ERM") and cos["panels"][1].startswith("PGD-AT")
    fig3 = _png_meta(run_dir / "report/sec32/fig3_poisoning.png")
    assert fig3["n_axes"] == 5 * max(fig3["rows"], 1)


def test_tables_equal_metrics(quick_run):
    run_dir, _, _ = quick_run
    # Section 3.1 table: last-epoch accuracy of each run
    s31 = pd.read_csv(run_dir / "report/sec31/sec31.csv")
    for method, label in (("erm", "ERM"), ("pgd", "PGD-AT")):
        m = pd.read_parquet(run_dir / f"sec31/train/{method}-seed0/metrics.parquet").iloc[-1]
        row = s31[s31["method"] == label].iloc[0]
        for split in ("train", "test"):
            for kind in ("clean", "adv"):
                assert row[f"{split} atyp. {kind}"] == pytest.approx(100 * m[f"{split}/atypical/{kind}"])
    # Table 1: D'_typ accuracy and the cosine measure (in metrics.parquet) at the last epoch
    t1 = pd.read_csv(run_dir / "report/sec32/table1.csv")
    assert len(t1) == 6
    for _, row in t1.iterrows():
        method = {"ERM": "erm", "PGD-AT": "pgd"}[row["method"]]
        name = f"p{row['p']}-{method}-seed0"
        c = pd.read_parquet(run_dir / f"sec32/train/{name}/metrics.parquet")
        assert c["epoch"].tolist() == [1, 2]
        m = c.iloc[-1]
        assert row["typ. test clean"] == pytest.approx(100 * m["test/all/clean"])
        assert row["typ. test adv"] == pytest.approx(100 * m["test/all/adv"])
        assert row["cos_sim"] == pytest.approx(c["cos_sim"].iloc[-1])
    # Table 2: the BAT table's rows are the runs' metrics at their checkpoints
    t2 = pd.read_csv(run_dir / "report/table2.csv")
    pgd = pd.read_parquet(run_dir / "train/pgd-seed0/metrics.parquet")
    best = pgd.iloc[int(np.nanargmax(pgd["test/all/adv"].to_numpy()))]
    row = t2[t2["checkpoint"] == "best_adv"].iloc[0]
    assert row["All Acc."] == pytest.approx(100 * best["test/all/clean"])
    bat = pd.read_parquet(run_dir / "train/bat-alpha1-beta0.2-seed0/metrics.parquet").iloc[-1]
    row = t2[t2["method"].str.startswith("BAT (α = 1,")].iloc[0]
    assert row["All Adv."] == pytest.approx(100 * bat["test/all/adv"])
    # the report shows these tables and the claims decided on them
    md = (run_dir / "report/report.md").read_text()
    assert (run_dir / "report/sec32/table1.md").read_text().strip() in md
    assert (run_dir / "report/table2.md").read_text().strip() in md
    claims = json.loads((run_dir / "report/claims.json").read_text())["claims"]
    assert [c["id"] for c in claims][:7] == ["C1", "C2", "C3", "C3-P", "C3-R", "C4", "C5"] and claims[7]["id"] == "C6"
    # one seed gives no confidence interval: nothing is "supported" or "contradicted" on it
    assert all(c["verdict"] == "inconclusive" or c["verdict"].startswith("not decided") for c in claims)
    m31 = pd.read_parquet(run_dir / "sec31/train/pgd-seed0/metrics.parquet").iloc[-1]
    assert f"train-atypical clean, last epoch: {100 * m31['train/atypical/clean']:.1f}%" in claims[0]["numbers"]
    for c in claims:
        assert f"| {c['id']} |" in md and c["verdict"] in md


def test_html_is_self_contained(quick_run):
    from PIL import Image
    run_dir, _, _ = quick_run
    text = (run_dir / "report/report.html").read_text()
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(srcs) == len(list((run_dir / "report").rglob("*.png")))
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            im.verify()
    assert "<table>" in text and "Claims" in text and "Noise floor" in text


def test_rerun_trains_nothing_and_rewrites_only_the_report(quick_run, tmp_path):
    run_dir, _, _ = quick_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    logs: list[str] = []
    outcome = _run(run_dir, logs)
    assert outcome.pop("report") == "ran" and set(outcome.values()) == {"skipped"}
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(run_dir)) for p in after if before.get(p) != after[p])
    # the plan says "report running" (with the pipeline's pid) while the report is written, then "done"
    assert changed == ["pipeline/plan.json", "report/claims.json", "report/report.html", "report/report.md"]


def test_job_lost_in_a_kill_is_redone_with_the_same_results(quick_run):
    """A job killed before its first checkpoint leaves nothing usable; the re-run trains exactly
    that job again and ends with the same metrics, cosine curve included (the training loop's own tests
    cover a kill between epochs)."""
    run_dir, _, _ = quick_run
    job = run_dir / "sec32/train/p20-pgd-seed0"
    old = pd.read_parquet(job / "metrics.parquet")
    assert {"cos_sim", "cos_dist"} <= set(old.columns)
    shutil.rmtree(job)
    logs: list[str] = []
    outcome = _run(run_dir, logs)
    assert outcome["sec32"] == "ran" and outcome["sec31"] == "skipped" and outcome["bat table"] == "skipped"
    new = pd.read_parquet(job / "metrics.parquet")
    cols = [c for c in old.columns if not c.endswith("time_s")]
    pd.testing.assert_frame_equal(old[cols], new[cols])


def test_status_shows_every_stage(quick_run, capsys):
    from memadv.cli.main import main
    run_dir, _, _ = quick_run
    assert main(["status", str(run_dir), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    stages = {t["stage"]: t for t in st["training"]}
    assert list(stages) == ["sec31", "sec32", "sec32 controls", "bat table", "ablation"]
    assert all(t["finished"] == t["jobs"] > 0 for t in stages.values())
    assert st["splits"] and st["score_figures"] and st["report"] and st["estimate"]["done"] == 2
    assert main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    for word in ("estimate", "splits", "sec31", "sec32", "bat table", "ablation", "report"):
        assert word in text


def test_figures_cli_kinds(quick_run, tmp_path, capsys):
    from memadv.cli.main import main
    run_dir, _, _ = quick_run
    assert main(["figures", "sec31", str(run_dir), "--out", str(tmp_path / "a")]) == 0
    assert main(["figures", "sec32", str(run_dir), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "fig1_pgd_atypical.png").is_file()
    assert (tmp_path / "b" / "fig21_cosine.png").is_file() and (tmp_path / "b" / "fig3_poisoning.png").is_file()
    assert main(["figures", "sec31", str(tmp_path)]) == 2  # no runs: one-line error
    assert "no Section 3.1 runs" in capsys.readouterr().err
