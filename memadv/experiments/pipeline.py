"""``memadv pipeline``: the whole chain on one dataset, each stage skipped when it is up to date.

Stages, in order::

    estimate      subset-sampling estimator (shards -> scores/)
    splits        atypical / typical split files (splits/)
    score figures memorization histogram, example grids, pairs (report/scores/)
    sec31         ERM + PGD-AT on the whole training set (sec31/train/), Figs. 1, 9 (report/sec31/)
    sec32         ERM + PGD-AT on D_typ + p% D_atyp (sec32/train/), Figs. 2, 15, 21, Table 1, Fig. 3
    sec32 controls  C3's controls (sec32/controls/train/; memadv.analysis.poisoning_control)
    lr grid       --lr-grid: each Table 2 method's lr, chosen on the validation slice (lrgrid/)
    bat table     PGD-AT, TRADES, MART, GAIRAT, BAT (alpha 1 and 2, beta 0.2) (train/), Table 2/4, Fig. 4
    ablation      BAT alpha x beta grid (ablation/train/, sharing the table's runs), Fig. 5 (report/ablation/)
    report        report/report.md and report/report.html (always rewritten: it is cheap)

A stage is up to date when all its outputs exist, are newer than its inputs, and the settings it
ran with (``pipeline/<stage>.json``) equal the current ones. Every training job is one task of
:func:`memadv.executors.run_tasks` calling :func:`memadv.bat.train.train`, which resumes a
killed run from its last epoch, so re-running after a kill in any stage finishes with the same
results. The plan (stage -> job folders) is written to ``pipeline/plan.json`` for ``memadv status``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from memadv.files.atomic import write_json_atomic
from memadv.scores.schema import read_scores
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.estimate.shards import check_spec, dataset_for, estimate_identity, read_spec
from memadv.executors import ExecutorConfig
from memadv.bat.runs import TrainingRun
from memadv.experiments.status import process_owner
from memadv.layout import RunLayout
from memadv.experiments.pipeline_config import PipelineConfig, run_names
from memadv.paper.table2 import TABLE_RUNS
from memadv.paper import sec3 as paper


# --------------------------------------------------------------------------- stages

@dataclass
class Stage:
    name: str
    outputs: Callable[[Path], list[Path]]
    inputs: Callable[[Path], list[Path]]
    run: Callable[[Path], None]
    stamp: dict[str, Any] | None = None      # settings that decide the stage's results
    jobs: Callable[[Path], list[Path]] = field(default=lambda d: [])  # training job folders (progress/status)
    always: bool = False                     # run every time (the report)

    def stamp_path(self, run_dir: Path) -> Path:
        return RunLayout(run_dir).stage_stamp(self.name)

    def is_done(self, run_dir: Path) -> bool:
        if self.always:
            return False
        outs, ins = self.outputs(run_dir), self.inputs(run_dir)
        if not outs or not all(p.exists() for p in outs):
            return False
        if self.stamp is not None:
            sp = self.stamp_path(run_dir)
            try:
                if json.loads(sp.read_text()) != json.loads(json.dumps(self.stamp, default=str)):
                    return False
            except (OSError, ValueError):
                return False
        newest_in = max((p.stat().st_mtime for p in ins if p.exists()), default=0.0)
        return min(p.stat().st_mtime for p in outs) >= newest_in

    def mark_done(self, run_dir: Path) -> None:
        if self.stamp is not None:
            write_json_atomic(self.stamp_path(run_dir), self.stamp)


def _scores_complete(run_dir: Path, cfg: EstimateConfig) -> bool:
    try:
        spec = read_spec(run_dir)
        meta = read_scores(run_dir, need_infl=False).meta
    except Exception:  # noqa: BLE001 - anything unreadable means "not done"
        return False
    same = (estimate_identity(spec["config"]) == {k: getattr(cfg, k) for k in EstimateConfig.IDENTITY}
            and spec["config"].get("models") == cfg.models)
    return same and bool(meta.get("complete"))


def _link_runs(src_dir: Path, dst_dir: Path, names: list[str]) -> None:
    """Relative symlinks ``dst_dir/<name>`` -> ``src_dir/<name>`` (runs shared by two grids)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        link = dst_dir / n
        target = os.path.relpath(src_dir / n, dst_dir)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            continue  # a real run folder of that name (trained here): keep it
        link.symlink_to(target, target_is_directory=True)


