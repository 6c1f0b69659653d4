"""The run's report: ``report/report.md`` and a self-contained ``report/report.html``.

It gathers what the other stages wrote — settings (estimator spec, training configuration), the
estimator's noise floor (``splits/summary.md``), every figure under ``report/`` (embedded in the
HTML as base64 PNG) and every table — and decides the claims C1-C6 of the paper on this run's
numbers (see ``docs/report.md`` for the exact rules). ``report/claims.json`` holds the same
decisions and numbers for programs. Nothing here trains or evaluates a model: the numbers are read
from ``metrics.parquet`` files (Section 3.2's cosine measure included).
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd

from memadv.analysis.figure_configs import ReportConfig
from memadv.analysis.paper_claims import (Claim, claim_c1, claim_c2, claim_c3, claim_c3_poisoning, claim_c3_random,
                                          claim_c4, claim_c5,
                                          claim_c6)
from memadv.analysis.poisoning_control import load_controls
from memadv.bat.runs import find_training_runs
from memadv.files.atomic import write_json_atomic, write_text_atomic
from memadv.files.tables import markdown_table
from memadv.layout import SEC31_TABLE, TABLE1, TABLE2, TABLE4, RunLayout
from memadv.paper_thresholds import MEM_ATYPICAL, MEM_TYPICAL

FIGURE_ORDER = ("scores", "sec31", "sec32", ".", "ablation")


# --------------------------------------------------------------------------- gathering

def _natural(p: Path) -> list[Any]:
    """Sort key: fig2 before fig15."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _read_text(p: Path) -> str | None:
    return p.read_text() if p.is_file() else None


def gather(run_dir: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """Every number, table and figure the report shows (read from disk); Section 3 numbers are means
    over ``seeds`` (default: every seed present)."""
    from memadv.analysis import bat_tables, sec31, sec32
    run_dir = Path(run_dir)
    lay = RunLayout(run_dir)
    rep = lay.report
    out: dict[str, Any] = {"run": str(run_dir), "errors": []}
    try:
        by_seed = sec31.load_sec31_seeds(run_dir, seeds)
        out["sec31"] = by_seed
        out["sec31_seeds"] = {m: len(fs) for m, fs in by_seed.items()}
    except Exception as e:  # noqa: BLE001 - a missing stage shows as missing in the report
        out["sec31"], out["errors"] = {}, out["errors"] + [f"Section 3.1: {e}"]
    try:
        runs32 = sec32.load_sec32(run_dir, seeds)
        out["reading"] = sec32.cosine_reading(sec32.table1(runs32))
    except Exception as e:  # noqa: BLE001
        runs32, out["reading"] = None, None
        out["errors"].append(f"Section 3.2: {e}")
    try:
        table_runs = bat_tables.find_runs(lay.table_train)
    except Exception as e:  # noqa: BLE001
        table_runs = None
        out["errors"].append(f"BAT table: {e}")
    out["claims"] = [claim_c1(out["sec31"].get("pgd")), claim_c2(out["sec31"].get("pgd"), runs32), claim_c3(runs32),
                     claim_c3_poisoning(load_controls(run_dir, seeds)),
                     claim_c3_random(load_controls(run_dir, seeds), runs32), claim_c4(runs32),
                     claim_c5(runs32, out["reading"]),
                     *claim_c6(table_runs, bat_tables.method_label)]
    out["tables"] = [(name, _read_text(p)) for name, p in (
        ("Section 3.1", lay.report_sec31 / f"{SEC31_TABLE}.md"), ("Table 1", lay.report_sec32 / f"{TABLE1}.md"),
        ("Table 2", rep / f"{TABLE2}.md"), ("Table 4", rep / f"{TABLE4}.md"),
        ("Ablation", lay.report_ablation / "ablation.md"))
        if p.is_file()]
    figs = []
    for sub in FIGURE_ORDER:
        d = rep / sub
        if d.is_dir():
            figs += sorted(d.glob("*.png"), key=_natural)
    out["figures"] = figs
    out["settings"] = settings_section(run_dir)
    out["noise"] = noise_section(run_dir)
    from memadv.analysis.table_notes import protocol_section
    out["protocol"] = protocol_section(run_dir)  # how every number was selected (test-selected or not)
    return out


def lr_choice_lines(run_dir: Path) -> list[str]:
    """One bullet per Table 2 run kind with its learning rate chosen by the pipeline's --lr-grid
    (``RUN/lrgrid/choice.json``, :mod:`memadv.experiments.lr_grid`); none without a grid."""
    try:
        data = json.loads(RunLayout(run_dir).lr_choice.read_text())
    except (OSError, ValueError):
        return []
    out = [f"* Learning rate of each Table 2 method, chosen on the validation slice from {data.get('grid')} "
           f"({data.get('rule')}):"]
    for c in data.get("choices", []):
        r = dict(c.get("run", {}))
        rest = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k != "method")
        run = f"{r.get('method')}" + (f" ({rest})" if rest else "")
        vals = ", ".join(f"lr {k}: {100 * v:.1f}%" if isinstance(v, float) and v == v else f"lr {k}: n/a"
                         for k, v in c.get("val_adv", {}).items())
        out.append(f"  * {run}: **lr {c.get('lr'):g}** (validation PGD-20 at the last epoch: {vals})")
    return out


