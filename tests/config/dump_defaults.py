"""Resolve every config for every data set and print the values as JSON.

Run once against the code before the configuration rework (``git archive`` of main into a temporary
folder, PYTHONPATH pointing there) to make ``old_defaults.json``; test_defaults.py runs the same
function against the current code and compares.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


def resolve_all() -> dict[str, Any]:
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.data import registry
    from memadv.splits.rules import SplitConfig
    from memadv.estimate.config import EstimateConfig
    from memadv.experiments.pipeline_config import PipelineConfig, run_names

    def train(**kw: Any) -> dict[str, Any]:
        cfg = TrainConfig(**kw)
        cfg = cfg.resolved() if hasattr(cfg, "resolved") else cfg
        return dataclasses.asdict(cfg)

    def objective(d: str) -> dict[str, Any]:
        o = ObjectiveConfig()
        o = o.resolve(d) if hasattr(o, "resolve") else o.resolved(d)
        return dataclasses.asdict(o)

    out: dict[str, Any] = {"split": dataclasses.asdict(SplitConfig())}
    # a user's own data sets (issue 20) have no fixed defaults: they take those of a built-in set
    for d in [d for d in registry.DATASETS if d not in getattr(registry, "OWN_DATASETS", ())]:
        e = EstimateConfig(dataset=d)
        row: dict[str, Any] = {"estimate": dataclasses.asdict(e), "train": train(dataset=d),
                               "train_epochs5": train(dataset=d, epochs=5),
                               "train_epochs200": train(dataset=d, epochs=200, method="bat"),
                               "objective": objective(d)}
        for quick in (False, True):
            p = PipelineConfig(quick=quick)
            ecfg = p.estimate_config(e)
            runs = p.table_runs(ecfg, Path("/run"))
            new, shared = p.ablation_runs(ecfg, Path("/run"))
            s = p.sec3_settings(ecfg)
            row[f"pipeline_quick{quick}"] = {
                "pcfg": dataclasses.asdict(p), "estimate": dataclasses.asdict(ecfg),
                "table_runs": runs, "ablation_new": new, "ablation_shared": shared,
                "run_names": run_names(runs + new), "sec3_stamp": s.stamp(),
                "sec3_train_values": s.train_values("pgd", 1), "final_attacks": p.final_attacks_for(d)}
        out[d] = row
    return out


if __name__ == "__main__":
    print(json.dumps(resolve_all(), indent=1, sort_keys=True, default=str))
