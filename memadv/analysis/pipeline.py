"""``memadv pipeline``: the whole chain on one dataset, each stage skipped when its outputs are
complete and newer than its inputs.

Stages so far: estimate (shards + scores) -> splits -> score figures. A stage's outputs are written
atomically, so a killed pipeline re-run with the same command finishes the stage in flight and
skips the rest.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from memadv.data.scores import read_scores
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.estimate.shards import read_spec
from memadv.slurm.executors import ExecutorConfig


@dataclass
class Stage:
    name: str
    outputs: Callable[[Path], list[Path]]
    inputs: Callable[[Path], list[Path]]
    run: Callable[[Path], None]

    def is_done(self, run_dir: Path) -> bool:
        outs, ins = self.outputs(run_dir), self.inputs(run_dir)
        if not outs or not all(p.exists() for p in outs):
            return False
        newest_in = max((p.stat().st_mtime for p in ins if p.exists()), default=0.0)
        return min(p.stat().st_mtime for p in outs) >= newest_in


def _scores_complete(run_dir: Path, cfg: EstimateConfig) -> bool:
    try:
        spec = read_spec(run_dir)
        meta = read_scores(run_dir, need_infl=False).meta
    except Exception:  # noqa: BLE001 - anything unreadable means "not done"
        return False
    same = all(spec["config"].get(k) == getattr(cfg, k) for k in EstimateConfig.IDENTITY)
    return same and bool(meta.get("complete"))


def stages(cfg: EstimateConfig, executor: ExecutorConfig, progress: bool) -> list[Stage]:
    def run_estimate(run_dir: Path) -> None:
        estimate(cfg, run_dir, executor, progress=progress)

    def run_splits(run_dir: Path) -> None:
        from memadv.data.scores import scores_dir_of
        from memadv.data.splits import SplitConfig, compute_splits, split_meta, write_splits

        scores = read_scores(run_dir)
        split_cfg = SplitConfig()
        result = compute_splits(scores, split_cfg)
        write_splits(run_dir / "splits", result, split_meta(scores, split_cfg, result, str(scores_dir_of(run_dir))),
                     title=f"run `{run_dir.name}`")

    def run_score_figures(run_dir: Path) -> None:
        from memadv.analysis import score_figures

        parser = argparse.ArgumentParser()
        score_figures.add_arguments(parser)
        args = parser.parse_args(["--data-root", cfg.data_root] if cfg.data_root else [])
        score_figures.make_figures(run_dir, args)

    scores = lambda d: [d / "scores" / "mem.parquet"]  # noqa: E731
    return [
        Stage("estimate", outputs=lambda d: scores(d) if _scores_complete(d, cfg) else [],
              inputs=lambda d: [], run=run_estimate),
        Stage("splits", outputs=lambda d: [d / "splits" / "splits.parquet"], inputs=scores, run=run_splits),
        Stage("score figures", outputs=lambda d: [d / "report" / "scores" / "mem_histogram.png"], inputs=scores,
              run=run_score_figures),
    ]


def run_pipeline(cfg: EstimateConfig, run_dir: str | Path, executor: ExecutorConfig | None = None, *,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict[str, str]:
    run_dir = Path(run_dir)
    executor = executor or ExecutorConfig()
    outcome: dict[str, str] = {}
    todo = stages(cfg, executor, progress)
    for n, stage in enumerate(todo, 1):
        if stage.is_done(run_dir):
            log(f"[{n}/{len(todo)}] {stage.name}: up to date, skipped")
            outcome[stage.name] = "skipped"
            continue
        log(f"[{n}/{len(todo)}] {stage.name} ...")
        start = time.time()
        stage.run(run_dir)
        log(f"[{n}/{len(todo)}] {stage.name}: done in {time.time() - start:.0f} s")
        outcome[stage.name] = "ran"
    return outcome
