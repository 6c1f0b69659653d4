"""Training sweeps: a TOML file of methods x hyper-parameters x seeds, one training run per task.

Sweep file::

    # sweeps/table2.toml — every key of `memadv train` may appear at the top level (base values)
    dataset = "digits"
    scores = "runs/digits/scores"
    epochs = 30
    seeds = [0, 1, 2]            # optional: one run per seed (else `seed`, default 0)
    out = "runs/digits/train"    # optional: parent folder of the runs (--out wins)

    [[runs]]                     # one table per group of runs; its keys override the base
    method = "pgd"

    [[runs]]
    method = "bat"
    alpha = [0, 1, 2, 3]         # a list sweeps: cartesian product of the lists in this table
    beta = [0, 0.1, 0.2, 0.3]

A list given to an option that itself takes a list (``milestones``, ``final_attacks``) is that
option's value; to sweep such an option give a list of lists. Without ``[[runs]]`` the base (with
its own lists swept) is the only group. Every run is checked before anything starts: an unknown
key, a value out of range or two runs with the same folder name is an error naming it.

Each run is one task of :func:`memadv.executors.run_tasks`; a task calls
:func:`memadv.bat.train.train`, which resumes from ``last.pt`` and returns at once for a finished
run, so re-running the sweep (or a requeued Slurm task) finishes exactly the missing work.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.runs import run_name
from memadv.bat.train_config import TrainConfig, make_configs
from memadv.config import _base_type
from memadv.errors import ConfigError
from memadv.layout import RunLayout, sweep_jobs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SWEEP_KEYS = ("seeds", "out", "runs")
# options that describe the machine: taken from the command line, never from the sweep file's runs
MACHINE_OPTIONS = ("device", "data_root")


def _config_classes() -> list[type]:
    return [TrainConfig, ObjectiveConfig]


def _field_types() -> dict[str, bool]:
    """option name -> whether the option itself takes a list."""
    out: dict[str, bool] = {}
    for cls in _config_classes():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, _base_type(hints[f.name])[2])
    return out


def _grid(values: dict[str, Any], types: dict[str, bool], where: str) -> list[dict[str, Any]]:
    swept: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    for k, v in values.items():
        if k not in types:
            raise ConfigError(f"{where}: unknown option {k!r}; valid: {', '.join(sorted(types))}")
        takes_list = types[k]
        if isinstance(v, list) and (not takes_list or (v and all(isinstance(x, list) for x in v))):
            if not v:
                raise ConfigError(f"{where}: {k} is an empty list; give at least one value")
            swept[k] = v
        else:
            fixed[k] = v
    keys = list(swept)
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(swept[k] for k in keys))]


def expand_sweep(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one flat option dict per run, sweep-level settings {"out": ...}) from a sweep file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None
    types = _field_types()
    groups = data.get("runs", [{}])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ConfigError(f"{path}: 'runs' must be an array of tables ([[runs]])")
    base = {k.replace("-", "_"): v for k, v in data.items() if k not in SWEEP_KEYS}
    for k, v in base.items():
        if isinstance(v, dict):
            raise ConfigError(f"{path}: unexpected table [{k}]; use [[runs]] tables for groups of runs")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    runs: list[dict[str, Any]] = []
    for gi, group in enumerate(groups, start=1):
        merged = {**base, **{k.replace("-", "_"): v for k, v in group.items()}}
        for k in MACHINE_OPTIONS:
            if k in group:
                raise ConfigError(f"{path}: [[runs]] #{gi} sets {k!r}; machine options belong on the command line")
        for point in _grid(merged, types, f"{path} [[runs]] #{gi}" if "runs" in data else str(path)):
            for seed in (seeds if seeds is not None and "seed" not in point else [point.get("seed", None)]):
                run = dict(point)
                if seed is not None:
                    run["seed"] = seed
                runs.append(run)
    if not runs:
        raise ConfigError(f"{path} defines no runs")
    return runs, {"out": data.get("out")}


def build_run_configs(values: dict[str, Any], overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(TrainConfig, objective config) from one flat option dict; ``overrides`` (machine options) win."""
    return make_configs({**values, **(overrides or {})})


@dataclass
class TrainTask:
    """Picklable, idempotent task: ``task(i)`` trains (or resumes, or skips) run ``i``."""

    runs: list[dict[str, Any]]
    out_dir: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __call__(self, i: int) -> str:
        from memadv.bat.train import train
        cfg, ocfg = build_run_configs(self.runs[i], {**self.overrides, "progress": False})
        return str(train(cfg, self.out_dir, ocfg))


def plan_sweep(path: str | Path, out: str | Path | None = None,
               overrides: dict[str, Any] | None = None) -> tuple[TrainTask, list[str]]:
    """Expand and validate a sweep; returns the task and the run folder names (in task order)."""
    runs, settings = expand_sweep(path)
    out_dir = out if out is not None else settings.get("out")
    if out_dir is None:
        datasets = {r.get("dataset", "digits") for r in runs}
        out_dir = RunLayout(Path("runs") / (datasets.pop() if len(datasets) == 1 else "sweep")).table_train
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names: dict[str, int] = {}
    for i, r in enumerate(runs):
        try:
            cfg, ocfg = build_run_configs(r, overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: run {i} ({_describe(r)}): {e}") from None
        name = run_name(cfg, ocfg)
        if name in names:
            raise ConfigError(f"{path}: runs {names[name]} and {i} both write {name!r}; give one a different "
                              f"seed, hyper-parameter or 'name'")
        names[name] = i
    return TrainTask(runs=runs, out_dir=str(out_dir), overrides=overrides), list(names)


def _describe(run: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.items() if k not in ("dataset", "scores", "splits"))


def run_sweep(path: str | Path, executor_cfg: Any, out: str | Path | None = None,
              overrides: dict[str, Any] | None = None, progress: bool = True) -> list[Path]:
    """Run every run of the sweep as a task on ``executor_cfg``'s executor; returns the run folders."""
    from memadv.executors import run_tasks
    task, names = plan_sweep(path, out, overrides)
    folder = sweep_jobs(task.out_dir, Path(path).stem)
    results = run_tasks(task, list(range(len(task.runs))), executor_cfg, folder, desc="training runs",
                        progress=progress)
    return [Path(r) for r in results]


@dataclass
class SingleRunTask:
    """Picklable, idempotent task of one training run given as configs (``memadv train --executor
    local|slurm``): ``task(0)`` trains, resumes or skips it; progress bars off (they would fill logs)."""

    cfg: TrainConfig
    objective_cfg: ObjectiveConfig
    out_dir: str

    def __call__(self, i: int) -> str:
        from memadv.bat.train import train
        return str(train(dataclasses.replace(self.cfg, progress=False), self.out_dir, self.objective_cfg))


def run_single(cfg: TrainConfig, objective_cfg: ObjectiveConfig, out: str | Path, executor_cfg: Any,
               progress: bool = True) -> Path:
    """Train one run as the single task of ``executor_cfg``'s executor (its files in
    ``<out>/.sweep/<run name>/``); returns the run folder. Raises
    :class:`memadv.executors.TasksFailedError` naming the task's log if the run failed."""
    from memadv.executors import run_tasks
    folder = sweep_jobs(out, run_name(cfg, objective_cfg))
    [result] = run_tasks(SingleRunTask(cfg, objective_cfg, str(out)), [0], executor_cfg, folder,
                         desc="training run", progress=progress)
    return Path(result)