def stages(cfg: EstimateConfig, executor: ExecutorConfig, progress: bool,
           pcfg: PipelineConfig | None = None) -> list[Stage]:
    from memadv.analysis import sec31 as s31
    from memadv.analysis import sec32 as s32
    from memadv.experiments import sec3

    pcfg = pcfg or PipelineConfig()
    cfg = pcfg.estimate_config(cfg)
    settings = pcfg.sec3_settings(cfg)

    def run_estimate(run_dir: Path) -> None:
        estimate(cfg, run_dir, executor, progress=progress)

    def run_splits(run_dir: Path) -> None:
        from memadv.splits.rules import SplitConfig
        from memadv.splits.files import make_splits

        make_splits(run_dir, SplitConfig(error_control=pcfg.error_control))

    def run_score_figures(run_dir: Path) -> None:
        from memadv.analysis import score_figures

        score_figures.score_figures(run_dir, data_root=cfg.data_root)

    def run_sec31(run_dir: Path) -> None:
        sec3.run_sec31(run_dir, settings, executor, progress=progress)
        s31.sec31_figures(run_dir, RunLayout(run_dir).report_sec31, settings.seeds)

    def run_sec32(run_dir: Path) -> None:
        from memadv.analysis import poisoning
        sec3.run_sec32(run_dir, settings, executor, progress=progress)
        s32.sec32_figures(run_dir, RunLayout(run_dir).report_sec32, settings.seeds)
        poisoning.poisoning_figure(run_dir, RunLayout(run_dir).report_sec32)

    def run_controls(run_dir: Path) -> None:
        sec3.run_poisoning_control(run_dir, settings, executor, progress=progress)

    def run_lr_grid(run_dir: Path) -> None:
        from memadv.experiments import lr_grid
        from memadv.experiments.sweep import TrainTask
        from memadv.executors import run_tasks
        per_method, lay = pcfg.lr_grid_runs(cfg, run_dir), RunLayout(run_dir)
        runs = [r for rs in per_method for r in rs]
        run_tasks(TrainTask(runs=runs, out_dir=str(lay.lr_grid_train), overrides={}), list(range(len(runs))),
                  executor, lay.lr_grid_jobs, desc="lr grid training", progress=progress)
        lr_grid.write_choice(run_dir, TABLE_RUNS, pcfg.lr_grid,
                             [[lay.lr_grid_train / n for n in run_names(rs)] for rs in per_method])

    def run_table(run_dir: Path) -> None:
        from memadv.analysis import bat_tables
        from memadv.experiments.sweep import TrainTask
        from memadv.executors import run_tasks
        runs, lay = pcfg.table_runs(cfg, run_dir), RunLayout(run_dir)
        if pcfg.chosen_lrs(run_dir):  # the first seed's run at the chosen lr is a grid run: link, do not retrain
            grid = {n for rs in pcfg.lr_grid_runs(cfg, run_dir) for n in run_names(rs)}
            _link_runs(lay.lr_grid_train, lay.table_train, [n for n in run_names(runs) if n in grid])
        task = TrainTask(runs=runs, out_dir=str(lay.table_train), overrides={})
        run_tasks(task, list(range(len(runs))), executor, lay.table_jobs,
                  desc="bat table training", progress=progress)
        bat_tables.bat_figures(lay.table_train, lay.report, "own")

    def run_ablation(run_dir: Path) -> None:
        from memadv.analysis import ablation
        from memadv.experiments.sweep import TrainTask
        from memadv.executors import run_tasks
        new, shared = pcfg.ablation_runs(cfg, run_dir)
        lay = RunLayout(run_dir)
        _link_runs(lay.table_train, lay.ablation_train, run_names(shared))
        task = TrainTask(runs=new, out_dir=str(lay.ablation_train), overrides={})
        run_tasks(task, list(range(len(new))), executor, lay.ablation_jobs,
                  desc="ablation training", progress=progress)
        ablation.ablation_figures(lay.ablation_train, lay.report_ablation, "last")

    def run_report(run_dir: Path) -> None:
        from memadv.analysis import report
        report.write_report(run_dir, settings.seeds)

    # the full-data models' test accuracy is an estimate output and a splits input
    scores = lambda d: [RunLayout(d).mem] + ([RunLayout(d).test_acc_full] if cfg.full_models else [])  # noqa: E731
    splits = lambda d: [RunLayout(d).split_file]  # noqa: E731
    sec31_jobs = lambda d: [paper.sec31_train_dir(d) / n for n in paper.sec31_run_names(settings)]  # noqa: E731
    sec32_jobs = lambda d: paper.sec32_run_dirs(d, settings)  # noqa: E731
    table_jobs = lambda d: [RunLayout(d).table_train / n for n in run_names(pcfg.table_runs(cfg, d))]  # noqa: E731
    abl_jobs = lambda d: [RunLayout(d).ablation_train / n  # noqa: E731
                          for n in run_names(pcfg.ablation_runs(cfg, d)[0])]
    finals = lambda jobs: (lambda d: [TrainingRun(j).final_path for j in jobs(d)])  # noqa: E731
    atypical_tests = lambda d: [TrainingRun(j).atypical_test_path for j in sec32_jobs(d)]  # noqa: E731
    # options added after runs were made stamp only when set, so those runs stay up to date
    later = {"train_net": None, "train_eps": None, "val_fraction": 0.0, "eval_every": 1, "lr_grid": []}
    train_stamp = {k: v for k, v in dataclasses.asdict(pcfg).items()
                   if k not in ("train_device", "quick", "sec32_p") and not k.startswith("ablation")
                   and not (k in later and v == later[k])}
    ablation_stamp = {**{k: v for k, v in train_stamp.items() if k != "train_seeds"},
                      "seed": pcfg.train_seeds[0], "alpha": pcfg.ablation_alpha, "beta": pcfg.ablation_beta}

    out = [
        Stage("estimate", outputs=lambda d: scores(d) if _scores_complete(d, cfg) else [],
              inputs=lambda d: [], run=run_estimate),
        Stage("splits", outputs=splits, inputs=scores, run=run_splits,
              # stamped only when set: a run made before the option keeps its splits (and all after them)
              stamp={"error_control": pcfg.error_control} if pcfg.error_control != "none" else None),
        Stage("score figures", outputs=lambda d: RunLayout(d).stage_reports()["score figures"], inputs=scores,
              run=run_score_figures),
        Stage("sec31", outputs=lambda d: finals(sec31_jobs)(d) + RunLayout(d).stage_reports()["sec31"],
              inputs=splits, run=run_sec31, stamp={"settings": settings.stamp()}, jobs=sec31_jobs),
        Stage("sec32", outputs=lambda d: finals(sec32_jobs)(d) + atypical_tests(d)
              + RunLayout(d).stage_reports()["sec32"],
              inputs=lambda d: splits(d) + finals(sec31_jobs)(d), run=run_sec32,
              stamp={"settings": settings.stamp()}, jobs=sec32_jobs),
    ]
    if pcfg.poisoning_control:
        control_jobs = lambda d: paper.control_run_dirs(d, settings)  # noqa: E731
        out.append(Stage("sec32 controls", outputs=finals(control_jobs),
                         inputs=lambda d: splits(d) + finals(sec31_jobs)(d), run=run_controls,
                         stamp={"settings": settings.stamp()}, jobs=control_jobs))
    if pcfg.lr_grid:
        grid_jobs = lambda d: [RunLayout(d).lr_grid_train / n  # noqa: E731
                               for rs in pcfg.lr_grid_runs(cfg, d) for n in run_names(rs)]
        out.append(Stage("lr grid", outputs=lambda d: finals(grid_jobs)(d) + [RunLayout(d).lr_choice],
                         inputs=splits, run=run_lr_grid, stamp={"train": train_stamp, "runs": TABLE_RUNS},
                         jobs=grid_jobs))
    choice = (lambda d: [RunLayout(d).lr_choice]) if pcfg.lr_grid else (lambda d: [])  # noqa: E731
    out += [
        Stage("bat table", outputs=lambda d: finals(table_jobs)(d) + RunLayout(d).stage_reports()["bat table"],
              inputs=lambda d: splits(d) + choice(d), run=run_table, stamp={"train": train_stamp, "runs": TABLE_RUNS},
              jobs=table_jobs),
    ]
    if pcfg.ablation:
        out.append(Stage("ablation", outputs=lambda d: finals(abl_jobs)(d) + RunLayout(d).stage_reports()["ablation"],
                         inputs=lambda d: splits(d) + finals(table_jobs)(d), run=run_ablation,
                         stamp={"train": ablation_stamp}, jobs=abl_jobs))
    out.append(Stage("report", outputs=lambda d: [RunLayout(d).report_html], inputs=lambda d: [],
                     run=run_report, always=True))
    return out


