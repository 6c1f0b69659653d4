"""What a run folder has done, is doing, and has left (``memadv status``): every pipeline stage, the
estimator's shards and each training run's epoch, read from the files (and Slurm's accounting
through :func:`memadv.executors.task_states`), never written."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path
from typing import Any

from memadv.bat.runs import TrainingRun
from memadv.config import option
from memadv.errors import MemadvError
from memadv.estimate.run import estimate_status
from memadv.layout import RunLayout


def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None
    where there is no /proc or no such process: told apart from a later process given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_owner() -> dict[str, Any]:
    """Who holds a running stage: this process's pid, host and start time (pipeline/plan.json)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid())}


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True / False whether the process of :func:`process_owner` still runs; None when it ran on
    another host (not checkable from here)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    start = _proc_start(pid)
    return owner.get("start") is None or start is None or start == owner.get("start")


def pipeline_states(run_dir: Path, plan: dict[str, Any]) -> dict[str, str]:
    """Stage -> state from ``pipeline/plan.json``, checked against the disk: ``running`` only while
    the process that wrote it lives (else ``interrupted``), ``done`` only while every output the plan
    lists exists (else ``incomplete``)."""
    owner = plan.get("owner") or {}
    alive = owner_alive(owner) if owner else False
    out: dict[str, str] = {}
    for s in plan["stages"]:
        state = s.get("state")
        if state == "running" and alive is False:
            state = "interrupted"
        elif state == "done" and not all((run_dir / p).exists() for p in s.get("outputs", [])):
            state = "incomplete"
        out[s["name"]] = state
    return out


def _job_state(folder: Path) -> dict[str, Any]:
    """finished / running (epoch e of E) / pending for one training run folder, with its time so far."""
    import pandas as pd

    out: dict[str, Any] = {"job": folder.name, "state": "pending", "epoch": 0, "epochs": None, "seconds": None}
    run = TrainingRun(folder)
    if run.has_config():
        try:
            out["epochs"] = run.config()["train"].get("epochs")
        except (MemadvError, ValueError, KeyError):  # a file being replaced; show what is known
            pass
    if run.has_metrics():
        try:
            m = run.metrics()
            out["epoch"] = int(m["epoch"].max()) if len(m) else 0
            out["seconds"] = float(m.get("time_s", pd.Series(dtype=float)).sum()
                                   + m.get("eval_time_s", pd.Series(dtype=float)).sum())
        except Exception:  # noqa: BLE001 - a file being replaced; show what is known
            pass
    if run.is_finished():
        out["state"] = "finished"
    elif run.has_config():
        out["state"] = "running" if out["epoch"] else "started"
    return out


def training_status(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per pipeline stage in ``pipeline/plan.json`` (or the folders found, without a plan)."""
    plan_path = RunLayout(run_dir).plan
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        stages = [(s["name"], s.get("state"), [run_dir / j for j in s["jobs"]]) for s in plan["stages"] if s["jobs"]]
    else:
        found = RunLayout(run_dir).training_dirs()
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


def decided_status(run_dir: Path) -> dict[str, Any] | None:
    """Per split rule, the share of examples decided now and the models projected to decide 90 / 95 / 99%
    of them (:func:`memadv.splits.labels.decided_table`), from the run's current scores, under its
    split settings (``splits.parquet``'s metadata) or the defaults, with ``fdr:0.05`` where they use no
    error control; the plan of ``--until-decided`` when there is one. None without scores; ``error``
    where the scores cannot answer (e.g. imported ones without counts)."""
    from memadv.splits.erm_accuracy import use_erm_accuracy
    from memadv.scores.schema import read_scores, read_scores_meta
    from memadv.splits.labels import PROJECTION_CONTROL, planned_looks, read_looks
    from memadv.splits.rules import SplitConfig, compute_splits
    from memadv.splits.files import read_splits

    lay = RunLayout(run_dir)
    if not lay.mem.exists():
        return None
    try:
        meta = read_scores_meta(run_dir)
        if not meta.get("se_known", True):
            return {"error": f"the scores (source {meta.get('source', '?')!r}) carry no counts: nothing can be "
                             "decided or projected", "rules": [], "looks": None}
        th = read_splits(run_dir)[1].get("thresholds", {}) if lay.split_file.exists() else {}
        cfg = SplitConfig(**{f.name: th[f.name] for f in dataclasses.fields(SplitConfig) if f.name in th})
        if not cfg.control().active:
            cfg = dataclasses.replace(cfg, error_control=PROJECTION_CONTROL, significance=None)
        scores = use_erm_accuracy(read_scores(run_dir), run_dir, cfg.erm_models)
        cfg = dataclasses.replace(cfg, allow_partial=True,
                                  looks=max(cfg.looks, planned_looks(run_dir, scores.meta.get("n_models"))))
        return {"rules": compute_splits(scores, cfg).decided, "looks": read_looks(run_dir)}
    except MemadvError as e:
        return {"error": str(e), "rules": [], "looks": None}


@dataclasses.dataclass
class StatusConfig:
    """``memadv status``'s options (TOML table ``[status]``)."""

    json: bool = option(False, "print machine-readable JSON", switch=True)
    decided: bool = option(True, "skip the share decided per split rule and the models projected (which read every "
                                 "score)", switch=True, flag="--no-decided")


def _scores_source(run_dir: Path) -> str:
    from memadv.scores.schema import read_scores_meta

    try:
        return str(read_scores_meta(run_dir).get("source", "unknown"))
    except MemadvError as e:
        return f"unreadable ({e})"


def run_status(run_dir: Path, decided: bool = True) -> dict[str, Any]:
    """Every stage of a run folder: estimate (:func:`memadv.estimate.run.estimate_status`), splits,
    score figures, training runs per stage (:func:`training_status`), report, pipeline plan states."""
    rd, lay = Path(run_dir), RunLayout(run_dir)
    status = {"estimate": estimate_status(rd) if lay.spec.exists() else None,
              # scores without an estimate (memadv import-fz): where they come from
              "scores_source": _scores_source(rd) if not lay.spec.exists() and lay.mem.exists() else None,
              "splits": lay.split_file.exists(),
              "decided": decided_status(rd) if decided else None,
              "score_figures": all(p.exists() for p in lay.stage_reports()["score figures"]),
              "training": training_status(rd),
              "report": lay.report_html.exists()}
    plan = json.loads(lay.plan.read_text()) if lay.plan.is_file() else None
    status["pipeline"] = pipeline_states(rd, plan) if plan else None
    running = plan is not None and "running" in status["pipeline"].values()
    status["pipeline_owner"] = plan.get("owner") if running else None
    return status