def settings_section(run_dir: Path) -> str:
    lines = []
    spec = RunLayout(run_dir).spec
    if spec.is_file():
        s = json.loads(spec.read_text())
        c = s.get("config", {})
        lines.append(f"* Estimator: dataset `{s.get('dataset')}` ({s.get('n_train')} train / {s.get('n_test')} test), "
                     f"net `{c.get('net')}`, {c.get('models')} models on {c.get('subset_ratio')} subsets, "
                     f"{c.get('epochs')} epochs, lr {c.get('lr')}, batch {c.get('batch_size')}, seed {c.get('seed')}.")
    plan = RunLayout(run_dir).plan
    if plan.is_file():
        p = json.loads(plan.read_text())
        lines.append(f"* Pipeline mode: {'quick (smoke-test sizes)' if p.get('quick') else 'full defaults'}; "
                     f"jobs: " + ", ".join(f"{st['name']} {len(st['jobs'])}" for st in p["stages"] if st["jobs"]) + ".")
    for label, folder in (("Section 3.1 / 3.2 runs", RunLayout(run_dir).sec31_train),
                          ("BAT table runs", RunLayout(run_dir).table_train)):
        runs = find_training_runs(folder)
        if runs:
            conf = runs[0].config()
            t, o = conf["train"], conf["objective"]
            lines.append(f"* {label}: net `{t.get('net')}`, {t.get('epochs')} epochs, lr {t.get('lr')} "
                         f"(x{t.get('lr_gamma')} at {t.get('milestones')}), batch {t.get('batch_size')}, "
                         f"seed {t.get('seed')}; attack eps {o.get('eps'):.4g} (= {255 * o.get('eps'):.0f}/255), "
                         f"{o.get('steps')} PGD steps of {o.get('step_size'):.4g} for training, PGD-"
                         f"{o.get('eval_steps')} for evaluation; per-epoch evaluation on "
                         f"{t.get('eval_max') or 'all'} examples per split; final attacks {t.get('final_attacks')}"
                         + ("" if "aa" in (t.get("final_attacks") or []) or label != "BAT table runs" else
                            " (AutoAttack left out: about 2 minutes per checkpoint for digits on two CPU cores; "
                            "add it with --final-attacks clean fgsm pgd cw aa)") + ".")
            envs = {(e.get("cpu"), e.get("torch"), e.get("torch_threads"), e.get("device"))
                    for r in runs for e in r.config().get("environment", [])}
            if envs:
                lines.append(f"* {label} ran on: " + "; ".join(
                    f"{cpu}, torch {tv}, {th} torch thread(s), device {dev}" for cpu, tv, th, dev in sorted(envs, key=str))
                    + ". Their std over seeds is run-to-run variation on these machines (another CPU or thread "
                    "count changes float summation order and so the training trajectory).")
    lines += lr_choice_lines(run_dir)
    abl = RunLayout(run_dir).ablation_train
    if abl.is_dir():
        cells = set()
        for run in find_training_runs(abl):
            conf = run.config()
            if conf["train"].get("method") == "bat":
                cells.add((conf["objective"].get("alpha"), conf["objective"].get("beta")))
        if cells:
            alphas = sorted({a for a, _ in cells} | {0.0})
            betas = sorted({b for _, b in cells} | {0.0})
            lines.append(f"* Ablation grid: alpha {[float(a) for a in alphas]} x beta {[float(b) for b in betas]} "
                         f"(alpha = beta = 0 is PGD-AT; the paper's grid is 0..3 x 0..0.3).")
    timing = RunLayout(run_dir).timing
    if timing.is_file():
        t = json.loads(timing.read_text())
        total = sum(v["seconds"] for v in t.values())
        lines.append("* Wall time of the last run of each stage: " + ", ".join(
            f"{k} {v['seconds']:.0f} s" + (f" ({v['jobs']} jobs)" if v.get("jobs") else "") for k, v in t.items())
            + f"; sum {total / 60:.1f} min.")
    sets = RunLayout(run_dir).split_file
    if sets.is_file():
        from memadv.splits.files import read_splits
        _, meta = read_splits(sets)
        paper = meta.get("paper_sizes") or {}
        ctrl = f" (--error-control {meta['error_control']}; the paper's reading of the same scores in brackets)" \
            if paper else " (the paper's reading, no error control)"
        lines.append("* Split sizes" + ctrl + ": " + ", ".join(
            f"{k} {v}" + (f" ({paper[k]})" if k in paper else "") for k, v in meta.get("sizes", {}).items()) + ".")
    return "\n".join(lines) if lines else "(no settings found)"