# --------------------------------------------------------------------------- progress

def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s"


def write_plan(run_dir: Path, todo: list[Stage], cfg: EstimateConfig, pcfg: PipelineConfig,
               state: dict[str, str]) -> None:
    """``pipeline/plan.json``: stage -> state, job folders and outputs (read by ``memadv status``,
    which believes "done" only while the outputs exist), and while a stage runs the process that
    runs it (pid, host: ``status`` says "interrupted" once it is gone); written only when it changes."""
    plan: dict[str, Any] = {
        "dataset": cfg.dataset, "quick": pcfg.quick,
        "stages": [{"name": s.name, "state": state.get(s.name, "pending"),
                    "jobs": [str(j.relative_to(run_dir)) for j in s.jobs(run_dir)],
                    "outputs": [str(p.relative_to(run_dir)) for p in s.outputs(run_dir)]} for s in todo]}
    if "running" in state.values():
        plan["owner"] = process_owner()
    path = RunLayout(run_dir).plan
    try:
        if json.loads(path.read_text()) == plan:
            return
    except (OSError, ValueError):
        pass
    write_json_atomic(path, plan)


def _record_time(run_dir: Path, name: str, seconds: float, jobs: int) -> None:
    """``pipeline/timing.json``: wall time of the last run of each stage (shown in the report)."""
    path = RunLayout(run_dir).timing
    try:
        timing = json.loads(path.read_text())
    except (OSError, ValueError):
        timing = {}
    timing[name] = {"seconds": round(seconds, 1), "jobs": jobs, "finished_at": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    write_json_atomic(path, timing)


def check_before_writing(cfg: EstimateConfig, run_dir: Path, todo: list[Stage]) -> None:
    """Everything that can refuse a pipeline command, checked before it writes any file (a refused
    command leaves the run folder, and so ``memadv status``, as it was): the data set loads, an
    existing estimate has the same defining settings, and every training run's configuration builds.
    Raises the stage's own one-line error (ConfigError, DatasetError, ...)."""
    dataset = dataset_for(cfg)  # cached: the estimate stage reuses it
    if run_dir.is_dir():
        check_spec(run_dir, cfg, dataset)
    for stage in todo:
        stage.jobs(run_dir)  # builds (and so validates) every TrainConfig of the stage


def run_pipeline(cfg: EstimateConfig, run_dir: str | Path, executor: ExecutorConfig | None = None, *,
                 progress: bool = True, log: Callable[[str], None] = print,
                 pcfg: PipelineConfig | None = None) -> dict[str, str]:
    """Run every stage that is not up to date; returns stage -> "ran" / "skipped"."""
    run_dir = Path(run_dir)
    executor = executor or ExecutorConfig()
    pcfg = pcfg or PipelineConfig()
    todo = stages(cfg, executor, progress, pcfg)
    check_before_writing(pcfg.estimate_config(cfg), run_dir, todo)
    outcome: dict[str, str] = {}
    run_dir.mkdir(parents=True, exist_ok=True)
    done_flags = {s.name: s.is_done(run_dir) for s in todo}
    write_plan(run_dir, todo, pcfg.estimate_config(cfg), pcfg,
               {n: ("done" if f else "pending") for n, f in done_flags.items()})
    total_jobs = sum(len(s.jobs(run_dir)) for s in todo)
    jobs_done = sum(sum(TrainingRun(j).is_finished() for j in s.jobs(run_dir)) for s in todo)
    job_time: list[float] = []
    start_all = time.time()
    for n, stage in enumerate(todo, 1):
        head = f"[{n}/{len(todo)}] {stage.name}"
        if stage.is_done(run_dir):
            log(f"{head}: up to date, skipped")
            outcome[stage.name] = "skipped"
            continue
        jobs = stage.jobs(run_dir)
        left = [j for j in jobs if not TrainingRun(j).is_finished()]
        eta = (sum(job_time) / len(job_time) * (total_jobs - jobs_done)) if job_time else None
        extra = (f": {len(left)} of {len(jobs)} training jobs to run; all stages {jobs_done}/{total_jobs} jobs "
                 f"done, ETA {_fmt_s(eta)}") if jobs else ""
        log(f"{head} ...{extra}")
        write_plan(run_dir, todo, pcfg.estimate_config(cfg), pcfg,
                   {s.name: ("done" if outcome.get(s.name) or done_flags[s.name] else "pending") for s in todo}
                   | {stage.name: "running"})
        start = time.time()
        try:
            stage.run(run_dir)
        except BaseException:
            write_plan(run_dir, todo, pcfg.estimate_config(cfg), pcfg,
                       {s.name: ("done" if outcome.get(s.name) or done_flags[s.name] else "pending") for s in todo}
                       | {stage.name: "failed"})
            raise
        took = time.time() - start
        if left:
            job_time += [took / len(left)] * len(left)
            jobs_done += len(left)
        stage.mark_done(run_dir)
        if not stage.always:
            _record_time(run_dir, stage.name, took, len(left))
        outcome[stage.name] = "ran"
        log(f"{head}: done in {took:.0f} s" + (f" ({jobs_done}/{total_jobs} jobs done)" if jobs else ""))
    write_plan(run_dir, todo, pcfg.estimate_config(cfg), pcfg, {s.name: "done" for s in todo})
    log(f"pipeline finished in {time.time() - start_all:.0f} s; report: {RunLayout(run_dir).report_html}")
    return outcome
