"""``memadv estimate --until-decided Q``: train wave after wave of shards until the split rules are answered.

Plan (fixed before the first look and kept in ``RUN/estimate/looks.json``): looks at M_k = M_0 2^k
models (rounded up to whole shards), M_0 = ``--models``, the last at ``--max-models``; K looks in all.
At each look the run trains the missing shards on its executor (on Slurm one job array per wave),
aggregates, and labels the examples as ``memadv splits --error-control`` does
(:mod:`memadv.splits.labels`) with alpha / K per look: a Bonferroni split of alpha over the K
planned looks, the simplest alpha-spending plan (Lan & DeMets 1983, Biometrika 70:659); the
error at the stopping look is at most the sum over the looks, K alpha / K. It stops at the first
look where every chosen rule has decided at least the share Q of its examples.

The run stays an ordinary estimate: its spec holds the models trained so far, ``memadv splits``
reads the plan and spends alpha / K, and re-running the command resumes at the first look not yet
evaluated (a finished plan answers at once). ``--models`` may be raised later (only new shards train).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memadv.config import check_range, option
from memadv.files.atomic import write_json_atomic
from memadv.splits.erm_accuracy import use_erm_accuracy
from memadv.splits.labels import PROJECTION_CONTROL, RULE_NAMES, read_looks
from memadv.splits.rules import SplitConfig, compute_splits
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.estimate.config import MAX_MODELS, EstimateConfig
from memadv.layout import RunLayout


@dataclass
class DecideConfig:
    until_decided: float | None = option(None, "train wave after wave of shards (models doubling from --models) "
                                               "and stop when this share of every --decide-rules rule is decided "
                                               "under --error-control, alpha split over the planned looks; unset: "
                                               "train --models and stop", unit="share of examples",
                                         source="Lan & DeMets 1983 (alpha spending), Bonferroni over looks")
    max_models: int | None = option(None, "--until-decided: the last look (the most models it trains); default "
                                          "16 x --models", unit="models")
    decide_rules: str = option(",".join(RULE_NAMES), "--until-decided: comma-separated rules that must be decided "
                                                     f"(of {', '.join(RULE_NAMES)})")

    def __post_init__(self) -> None:
        if self.until_decided is not None:
            check_range("until_decided", float(self.until_decided), 0.0, 1.0, lo_open=True)
        if self.max_models is not None:
            check_range("max_models", self.max_models, 2, MAX_MODELS)
        for r in self.rules():
            if r not in RULE_NAMES:
                raise UnknownChoiceError("decide rule", r, RULE_NAMES)

    def rules(self) -> list[str]:
        return [r.strip() for r in self.decide_rules.split(",") if r.strip()]


def looks_plan(start: int, max_models: int, per_shard: int) -> list[int]:
    """M_k = start 2^k rounded up to whole shards, below ``max_models``, then ``max_models`` itself."""
    if max_models < start:
        raise ConfigError(f"--max-models ({max_models}) must be at least --models ({start})")
    plan, m = [], start
    while m < max_models:
        plan.append(-(-m // per_shard) * per_shard)
        m *= 2
    if not plan or plan[-1] < max_models:
        plan.append(max_models)
    return sorted(set(min(p, max_models) for p in plan))


def estimate_until_decided(cfg: EstimateConfig, decide_cfg: DecideConfig, split_cfg: SplitConfig,
                           run_dir: str | Path, run_look: Any) -> dict[str, Any]:
    """Run the plan; ``run_look(cfg_k)`` trains and aggregates the estimate ``cfg_k`` and returns its Scores.

    Returns the record written to ``looks.json`` (plan, looks: models and decided shares, stopped).
    Raises ConfigError when ``looks.json`` holds another plan (alpha cannot be re-planned after a look).
    """
    run_dir = Path(run_dir)
    target = float(decide_cfg.until_decided)  # type: ignore[arg-type]
    ctrl = split_cfg.error_control if split_cfg.control().active else PROJECTION_CONTROL
    max_models = decide_cfg.max_models or 16 * cfg.models
    want = {"target": target, "rules": decide_cfg.rules(), "error_control": ctrl,
            "thresholds": {k: getattr(split_cfg, k) for k in ("mem_atypical", "mem_typical", "infl_atypical",
                                                               "infl_typical", "min_test_acc", "pairs")}}
    rec = read_looks(run_dir)
    if rec is None:
        rec = {**want, "plan": looks_plan(cfg.models, max_models, cfg.models_per_shard), "looks": [], "stopped": None}
    elif {k: rec.get(k) for k in want} != want:
        raise ConfigError(f"{RunLayout(run_dir).looks} holds another --until-decided plan ({rec.get('target')} of "
                          f"{rec.get('rules')} under {rec.get('error_control')}); alpha was spent over its looks and "
                          f"cannot be re-planned: resume with the same options or use another --out")
    if rec["stopped"] is not None:
        print(f"{run_dir}: already answered at {rec['stopped']} models ({len(rec['looks'])} of {len(rec['plan'])} looks)")
        return rec
    k_looks = len(rec["plan"])
    look_cfg = dataclasses.replace(split_cfg, error_control=ctrl, looks=k_looks)
    for models in rec["plan"][len(rec["looks"]):]:
        scores = run_look(dataclasses.replace(cfg, models=models))
        res = compute_splits(use_erm_accuracy(scores, run_dir, split_cfg.erm_models), look_cfg, project=False)
        shares = {d["rule"]: d["decided"] for d in res.decided if d["rule"] in rec["rules"]}
        rec["looks"].append({"models": models, "decided": shares, "control": res.control})
        done = all(v >= target for v in shares.values())
        if done or models == rec["plan"][-1]:
            rec["stopped"] = models
        write_json_atomic(RunLayout(run_dir).looks, rec)
        print(f"look {len(rec['looks'])}/{k_looks} at {models} models ({res.control} per look): "
              + ", ".join(f"{r} {v:.1%} decided" for r, v in shares.items())
              + (f"; target {target:.0%} reached" if done else ""), flush=True)
        if rec["stopped"] is not None:
            break
    return rec
