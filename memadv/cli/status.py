"""``memadv status``: what a run has done, is doing, and has left — every pipeline stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, check_config_file, config_from_args
from memadv.errors import SchemaError
from memadv.experiments.status import StatusConfig
from memadv.files.atomic import OUTPUT_KINDS, output_kind


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="progress of a run: every stage, shards / training jobs done, ETA",
                       description="Show every stage of a run directory: estimate shards (done, running, "
                                   "failed, ETA), scores, splits, the training jobs of Sections 3.1 / 3.2, the "
                                   "BAT table and the ablation grid (finished, in progress with their epoch, "
                                   "pending, ETA), and the report; for each split rule the share of examples decided "
                                   "now and the models projected to decide 90/95/99% of them (docs/splits.md).")
    p.add_argument("run", type=Path, help="run directory")
    add_config_file(p)
    add_config_arguments(p, StatusConfig)
    p.set_defaults(func=run)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run(args: argparse.Namespace) -> int:
    from memadv.experiments.status import run_status
    from memadv.layout import require_run_dir

    require_run_dir(args.run)
    if output_kind(args.run) != "run":  # an empty or foreign folder would read as "nothing done yet"
        raise SchemaError(f"{str(args.run)!r} is not a memadv run folder (made by {OUTPUT_KINDS['run']}); "
                          "give the folder an estimate or pipeline wrote")
    check_config_file(args.config, ("status",))
    cfg = config_from_args(StatusConfig, args, "status")
    rd = args.run
    status = run_status(rd, decided=cfg.decided)
    if cfg.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    est = status["estimate"]
    if est is None:
        print(f"{rd}: no estimate")
        if status.get("scores_source"):
            print(f"scores         written, without an estimate (source {status['scores_source']})")
    else:
        print(f"estimate       {est['dataset']}, {est['models']} models in {est['shards']} shards: "
              f"{est['done']} done, {len(est['running'])} running, {len(est['failed'])} failed, "
              f"{len(est['damaged'])} damaged, {est['pending']} pending; ETA {_fmt_seconds(est['eta_seconds'])}")
        if est["failed"]:
            print(f"               failed shards: {est['failed'][:20]} (logs in {rd}/estimate/jobs/logs)")
        if est["damaged"]:
            first = next(iter(est["damaged"].values()))
            print(f"               damaged shard files: {sorted(est['damaged'])[:20]} ({first}); "
                  f"`memadv estimate --out {rd}` with the run's settings retrains them")
        # shards with an epoch checkpoint: how far their training got, live or interrupted
        for label, live in (("in training", True), ("interrupted, resume at", False)):
            shards = [(s, p) for s, p in sorted(est.get("epochs", {}).items())
                      if (s in est.get("interrupted", [])) != live]
            if shards:
                print(f"               {label}: " + ", ".join(f"shard {s} (epoch {p['done']}/{p['total']})"
                                                          for s, p in shards[:20]))
        print(f"scores         {est['scores_state']}")
    print(f"splits         {'written' if status['splits'] else 'not yet'}")
    dec = status.get("decided")
    if dec:
        from memadv.cli.splits import print_decided
        if dec.get("error"):
            print(f"decided        unknown: {dec['error']}")
        else:
            print("decided        share of each split rule's examples decided now, models projected to decide "
                  "90/95/99% (SE ~ 1/sqrt(M) from each example's p_in, p_out):")
            print_decided(dec["rules"])
        looks = dec.get("looks")
        if looks:
            last = looks["looks"][-1] if looks["looks"] else None
            print(f"until-decided  {looks['target']:.0%} of {', '.join(looks['rules'])} under {looks['error_control']}; "
                  f"looks {looks['plan']}: {len(looks['looks'])} done"
                  + (f", last at {last['models']} models" if last else "")
                  + (f"; stopped at {looks['stopped']}" if looks["stopped"] is not None else ""))
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
        owner = status.get("pipeline_owner") or {}
        running = [n for n, st in status["pipeline"].items() if st == "running"]
        holder = f" (pid {owner.get('pid')} on {owner.get('host')})" if owner else ""
        print("pipeline       " + (f"running stage: {', '.join(running)}{holder}" if running else
                                   ", ".join(f"{n} {st}" for n, st in status["pipeline"].items())))
    return 0
