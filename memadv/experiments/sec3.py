"""Sections 3.1 and 3.2 of the paper as tasks: which training runs they need and their submission.

:class:`Sec31Task` / :class:`Sec32Task` are picklable, idempotent tasks (``task(i)`` trains, resumes
or skips the i-th run of :func:`memadv.paper.sec3.sec31_plan` / :func:`memadv.paper.sec3.sec32_plan`);
:func:`run_sec31` / :func:`run_sec32` run them through :func:`memadv.executors.run_tasks`. The
figures and tables of those runs are drawn by :mod:`memadv.analysis.sec31` and :mod:`memadv.analysis.sec32`,
which only read the run folders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memadv.paper.sec3 import Sec3Settings, sec31_plan, sec31_train_dir
from memadv.paper.sec3 import cosine_metrics
from memadv.paper.sec3 import run_label, sec32_plan, subset_dataset, subset_ids
from memadv.files.atomic import write_json_atomic
from memadv.errors import MemadvError
from memadv.layout import RunLayout
from memadv.paper import sec3 as paper


@dataclass
class Sec31Task:
    """Picklable, idempotent: ``task(i)`` trains (resumes, or skips) the i-th (method, seed) of the plan."""

    run_dir: str
    settings: Sec3Settings

    def __call__(self, i: int) -> str:
        from memadv.bat.train import train
        splits = RunLayout(self.run_dir).split_file
        if not splits.is_file():
            raise MemadvError(f"{splits} does not exist; run `memadv splits` (or the pipeline) first")
        method, seed = sec31_plan(self.settings)[i]
        cfg, ocfg = self.settings.configs(method, seed, f"{method}-seed{seed}", splits=str(splits))
        return str(train(cfg, sec31_train_dir(Path(self.run_dir)), ocfg))


def run_sec31(run_dir: str | Path, settings: Sec3Settings, executor: Any = None, *, progress: bool = True,
              desc: str = "sec31 training") -> list[Path]:
    """Train (or resume) the Section 3.1 runs through ``run_tasks``; returns their folders."""
    from memadv.executors import ExecutorConfig, run_tasks
    run_dir = Path(run_dir)
    task = Sec31Task(str(run_dir), settings)
    out = run_tasks(task, list(range(len(sec31_plan(settings)))), executor or ExecutorConfig(),
                    RunLayout(run_dir).sec31_jobs,
                    desc=desc, progress=progress)
    return [Path(p) for p in out]


def typical_sets(run_dir: Path, settings: Sec3Settings, what: str) -> tuple[Any, dict[str, np.ndarray]]:
    """(data set, split sets) as the Section 3.2 runs see them: the run's data set (decoded once, in
    its cache) and its split file. MemadvError (one line, naming what would help) when D_typ or
    D'_typ is empty, which every run that trains on D_typ and tests on D'_typ needs."""
    from memadv.data.registry import load_dataset
    from memadv.splits.files import read_split_sets
    lay, s = RunLayout(run_dir), settings
    ds = load_dataset(s.dataset, s.data_root, cache_dir=lay.data_cache, **s.dataset_options)
    sets = read_split_sets(lay.split_file, ds)
    n_typ, n_test = len(sets["train/typical"]), len(sets["test/typical"])
    if n_typ == 0 or n_test == 0:
        raise MemadvError(f"{what} needs non-empty D_typ and D'_typ; the split file has {n_typ} and {n_test}: use "
                          f"more estimator models (`memadv status RUN` projects how many decide the rules), other "
                          f"thresholds, or --error-control none (the paper's reading)")
    return ds, sets


@dataclass
class Sec32Task:
    """Picklable, idempotent: ``task(i)`` trains (resumes, or skips) the i-th (p, method, seed) of the plan."""

    run_dir: str
    settings: Sec3Settings

    def __call__(self, i: int) -> str:
        from memadv.bat.train import train
        run_dir = Path(self.run_dir)
        p, method, seed = sec32_plan(self.settings)[i]
        s = self.settings
        ds, sets = typical_sets(run_dir, s, "sec32")
        train_ids, test_ids = subset_ids(sets, p, seed)
        typ = np.asarray(sets["train/typical"], np.int64)
        write_json_atomic(RunLayout(run_dir).sec32_subsets / f"p{p}-seed{seed}.json",
                          {"p": p, "seed": seed, "n_train": int(train_ids.size), "n_typical": int(typ.size),
                           "n_atypical_kept": int(train_ids.size - typ.size), "n_test_typical": int(test_ids.size),
                           "train_ids": train_ids.tolist(), "test_ids": test_ids.tolist()})
        sub = subset_dataset(ds, train_ids, test_ids)
        name = run_label(p, method, seed)
        out = RunLayout(run_dir).sec32_train
        cfg, ocfg = s.configs(method, seed, name)
        t_typ = torch.from_numpy(typ)
        run = train(cfg, out, ocfg, dataset=sub,
                    epoch_metrics=cosine_metrics(ds.x_train[t_typ], ds.y_train[t_typ]))
        evaluate_atypical_test(run, ds, np.asarray(sets["test/atypical"], np.int64), cfg)
        return str(run)


def evaluate_atypical_test(run: Path, ds: Any, ids: np.ndarray, cfg: Any) -> Path:
    """``atypical_test.parquet`` of a finished Section 3.2 run: clean and PGD-20 accuracy of its last
    weights on all of D'_atyp (subset ``test/atypical``) and on every other test image (subset
    ``test/outside-atypical``), the attacks of its per-epoch evaluation. C2's counterfactual reading
    compares p = 100% with p = 0% on D'_atyp: the same test images, with and without the atypical
    training examples ("C2 as a counterfactual"). C4 is decided on the second set: test
    images no atypical training example influences above the paper's threshold, keeping the ones ERM
    gets wrong (D'_typ keeps only images ERM gets >= 80% right, so ERM scores ~100% on it and C4
    could hardly fail). ``ids``: D'_atyp as test ids of the full data set ``ds``; ``cfg``: the run's
    TrainConfig (device, evaluation batch, seed of the attack's random start). Written atomically;
    a file without both subsets (an older run) is rewritten. An empty set gives rows with n = 0,
    acc NaN."""
    import pandas as pd

    from memadv.bat import evaluate as ev
    from memadv.bat.inputs import resolve_device
    from memadv.bat.runs import FINAL_COLUMNS, OUTSIDE_ATYPICAL, TrainingRun
    from memadv.bat.train import epoch_attacks
    from memadv.scores.schema import dataset_meta
    from memadv.files.tables import write_table
    tr = TrainingRun(run)
    old = tr.atypical_test()
    if old is not None and {"test/atypical", OUTSIDE_ATYPICAL} <= set(old["subset"]):
        return tr.atypical_test_path
    device = resolve_device(cfg.device)
    model, epoch = tr.load_model(ds)
    specs = epoch_attacks(tr.objective_config())
    outside = np.setdiff1d(np.arange(ds.labels("test").shape[0], dtype=np.int64), ids)
    sets = {"test/atypical": ids, OUTSIDE_ATYPICAL: outside}
    acc = ev.subset_accuracy(model.to(device), ds, sets, specs, batch_size=cfg.eval_batch_size,
                             device=device, seed=cfg.seed)
    rows = [{"checkpoint": "last", "epoch": epoch, "subset": name, "attack": s.name,
             "acc": acc[f"{name}/{s.label}"], "n": int(acc[f"{name}/n"])} for name in sets for s in specs]
    write_table(tr.atypical_test_path, pd.DataFrame(rows, columns=FINAL_COLUMNS),
                {**dataset_meta(ds), "run": tr.name, "what": "last weights on all of D'_atyp and on every "
                                                            "other test image"})
    return tr.atypical_test_path


@dataclass
class PoisoningControlTask:
    """Picklable, idempotent: ``task(i)`` trains (resumes, or skips) the i-th (arm, seed) of C3's
    controls (:mod:`memadv.analysis.poisoning_control`): PGD-AT on D_typ + the high or low
    poisoning-score half of D_atyp, scored under the Section 3.1 PGD-AT run of the same seed, or on
    D_typ + a class-matched random draw of the training images the estimate left out."""

    run_dir: str
    settings: Sec3Settings

    def __call__(self, i: int) -> str:
        from memadv.analysis.poisoning import poisoning_scores
        from memadv.bat.inputs import resolve_device
        from memadv.bat.runs import TrainingRun
        from memadv.bat.train import train
        run_dir, s = Path(self.run_dir), self.settings
        half, seed = paper.control_plan(s)[i]
        lay = RunLayout(run_dir)
        ds, sets = typical_sets(run_dir, s, "C3's poisoning control")
        atyp = np.asarray(sets["train/atypical"], np.int64)
        typ = np.asarray(sets["train/typical"], np.int64)
        test_ids = np.asarray(sets["test/typical"], np.int64)
        if half == paper.RANDOM:
            return str(self._random_arm(ds, atyp, typ, test_ids, seed))
        # with fewer than 2 atypical examples both halves are empty: the two runs train on D_typ alone
        # and the control reads as no difference (inconclusive), as Section 3.2 runs at p = 0 would
        scorer = TrainingRun(sec31_train_dir(run_dir) / f"pgd-seed{seed}")
        if not scorer.is_finished():
            raise MemadvError(f"C3's poisoning control of seed {seed} needs the finished Section 3.1 PGD-AT run "
                              f"{scorer.folder}; run the pipeline's sec31 stage with that seed first")
        cfg, ocfg = s.configs(paper.METHOD, seed, paper.control_label(half, seed))
        device = resolve_device(cfg.device)
        model, epoch = scorer.load_model(ds)
        t_atyp = torch.from_numpy(atyp)
        q, _ = poisoning_scores(model.to(device), ds.x_train[t_atyp], ds.y_train[t_atyp],
                                scorer.objective_config(), seed=seed, device=device, batch_size=cfg.eval_batch_size)
        ids = paper.poisoning_halves(atyp, q)[half]
        train_ids = np.union1d(typ, ids).astype(np.int64)
        write_json_atomic(lay.sec32_controls_subsets / f"{cfg.name}.json",
                          {"half": half, "seed": seed, "scored_by": str(scorer.folder), "scored_epoch": int(epoch),
                           "atypical_ids": atyp.tolist(), "q": [float(v) for v in q], "half_ids": ids.tolist(),
                           "n_train": int(train_ids.size), "n_test_typical": int(test_ids.size)})
        run = train(cfg, lay.sec32_controls_train, ocfg, dataset=subset_dataset(ds, train_ids, test_ids))
        return str(run)

    def _random_arm(self, ds: Any, atyp: np.ndarray, typ: np.ndarray, test_ids: np.ndarray, seed: int) -> Path:
        """PGD-AT on D_typ + as many training images of each class as D_atyp has, drawn (seeded by
        ``seed``) from the images of the full data set that the estimate left out."""
        from memadv.bat.train import train
        from memadv.data.registry import load_dataset
        s, lay = self.settings, RunLayout(self.run_dir)
        cfg, ocfg = s.configs(paper.METHOD, seed, paper.control_label(paper.RANDOM, seed))
        full_opts = {k: v for k, v in s.dataset_options.items() if k != "per_class"}
        full = load_dataset(s.dataset, s.data_root, cache_dir=lay.data_cache, **full_opts)
        n_full = full.labels("train").shape[0]
        pool = np.setdiff1d(np.arange(n_full, dtype=np.int64), np.asarray(ds.ids("train"), np.int64))
        try:
            drawn = paper.class_matched_draw(ds.labels("train").numpy()[atyp], pool, full.labels("train").numpy()[pool],
                                          np.random.default_rng([int(seed), 21]))
        except ValueError as e:
            raise MemadvError(f"C3's random-addition control: {e}") from None
        t_new = torch.from_numpy(drawn)
        sub = subset_dataset(ds, typ, test_ids)  # D_typ and D'_typ as every Section 3.2 run sees them
        sub = dataclasses.replace(sub, x_train=torch.cat([sub.x_train, full.x_train[t_new]]),
                                  y_train=torch.cat([sub.y_train, full.y_train[t_new]]))
        write_json_atomic(lay.sec32_controls_subsets / f"{cfg.name}.json",
                          {"arm": paper.RANDOM, "seed": seed, "n_atypical": int(atyp.size),
                           "drawn_original_ids": drawn.tolist(), "n_train": int(typ.size + drawn.size),
                           "n_test_typical": int(test_ids.size)})
        return train(cfg, lay.sec32_controls_train, ocfg, dataset=sub)


def run_poisoning_control(run_dir: str | Path, settings: Sec3Settings, executor: Any = None, *,
                          progress: bool = True) -> list[Path]:
    """Train (or resume) C3's poisoning control runs through ``run_tasks``; returns their folders."""
    from memadv.paper.sec3 import control_plan
    from memadv.executors import ExecutorConfig, run_tasks
    run_dir = Path(run_dir)
    out = run_tasks(PoisoningControlTask(str(run_dir), settings), list(range(len(control_plan(settings)))),
                    executor or ExecutorConfig(), RunLayout(run_dir).sec32_controls_jobs,
                    desc="C3 poisoning control training", progress=progress)
    return [Path(p) for p in out]


def run_sec32(run_dir: str | Path, settings: Sec3Settings, executor: Any = None, *, progress: bool = True,
              desc: str = "sec32 training") -> list[Path]:
    from memadv.executors import ExecutorConfig, run_tasks
    run_dir = Path(run_dir)
    plan = sec32_plan(settings)
    out = run_tasks(Sec32Task(str(run_dir), settings), list(range(len(plan))), executor or ExecutorConfig(),
                    RunLayout(run_dir).sec32_jobs, desc=desc, progress=progress)
    return [Path(p) for p in out]
