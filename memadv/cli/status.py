"""``memadv status``: what a run has done, is doing, and has left — every pipeline stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="progress of a run: every stage, shards / training jobs done, ETA",
                       description="Show every stage of a run directory: estimate shards (done, running, "
                                   "failed, ETA), scores, splits, the training jobs of Sections 3.1 / 3.2, the "
                                   "BAT table and the ablation grid (finished, in progress with their epoch, "
                                   "pending, ETA), and the report.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _job_state(folder: Path) -> dict[str, Any]:
    """finished / running (epoch e of E) / pending for one training run folder, with its time so far."""
    import pandas as pd

    out: dict[str, Any] = {"job": folder.name, "state": "pending", "epoch": 0, "epochs": None, "seconds": None}
    conf = folder / "config.json"
    if conf.is_file():
        try:
            out["epochs"] = json.loads(conf.read_text())["train"].get("epochs")
        except (ValueError, KeyError):
            pass
    metrics = folder / "metrics.parquet"
    if metrics.is_file():
        try:
            m = pd.read_parquet(metrics, columns=None)
            out["epoch"] = int(m["epoch"].max()) if len(m) else 0
            out["seconds"] = float(m.get("time_s", pd.Series(dtype=float)).sum()
                                   + m.get("eval_time_s", pd.Series(dtype=float)).sum())
        except Exception:  # noqa: BLE001 - a file being replaced; show what is known
            pass
    if (folder / "final.parquet").is_file():
        out["state"] = "finished"
    elif conf.is_file():
        out["state"] = "running" if out["epoch"] else "started"
    return out


def training_status(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per pipeline stage in ``pipeline/plan.json`` (or the folders found, without a plan)."""
    plan_path = run_dir / "pipeline" / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        stages = [(s["name"], s.get("state"), [run_dir / j for j in s["jobs"]]) for s in plan["stages"] if s["jobs"]]
    else:
        found = {"sec31": run_dir / "sec31" / "train", "sec32": run_dir / "sec32" / "train",
                 "bat table": run_dir / "train", "ablation": run_dir / "ablation" / "train"}
        stages = [(n, None, sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))
                  for n, d in found.items() if d.is_dir()]
    per_stage = [(name, state, [_job_state(j) for j in jobs]) for name, state, jobs in stages]
    every = [j for _, _, js in per_stage for j in js]
    # one mean time per epoch and one epoch count over every job seen: pending stages get an ETA too
    per_epoch = [j["seconds"] / j["epoch"] for j in every if j["seconds"] and j["epoch"]]
    mean = sum(per_epoch) / len(per_epoch) if per_epoch else None
    default_epochs = max((j["epochs"] or 0 for j in every), default=0)
    out = []
    for name, state, js in per_stage:
        done = [j for j in js if j["state"] == "finished"]
        eta = None
        if mean is not None and default_epochs and len(done) < len(js):
            eta = sum(mean * max((j["epochs"] or default_epochs) - j["epoch"], 0) for j in js
                      if j["state"] != "finished")
        out.append({"stage": name, "state": state, "jobs": len(js), "finished": len(done),
                    "running": [f"{j['job']} (epoch {j['epoch']}/{j['epochs'] or '?'})" for j in js
                                if j["state"] in ("running", "started")],
                    "eta_seconds": eta})
    return out


def run(args: argparse.Namespace) -> int:
    from memadv.errors import MemadvError
    from memadv.estimate.run import estimate_status

    if not args.run.is_dir():
        raise MemadvError(f"run directory {str(args.run)!r} does not exist")
    rd = args.run
    status = {"estimate": estimate_status(rd) if (rd / "estimate" / "spec.json").exists() else None,
              "splits": (rd / "splits" / "splits.parquet").exists(),
              "score_figures": (rd / "report" / "scores" / "mem_histogram.png").exists(),
              "training": training_status(rd),
              "report": (rd / "report" / "report.html").exists()}
    plan = rd / "pipeline" / "plan.json"
    status["pipeline"] = ({s["name"]: s.get("state") for s in json.loads(plan.read_text())["stages"]}
                          if plan.is_file() else None)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    est = status["estimate"]
    if est is None:
        print(f"{rd}: no estimate")
    else:
        print(f"estimate       {est['dataset']}, {est['models']} models in {est['shards']} shards: "
              f"{est['done']} done, {len(est['running'])} running, {len(est['failed'])} failed, "
              f"{est['pending']} pending; ETA {_fmt_seconds(est['eta_seconds'])}")
        if est["failed"]:
            print(f"               failed shards: {est['failed'][:20]} (logs in {rd}/estimate/jobs)")
        print(f"scores         {'written' if est['scores'] else 'not yet'}")
    print(f"splits         {'written' if status['splits'] else 'not yet'}")
    print(f"score figures  {'written' if status['score_figures'] else 'not yet'}")
    for t in status["training"]:
        if not t["jobs"]:
            continue
        line = f"{t['stage']:<14} {t['finished']}/{t['jobs']} training jobs finished"
        if t["running"]:
            line += "; in progress: " + ", ".join(t["running"])
        if t["finished"] < t["jobs"]:
            line += f"; ETA {_fmt_seconds(t['eta_seconds'])}"
        print(line)
    print(f"report         {'written' if status['report'] else 'not yet'}")
    if status["pipeline"]:
        running = [n for n, st in status["pipeline"].items() if st == "running"]
        print("pipeline       " + (f"running stage: {', '.join(running)}" if running else
                                   ", ".join(f"{n} {st}" for n, st in status["pipeline"].items())))
    return 0