def noise_section(run_dir: Path) -> str:
    parts = []
    mem = RunLayout(run_dir).mem
    if mem.is_file():
        df = pd.read_parquet(mem)
        se = df["mem_se"].to_numpy(float) if "mem_se" in df else np.array([])
        se = se[np.isfinite(se)]
        if se.size:
            nz = se[se > 0]
            parts.append(f"Memorization estimates of {se.size} training examples: {100 * (se == 0).mean():.0f}% have "
                         f"standard error 0 (all models agree on them); the others have median standard error "
                         f"{np.median(nz) if nz.size else float('nan'):.3f} (90th percentile "
                         f"{np.percentile(nz, 90) if nz.size else float('nan'):.3f}), to compare with the "
                         f"paper's thresholds {MEM_ATYPICAL} (atypical) and {MEM_TYPICAL} (typical).")
    summary = _read_text(RunLayout(run_dir).split_summary)
    if summary:
        m = re.search(r"## Noise floor\n(.*?)(?=\n## |\Z)", summary, re.S)
        if m:
            parts.append(m.group(1).strip())
        m = re.search(r"## Models needed\n(.*?)(?=\n## |\Z)", summary, re.S)  # decided share, models needed
        if m:
            parts.append("**Models needed.** " + m.group(1).strip())
    return "\n\n".join(parts) if parts else "(no scores found)"


# --------------------------------------------------------------------------- rendering

def claims_markdown(claims: list[Claim]) -> str:
    return "\n".join(markdown_table(["claim", "section", "statement", "on this run", "deciding numbers"],
                                    [[c.id, c.section, c.text, f"**{c.verdict}**", c.numbers] for c in claims]))


