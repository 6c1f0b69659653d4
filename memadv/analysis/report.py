"""The run's report: ``report/report.md`` and a self-contained ``report/report.html``.

It gathers what the other stages wrote — settings (estimator spec, training configuration), the
estimator's noise floor (``splits/summary.md``), every figure under ``report/`` (embedded in the
HTML as base64 PNG) and every table — and decides the claims C1-C6 of the paper on this run's
numbers (see ``docs/report.md`` for the exact rules). ``report/claims.json`` holds the same
decisions and numbers for programs. Nothing here trains or evaluates a model: the numbers are read
from ``metrics.parquet`` files (Section 3.2's cosine measure included).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd

from memadv.analysis.sec31 import early_late
from memadv.bat.runs import find_training_runs
from memadv.data.atomic import write_json_atomic, write_text_atomic
from memadv.data.tables import markdown_table
from memadv.layout import RunLayout

C1_MIN_TRAIN_ATYP = 0.95     # C1: train-atypical clean accuracy at the end >= 95%
C2_MIN_RISE = 0.05           # C2: test-atypical clean accuracy rises by >= 5 points (early -> late window)
C2_MAX_ADV_CHANGE = 0.05     # C2: test-atypical PGD-20 accuracy changes by < 5 points ("flat")
C2_ADV_LOW_RATIO = 0.5       # C2: late adversarial accuracy < half the late clean accuracy ("low")
C3_MIN_DROP = 0.01           # C3: 0% -> 100% drop of >= 1 point, clean and adversarial, strict order
C4_TOLERANCE = 0.01          # C4: ERM clean accuracy at 100% >= at 0% minus 1 point
C6_ADV_WITHIN = 1.0          # C6: BAT adversarial accuracy >= PGD-AT (best adv.) minus 1 point (percent)

FIGURE_ORDER = ("scores", "sec31", "sec32", ".", "ablation")


@dataclass
class Claim:
    id: str
    section: str
    text: str
    holds: bool | None          # None: the numbers it needs are missing
    numbers: str

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else ("does not hold" if self.holds is False else "not decided (missing runs or measurements)")


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100.0 * x:.1f}%"


# --------------------------------------------------------------------------- claims (pure functions)

def claim_c1(pgd: pd.DataFrame | None) -> Claim:
    text = "adversarial training fits the atypical training set: train-atypical clean accuracy at the end >= 95%"
    if pgd is None or "train/atypical/clean" not in pgd or not len(pgd):
        return Claim("C1", "3.1", text, None, "no Section 3.1 PGD-AT run with train/atypical metrics")
    v = float(pgd["train/atypical/clean"].iloc[-1])
    ok = bool(np.isfinite(v) and v >= C1_MIN_TRAIN_ATYP)
    adv = float(pgd["train/atypical/adv"].iloc[-1]) if "train/atypical/adv" in pgd else float("nan")
    return Claim("C1", "3.1", text, ok, f"PGD-AT, epoch {int(pgd['epoch'].iloc[-1])}: train-atypical clean "
                 f"{_pct(v)} (needs >= {_pct(C1_MIN_TRAIN_ATYP)}); train-atypical PGD-20 {_pct(adv)}")


def claim_c2(pgd: pd.DataFrame | None) -> Claim:
    text = ("memorizing atypical examples helps their clean test accuracy but not their robustness: test-atypical "
            "clean accuracy rises from early to late epochs while test-atypical adversarial accuracy stays low and "
            "flat")
    if pgd is None or "test/atypical/clean" not in pgd or not len(pgd):
        return Claim("C2", "3.1", text, None, "no Section 3.1 PGD-AT run with test/atypical metrics")
    ce, cl = early_late(pgd, "test/atypical/clean")
    ae, al = early_late(pgd, "test/atypical/adv")
    rise, change = cl - ce, al - ae
    ok = bool(rise >= C2_MIN_RISE and abs(change) < C2_MAX_ADV_CHANGE and al < C2_ADV_LOW_RATIO * cl)
    n = pgd["test/atypical/n"].iloc[-1] if "test/atypical/n" in pgd else float("nan")
    return Claim("C2", "3.1", text, ok,
                 f"PGD-AT on D'_atyp (n = {int(n) if np.isfinite(n) else '?'}), mean of the first / last 20% of "
                 f"epochs: clean {_pct(ce)} -> {_pct(cl)} (rise {100 * rise:+.1f} pts, needs >= "
                 f"{100 * C2_MIN_RISE:.0f}); PGD-20 {_pct(ae)} -> {_pct(al)} (change {100 * change:+.1f} pts, needs "
                 f"|change| < {100 * C2_MAX_ADV_CHANGE:.0f}; late adv needs < {C2_ADV_LOW_RATIO:g} x late clean "
                 f"= {_pct(C2_ADV_LOW_RATIO * cl)})")


def _by_p(t1: pd.DataFrame, method: str, col: str) -> tuple[list[int], list[float]]:
    rows = t1[t1["method"] == method].sort_values("p")
    return [int(p) for p in rows["p"]], [float(v) for v in rows[col]]


def _strict_desc(v: list[float]) -> bool:
    return len(v) >= 2 and all(np.isfinite(v)) and all(a > b for a, b in zip(v, v[1:]))


def _series(ps: list[int], vals: list[float], scale: float = 100.0, fmt: str = "{:.1f}") -> str:
    return ", ".join(f"{p}%: {fmt.format(scale * v)}" for p, v in zip(ps, vals))


def _spread(t1: pd.DataFrame, method: str, cols: list[str], fmt: str = "{:.1f}") -> str:
    """'; sd over seeds ...' when the table has several seeds per row, else ''."""
    rows = t1[t1["method"] == method].sort_values("p")
    if "seeds" not in rows or rows["seeds"].max() < 2:
        return ""
    parts = [f"{c}: " + ", ".join(fmt.format(float(v)) for v in rows[c]) for c in cols if c in rows]
    return f"; {int(rows['seeds'].min())} seeds, sd over seeds {'; '.join(parts)}" if parts else ""


def claim_c3(t1: pd.DataFrame | None) -> Claim:
    text = ("in adversarial training, more atypical examples lower typical-test clean and adversarial accuracy "
            "(0% > 20% > 100%)")
    if t1 is None or not (t1["method"] == "PGD-AT").any():
        return Claim("C3", "3.2", text, None, "no Section 3.2 PGD-AT runs")
    ps, clean = _by_p(t1, "PGD-AT", "typ. test clean")
    _, adv = _by_p(t1, "PGD-AT", "typ. test adv")
    clean, adv = [c / 100 for c in clean], [a / 100 for a in adv]
    ok = bool(_strict_desc(clean) and _strict_desc(adv) and clean[0] - clean[-1] >= C3_MIN_DROP
              and adv[0] - adv[-1] >= C3_MIN_DROP)
    return Claim("C3", "3.2", text, ok, f"PGD-AT, last epoch, D'_typ clean {_series(ps, clean)}; PGD-20 "
                 f"{_series(ps, adv)} (needs strictly decreasing in p and a drop >= {100 * C3_MIN_DROP:.0f} pt "
                 f"from {ps[0]}% to {ps[-1]}% in both)" + _spread(t1, "PGD-AT", ["typ. test clean sd",
                                                                                "typ. test adv sd"]))


def claim_c4(t1: pd.DataFrame | None) -> Claim:
    text = "in ERM, more atypical examples do not lower typical-test accuracy"
    if t1 is None or not (t1["method"] == "ERM").any():
        return Claim("C4", "3.2", text, None, "no Section 3.2 ERM runs")
    ps, clean = _by_p(t1, "ERM", "typ. test clean")
    clean = [c / 100 for c in clean]
    ok = bool(len(clean) >= 2 and np.isfinite(clean[0]) and np.isfinite(clean[-1])
              and clean[-1] >= clean[0] - C4_TOLERANCE)
    return Claim("C4", "3.2", text, ok, f"ERM, last epoch, D'_typ clean {_series(ps, clean)} (needs {ps[-1]}% >= "
                 f"{ps[0]}% - {100 * C4_TOLERANCE:.0f} pt)")


def claim_c5(t1: pd.DataFrame | None, reading: dict[str, Any] | None = None) -> Claim:
    text = ("(Table 1) with more atypical examples the penultimate representations of different classes get less "
            "separated (adversarial training)")
    if t1 is None or not (t1["method"] == "PGD-AT").any():
        return Claim("C5", "3.2", text, None, "no Section 3.2 PGD-AT runs")
    ps, dist = _by_p(t1, "PGD-AT", "1 - cos_sim")
    _, sim = _by_p(t1, "PGD-AT", "cos_sim")
    if any(v is None or math.isnan(v) for v in dist):
        return Claim("C5", "3.2", text, None, "the Section 3.2 runs have no cosine measurements (metrics.parquet "
                     "lacks cos_sim: runs made before memadv recorded it; delete RUN/sec32/train and re-run)")
    ok = _strict_desc(dist)
    extra = ""
    if reading:
        extra = (f"; the paper's Table 1 (0.66, 0.62, 0.59) matches the '{reading['reading']}' reading here "
                 f"(decided by {reading['decided_by']})")
    return Claim("C5", "3.2", text, ok, f"PGD-AT, last epoch, separation 1 - mean cross-class cosine similarity: "
                 f"{_series(ps, dist, 1.0, '{:.3f}')} (mean similarity {_series(ps, sim, 1.0, '{:.3f}')}); needs "
                 f"strictly decreasing separation{extra}" + _spread(t1, "PGD-AT", ["1 - cos_sim sd"], "{:.3f}"))


def claim_c6(t2: pd.DataFrame | None) -> Claim:
    text = ("(Table 2) BAT (last epoch) has higher overall clean accuracy than PGD-AT (best adversarial checkpoint, "
            "test-selected as in the paper) with adversarial accuracy within 1 point")
    if t2 is None or not len(t2):
        return Claim("C6", "5", text, None, "no BAT table runs")
    pgd = t2[t2["method"].str.startswith("PGD-AT") & (t2["checkpoint"] == "best_adv")]
    bat = t2[t2["method"].str.startswith("BAT")]
    if pgd.empty or bat.empty:
        return Claim("C6", "5", text, None, "Table 2 lacks a PGD-AT (Best Adv.) or a BAT row")
    p = pgd.iloc[0]
    parts, ok = [], False
    for _, b in bat.iterrows():
        good = bool(b["All Acc."] > p["All Acc."] and b["All Adv."] >= p["All Adv."] - C6_ADV_WITHIN)
        ok = ok or good
        parts.append(f"{b['method']}: clean {b['All Acc.']:.1f}%, PGD-20 {b['All Adv.']:.1f}% "
                     f"({'yes' if good else 'no'})")
    return Claim("C6", "5", text, ok, f"PGD-AT (Best Adv.): clean {p['All Acc.']:.1f}%, PGD-20 {p['All Adv.']:.1f}%; "
                 + "; ".join(parts) + " (holds when at least one BAT setting qualifies)")


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
        out["sec31"] = {m: sec31.mean_over_seeds(fs) for m, fs in by_seed.items()}
        out["sec31_seeds"] = {m: len(fs) for m, fs in by_seed.items()}
    except Exception as e:  # noqa: BLE001 - a missing stage shows as missing in the report
        out["sec31"], out["errors"] = {}, out["errors"] + [f"Section 3.1: {e}"]
    try:
        runs32 = sec32.load_sec32(run_dir, seeds)
        out["table1"] = sec32.table1(runs32)
        out["reading"] = sec32.cosine_reading(out["table1"])
    except Exception as e:  # noqa: BLE001
        out["table1"], out["reading"] = None, None
        out["errors"].append(f"Section 3.2: {e}")
    try:
        out["table2"] = bat_tables.table2(bat_tables.find_runs(lay.table_train), "own")
    except Exception as e:  # noqa: BLE001
        out["table2"] = None
        out["errors"].append(f"BAT table: {e}")
    out["claims"] = [claim_c1(out["sec31"].get("pgd")), claim_c2(out["sec31"].get("pgd")), claim_c3(out["table1"]),
                     claim_c4(out["table1"]), claim_c5(out["table1"], out["reading"]), claim_c6(out["table2"])]
    out["tables"] = [(name, _read_text(p)) for name, p in (
        ("Section 3.1", lay.report_sec31 / "sec31.md"), ("Table 1", lay.report_sec32 / "table1.md"),
        ("Table 2", rep / "table2.md"), ("Table 4", rep / "table4.md"),
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
    out["protocol"] = protocol_section(run_dir)  # issue 9 hook: how every number was selected
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
        from memadv.data.splits import read_splits
        _, meta = read_splits(sets)
        lines.append("* Split sizes: " + ", ".join(f"{k} {v}" for k, v in meta.get("sizes", {}).items()) + ".")
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
                         f"thresholds 0.15 (atypical) and 0.02 (typical).")
    summary = _read_text(RunLayout(run_dir).split_summary)
    if summary:
        m = re.search(r"## Noise floor\n(.*?)(?=\n## |\Z)", summary, re.S)
        if m:
            parts.append(m.group(1).strip())
        m = re.search(r"## Models needed\n(.*?)(?=\n## |\Z)", summary, re.S)  # issue 19: decided share, models
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
             "Each claim of the paper, decided on this run's numbers (rules: `docs/report.md`). Section 3 numbers are "
             "means over the seeds of the runs (" + ", ".join(f"{k}: {v}" for k, v in g.get("sec31_seeds", {}).items())
             + " seeds in Section 3.1; Table 1 and Table 2 list their seed counts).", "",
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
    :func:`memadv.data.tables.markdown_table`); an image ``![alt](path)`` whose path is a key of
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
    rep = RunLayout(run_dir).report
    rep.mkdir(parents=True, exist_ok=True)
    g = gather(run_dir, seeds)
    md = render_markdown(g)
    images = {str(p.relative_to(rep)): base64.b64encode(p.read_bytes()).decode() for p in g["figures"]}
    write_text_atomic(rep / "report.md", md)
    write_text_atomic(rep / "report.html", markdown_to_html(md, images))
    write_json_atomic(rep / "claims.json", {"claims": [asdict(c) | {"verdict": c.verdict} for c in g["claims"]],
                                            "cosine_reading": g.get("reading"),
                                            "figures": [str(p.relative_to(rep)) for p in g["figures"]]})
    return [rep / "report.md", rep / "report.html", rep / "claims.json"]


def make_figures(run_dir: Path, args: argparse.Namespace) -> list[Path]:
    return write_report(run_dir)


__all__ = ["Claim", "claim_c1", "claim_c2", "claim_c3", "claim_c4", "claim_c5", "claim_c6", "gather",
           "write_report", "markdown_to_html", "render_markdown"]
