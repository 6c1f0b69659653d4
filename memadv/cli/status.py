"""``memadv status``: what a run has done, is doing, and has left."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="progress of a run: shards done / running / failed, ETA",
                       description="Show every stage of a run directory: estimate shards (done, running, "
                                   "failed, ETA), scores, splits, training runs.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run(args: argparse.Namespace) -> int:
    from memadv.errors import MemadvError
    from memadv.estimate.run import estimate_status

    if not args.run.is_dir():
        raise MemadvError(f"run directory {str(args.run)!r} does not exist")
    status = {"estimate": estimate_status(args.run) if (args.run / "estimate" / "spec.json").exists() else None,
              "splits": (args.run / "splits" / "splits.parquet").exists(),
              "train": sorted(p.parent.name for p in (args.run / "train").glob("*/metrics.parquet"))}
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    est = status["estimate"]
    if est is None:
        print(f"{args.run}: no estimate")
    else:
        print(f"estimate  {est['dataset']}, {est['models']} models in {est['shards']} shards: "
              f"{est['done']} done, {len(est['running'])} running, {len(est['failed'])} failed, "
              f"{est['pending']} pending; ETA {_fmt_seconds(est['eta_seconds'])}")
        if est["failed"]:
            print(f"          failed shards: {est['failed'][:20]} (logs in {args.run}/estimate/jobs)")
        print(f"scores    {'written' if est['scores'] else 'not yet'}")
    print(f"splits    {'written' if status['splits'] else 'not yet'}")
    print(f"train     {', '.join(status['train']) or 'none'}")
    return 0