def render_markdown(g: dict[str, Any]) -> str:
    rd = Path(g["run"])
    lines = [f"# memadv report: `{rd.name}`", "", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.",
             "", "## Claims", "",
             "Each claim of the paper, decided on this run's numbers (rules: `docs/report.md`): the effect, its 95% "
             "confidence interval over paired seeds (Student t) and the verdict — supported (the interval lies on "
             "the claim's side of its margin), contradicted (on the other side), inconclusive (it contains the "
             "margin, or one seed gives no interval), or not decided (runs missing, or the premise that the "
             "network fits D_atyp fails). Seeds: " + ", ".join(f"{k}: {v}" for k, v in g.get("sec31_seeds", {}).items())
             + " in Section 3.1; Table 1 and Table 2 list theirs.", "",
             claims_markdown(g["claims"]), ""]
    if g.get("reading"):
        r = g["reading"]
        lines += [f"**Which \"Cosine Distance\"?** The paper's footnote defines it as the mean cosine similarity, its "
                  f"text reads smaller values as less separated classes. On this run (PGD-AT, last epoch, p = "
                  f"{r['p']}) the mean similarity is {[round(v, 3) for v in r['similarity']]} and 1 - similarity "
                  f"{[round(v, 3) for v in r['1 - similarity']]}; the paper's Table 1 (decreasing: "
                  f"{r['paper']}) matches the **{r['reading']}** reading (decided by {r['decided_by']}: clear decreasing "
                  f"trend (by more than {r.get('trend_noise', 0):.3f}, twice the largest sd over seeds): "
                  f"{r['trend_matches']}; mean absolute gap to the paper's values: "
                  f"{ {k: round(v, 3) for k, v in r['magnitude_gap'].items()} }). Figures use that reading; claim C5 "
                  f"always uses 1 - similarity as the separation.", ""]
    if g["errors"]:
        lines += ["Missing parts: " + "; ".join(g["errors"]), ""]
    lines += ["## Settings", "", g["settings"], "", "## Selection protocol of every number", "",
              g.get("protocol", ""), "", "## Noise floor of the estimator", "", g["noise"], "",
              "## Tables", ""]
    for name, text in g["tables"]:
        lines += [text.strip(), ""]
    lines += ["## Figures", ""]
    for p in g["figures"]:
        rel = p.relative_to(RunLayout(rd).report)
        lines += [f"### {rel}", "", f"![{rel}]({rel})", ""]
    return "\n".join(lines) + "\n"


def markdown_to_html(md: str, images: dict[str, str]) -> str:
    """A self-contained HTML page of the report's Markdown, rendered by Python-Markdown with its
    ``tables`` extension (GitHub-style tables; ``\\|`` in a cell is a literal ``|``, see
    :func:`memadv.files.tables.markdown_table`); an image ``![alt](path)`` whose path is a key of
    ``images`` (base64 PNG data) is embedded as a data: URI."""
    def embed(m: re.Match[str]) -> str:
        alt, src = m.group(1), m.group(2)
        return f"![{alt}](data:image/png;base64,{images[src]})" if src in images else m.group(0)

    body = markdown.markdown(re.sub(r"!\[(.*?)\]\((.*?)\)", embed, md), extensions=["tables"], output_format="html")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:"
             "collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}"
             "img{max-width:100%}figure{margin:1em 0}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>memadv report</title><style>{style}</style>"
            f"</head><body>\n" + body + "\n</body></html>\n")


def write_report(run_dir: str | Path, seeds: list[int] | None = None) -> list[Path]:
    """Write report.md, report.html and claims.json under ``RUN/report``; returns their paths."""
    run_dir = Path(run_dir)
    lay = RunLayout(run_dir)
    rep = lay.report
    rep.mkdir(parents=True, exist_ok=True)
    g = gather(run_dir, seeds)
    md = render_markdown(g)
    images = {str(p.relative_to(rep)): base64.b64encode(p.read_bytes()).decode() for p in g["figures"]}
    write_text_atomic(lay.report_md, md)
    write_text_atomic(lay.report_html, markdown_to_html(md, images))
    write_json_atomic(lay.claims_json, {"claims": [asdict(c) for c in g["claims"]],
                                        "cosine_reading": g.get("reading"),
                                        "figures": [str(p.relative_to(rep)) for p in g["figures"]]})
    return [lay.report_md, lay.report_html, lay.claims_json]


def make_figures(run_dir: Path, cfg: ReportConfig) -> list[Path]:
    return write_report(run_dir)


__all__ = ["Claim", "claim_c1", "claim_c2", "claim_c3", "claim_c4", "claim_c5", "claim_c6", "gather",
           "write_report", "markdown_to_html", "render_markdown"]
