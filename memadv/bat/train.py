"""The adversarial training loop: BAT (Algorithm 1) and its baselines, with the paper's evaluation.

One plain loop in the style of torchvision's reference scripts::

    for epoch in range(start_epoch, epochs + 1):
        g = generator seeded by (seed, epoch)         # order, augmentation, attack starts
        for batch in shuffled(train, g):
            model.eval();  x_adv, aux = objective.perturb(model, x, y, idx, generator=g)
            model.train(); loss, stats = objective.loss(model, x, x_adv, y, idx, aux)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        scheduler.step()
        evaluate clean and PGD-20 accuracy on all / typical / atypical x train / test
        save best_adv.pt, best_clean.pt, last.pt; rewrite metrics.parquet

Files of one run (``<out>/<run name>/``):

* ``config.json``  the resolved configuration (per-dataset defaults filled in);
* ``last.pt``      model, optimizer, scheduler, epoch, config, RNG states, metric rows, best values —
  loaded to CPU; a re-run of the same command resumes at ``epoch + 1`` and ends with exactly the
  metrics of an uninterrupted run (every epoch re-seeds its randomness from ``(seed, epoch)``);
* ``metrics.parquet``  one row per evaluation (columns ``epoch, lr, loss, time_s, ...`` and
  ``<split>/<set>/<clean|adv|n>``, e.g. ``test/atypical/adv``);
* ``best_adv.pt`` / ``best_clean.pt``  the weights at the highest ``test/all/adv`` / ``test/all/clean``
  (the paper's tables report both for PGD-AT; test-selected, see :mod:`memadv.bat.selection`);
* with ``--val-fraction``: ``validation.parquet`` (the held-out training ids, checked on resume) and
  ``best_val_adv.pt`` / ``best_val_clean.pt`` (highest ``train/val/adv`` / ``train/val/clean``);
* ``final.parquet``  after the last epoch: clean / FGSM / PGD-20 / CW / AutoAttack accuracy of the
  last and every best weights on the test subsets (Table 4).

A non-finite loss stops the run with the epoch and batch named; ``last.pt`` (previous epoch) is kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from memadv.bat import evaluate as ev
from memadv.bat import selection
from memadv.bat.attacks import AUTOATTACK_MIN_CLASSES
from memadv.bat.inputs import (cap_subsets, default_splits_path, load_mem, load_subsets, resolve_device,
                               with_scores_dataset)
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.methods import build_objective
from memadv.bat.runs import (CHECKPOINT_VERSION, CHECKPOINTS, FINAL_COLUMNS, RESUME_KEYS, TrainingRun,
                             check_same_config, full_config, load_checkpoint, loop_rng_state, run_name, save_checkpoint,
                             restore_loop_rng, seed_epoch)
from memadv.bat.train_config import TrainConfig
from memadv.files.atomic import write_json_atomic
from memadv.data.augment import random_crop_flip
from memadv.data.dataset import Dataset
from memadv.data.registry import OWN_DATASETS, defaults_like, load_dataset
from memadv.scores.schema import dataset_meta, scores_data_cache
from memadv.files.tables import write_table
from memadv.environment import describe as describe_environment
from memadv.errors import ConfigError, NonFiniteLossError



# --------------------------------------------------------------------------- the loop

def _stats_value(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean().item())
    return float(v)


def train_one_epoch(model, objective, optimizer, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                    epoch: int, data_gen: torch.Generator, device: torch.device,
                    ids: torch.Tensor | None = None) -> dict[str, float]:
    """One pass over the training set (order and augmentation drawn from ``data_gen``); ``ids``
    (int64, default all) restricts it to those training ids (the validation slice is left out).

    Returns the mean loss and the mean of every objective statistic, weighted by batch size.
    Raises :class:`NonFiniteLossError` naming the epoch and batch when the loss is NaN or infinite.
    """
    n = images.shape[0] if ids is None else ids.shape[0]
    perm = torch.randperm(n, generator=data_gen)
    batches = (perm if ids is None else ids[perm]).split(cfg.batch_size)
    total_loss, total_n = 0.0, 0
    stats_sum: dict[str, float] = {}
    it: Any = batches
    if cfg.progress:
        from tqdm import tqdm
        it = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="batch")
    for b, idx in enumerate(it, start=1):
        xb = random_crop_flip(images[idx], data_gen, pad=cfg.crop_pad, flip=cfg.flip)
        x = xb.to(device).float().div_(255.0)
        y = labels[idx].to(device)
        model.eval()
        x_adv, aux = objective.perturb(model, x, y, idx, generator=data_gen)
        model.train()
        loss, stats = objective.loss(model, x, x_adv, y, idx, aux)
        value = float(loss.detach().item())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss became {value} at epoch {epoch}, batch {b} of {len(batches)} "
                                     f"(method {cfg.method}, lr {optimizer.param_groups[0]['lr']:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        m = int(idx.shape[0])
        total_loss += value * m
        total_n += m
        for k, v in (stats or {}).items():
            try:
                stats_sum[k] = stats_sum.get(k, 0.0) + _stats_value(v) * m
            except (TypeError, ValueError):
                continue
    out = {"loss": total_loss / max(total_n, 1)}
    out.update({f"stat/{k}": v / max(total_n, 1) for k, v in stats_sum.items()})
    return out


def epoch_attacks(ocfg: ObjectiveConfig) -> list[ev.AttackSpec]:
    """The per-epoch evaluation: clean accuracy and PGD-20 ("adv") at the objective's eps."""
    return [ev.AttackSpec("clean", label="clean"),
            ev.AttackSpec("pgd", ocfg.eps, ocfg.eval_step_size, ocfg.eval_steps, label="adv")]


def final_attacks(cfg: TrainConfig, ocfg: ObjectiveConfig) -> list[ev.AttackSpec]:
    specs = ev.paper_attacks(ocfg.eps, ocfg.eval_step_size, ocfg.eval_steps, cw_confidence=ocfg.cw_confidence,
                             cw_steps=ocfg.cw_steps, cw_step_size=ocfg.cw_step_size)  # the reference's CW
    return [s for s in specs if s.name in cfg.final_attacks]


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    write_table(run_dir / "metrics.parquet", pd.DataFrame(rows), meta)


def prepare(cfg: TrainConfig, objective_cfg: ObjectiveConfig | None = None, dataset: Dataset | None = None
            ) -> tuple[TrainConfig, ObjectiveConfig, Dataset, torch.Tensor | None, dict[str, np.ndarray]]:
    """Load + check every input (dataset, scores, splits) before any file is written, and resolve the
    objective config: the one place its eps and step sizes are filled in (from the data set; a user's
    own data set takes the eps of the built-in set of its image shape)."""
    if dataset is None:
        cfg = with_scores_dataset(cfg)  # the data-set options (and root) of the scores travel to the run
        dataset = load_dataset(cfg.dataset, cfg.data_root, cache_dir=scores_data_cache(cfg.scores),
                               **cfg.dataset_options())
    elif dataset.name != cfg.dataset:
        raise ConfigError(f"dataset passed in is {dataset.name!r}, the config says {cfg.dataset!r}")
    if "aa" in cfg.final_attacks and dataset.num_classes < AUTOATTACK_MIN_CLASSES:
        # refused before training, not after it (the evaluation would fail at the end of the run)
        raise ConfigError(f"--final-attacks aa: AutoAttack needs at least {AUTOATTACK_MIN_CLASSES} classes, "
                          f"{cfg.dataset} has {dataset.num_classes}; leave aa out of --final-attacks")
    eps_of = defaults_like(dataset.image_shape) if cfg.dataset in OWN_DATASETS else cfg.dataset
    ocfg = (objective_cfg if objective_cfg is not None else ObjectiveConfig()).resolved(eps_of)
    if cfg.splits is None and cfg.scores is not None:
        found = default_splits_path(cfg.scores)
        if found is not None:
            cfg = dataclasses.replace(cfg, splits=str(found))
    mem = load_mem(cfg.scores, dataset) if cfg.scores is not None else None
    if cfg.method == "bat" and mem is None:
        raise ConfigError("--method bat needs memorization scores: pass --scores (a scores/ folder with mem.parquet)")
    subsets = load_subsets(cfg, dataset)
    # the held-out slice of --val-fraction (checkpoint selection without the test set)
    subsets = selection.with_validation(subsets, dataset, cfg.val_fraction, cfg.val_seed)
    return cfg, ocfg, dataset, mem, subsets


def train(cfg: TrainConfig, out_dir: str | Path, objective_cfg: ObjectiveConfig | None = None, *,
          dataset: Dataset | None = None,
          epoch_metrics: Callable[[torch.nn.Module, int], dict[str, float]] | None = None) -> Path:
    """Train, resume or finish the run ``out_dir/<run name>``; returns the run folder.

    ``objective_cfg`` is an :class:`memadv.bat.objectives.ObjectiveConfig` (default: its defaults;
    eps from the dataset). ``dataset`` may be passed in to skip loading it (tests). Re-running with
    the same configuration resumes from ``last.pt``; a finished run returns at once.
    ``epoch_metrics(model, epoch)``, if given, is called at every per-epoch evaluation and its values
    join that epoch's row of ``metrics.parquet`` (and the checkpoint, so they survive a resume);
    it must leave the model's mode and parameters as it found them.
    """
    name = run_name(cfg, objective_cfg if objective_cfg is not None else ObjectiveConfig())
    cfg, ocfg, dataset, mem, subsets = prepare(cfg, objective_cfg, dataset)
    device = resolve_device(cfg.device)
    run_dir = Path(out_dir) / name
    conf = full_config(cfg, ocfg)
    if not open_run(run_dir, conf, device):
        return run_dir  # finished before
    meta = {**dataset_meta(dataset), "run": name, "method": cfg.method, "config": conf}
    train_ids = selection.training_ids(run_dir, subsets, dataset, meta)  # checks the held-out slice on resume

    torch.manual_seed(cfg.seed)
    from memadv.nets import build_net
    model = build_net(cfg.net, dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std).to(device)
    objective = build_objective(cfg.method, ocfg, mem=mem.to(device) if mem is not None else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    state = resume(run_dir, model, optimizer, scheduler, selection.best_kinds(subsets))
    _write_metrics(run_dir, state.rows, meta)  # drops a row whose epoch's checkpoint never landed

    eval_subsets = cap_subsets(subsets, cfg.eval_max)
    if selection.VAL_KEY in subsets:  # the whole validation slice, never capped: it selects checkpoints
        eval_subsets[selection.VAL_KEY] = subsets[selection.VAL_KEY]
    specs = epoch_attacks(ocfg)
    epochs: Any = range(state.start_epoch, cfg.epochs + 1)
    if cfg.progress:
        from tqdm import tqdm
        epochs = tqdm(epochs, desc=name, initial=state.start_epoch - 1, total=cfg.epochs, unit="epoch")
    last = run_dir / "last.pt"
    for epoch in epochs:
        data_gen = seed_epoch(cfg.seed, epoch)
        objective.set_epoch(epoch - 1, cfg.epochs)  # objectives count epochs from 0
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        try:
            stats = train_one_epoch(model, objective, optimizer, dataset.x_train, dataset.y_train, cfg, epoch,
                                    data_gen, device, ids=train_ids)
        except NonFiniteLossError as e:
            kept = f"{last} (epoch {epoch - 1})" if last.exists() else "none (it was the first epoch)"
            raise NonFiniteLossError(f"{e}; stopped, last checkpoint kept: {kept}; lower --lr or check the "
                                     f"scores and inputs") from None
        train_time = time.perf_counter() - t0
        scheduler.step()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
            acc = ev.subset_accuracy(model, dataset, eval_subsets, specs, batch_size=cfg.eval_batch_size,
                                     device=device, seed=cfg.seed)
            extra = epoch_metrics(model, epoch) if epoch_metrics is not None else {}
            row = {"epoch": epoch, "lr": lr, **stats, **acc, **extra, "time_s": train_time,
                   "eval_time_s": time.perf_counter() - t1}
            state.rows.append(row)
            keep_best(run_dir, model, epoch, row, state.best, conf)
            if cfg.progress and hasattr(epochs, "set_postfix"):
                epochs.set_postfix(clean=f"{acc['test/all/clean']:.3f}", adv=f"{acc['test/all/adv']:.3f}")
        save_last(last, model, optimizer, scheduler, epoch, data_gen, state, conf)
        _write_metrics(run_dir, state.rows, meta)

    final_evaluation(run_dir, model, dataset, subsets, cfg, ocfg, meta, device)
    return run_dir


# --------------------------------------------------------------------------- the run folder around the loop

def open_run(run_dir: Path, conf: dict[str, Any], device: torch.device) -> bool:
    """Check a run folder that exists against ``conf`` (ConfigError when it differs) and (re)write
    ``config.json`` with this machine appended to its ``environment`` list; False when the run is
    finished already (nothing written)."""
    environments: list[dict[str, Any]] = []
    if TrainingRun(run_dir).has_config():
        check_same_config(run_dir, conf)
        if TrainingRun(run_dir).is_finished():
            return False
        environments = TrainingRun(run_dir).config().get("environment", [])
    run_dir.mkdir(parents=True, exist_ok=True)
    # one entry per machine/software combination that trained epochs of this run (a resume elsewhere adds one)
    env = describe_environment(str(device))
    write_json_atomic(run_dir / "config.json",
                      {**conf, "environment": environments + ([env] if env not in environments else [])})
    return True


@dataclasses.dataclass
class LoopState:
    """What the loop carries from epoch to epoch besides the model, optimizer and schedule."""

    rows: list[dict[str, Any]]              # metrics rows so far (one per evaluated epoch)
    best: dict[str, tuple[float, int]]      # selection kind -> (best value, its epoch)
    start_epoch: int                        # the first epoch still to train (1-based)


def resume(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           best_kinds: list[str]) -> LoopState:
    """Load ``last.pt`` (to CPU, checked: :func:`memadv.bat.runs.load_checkpoint`) into the model,
    optimizer and schedule and return where the loop stands; a fresh state without one."""
    state = LoopState(rows=[], best={kind: (-1.0, 0) for kind in best_kinds}, start_epoch=1)
    last = run_dir / "last.pt"
    if last.exists():
        ck = load_checkpoint(last, RESUME_KEYS)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        state.rows = list(ck["metrics"])
        state.best.update({k: (float(v[0]), int(v[1])) for k, v in ck["best"].items()})
        state.start_epoch = int(ck["epoch"]) + 1
        restore_loop_rng(ck["rng"], torch.Generator())  # the global torch state; epochs re-seed their own generator
    return state


def keep_best(run_dir: Path, model: torch.nn.Module, epoch: int, row: dict[str, Any],
              best: dict[str, tuple[float, int]], conf: dict[str, Any]) -> None:
    """Save ``best_<kind>.pt`` for every selection kind whose column in ``row`` beats its best so far
    (strictly: the earliest epoch wins a tie); updates ``best`` in place."""
    for kind in best:
        value = row[selection.SELECTION_COLUMN[f"best_{kind}"]]
        if value > best[kind][0]:
            best[kind] = (value, epoch)
            save_checkpoint(run_dir / f"best_{kind}.pt",
                            {"model": model.state_dict(), "epoch": epoch, "metrics": row, "config": conf,
                             "version": CHECKPOINT_VERSION})


def save_last(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, epoch: int,
              data_gen: torch.Generator, state: LoopState, conf: dict[str, Any]) -> None:
    """The full checkpoint a resume starts from (torchvision's references: model, optimizer, schedule,
    epoch, config, RNG), written atomically after every epoch."""
    save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "epoch": epoch, "config": conf,
                           "rng": loop_rng_state(data_gen), "metrics": state.rows, "best": state.best,
                           "version": CHECKPOINT_VERSION})


# --------------------------------------------------------------------------- final evaluation (Table 4)
def final_evaluation(run_dir: Path, model, dataset: Dataset, subsets: dict[str, np.ndarray], cfg: TrainConfig,
                     ocfg: ObjectiveConfig, meta: dict[str, Any], device: torch.device) -> Path:
    """``final.parquet``: every final attack on the test subsets (capped at ``final_max`` examples)
    for the last, best-adv and best-clean weights. Written once; its presence marks the run finished."""
    path = run_dir / "final.parquet"
    if path.exists():
        return path
    test = cap_subsets({k: v for k, v in subsets.items() if k.startswith("test/")}, cfg.final_max)
    specs = final_attacks(cfg, ocfg)
    rows = []
    for ck_name, file in CHECKPOINTS:
        if not (run_dir / file).exists():
            continue
        ck = load_checkpoint(run_dir / file)
        model.load_state_dict(ck["model"])
        acc = ev.subset_accuracy(model, dataset, test, specs, batch_size=cfg.eval_batch_size, device=device,
                                 seed=cfg.seed)
        for key in test:
            for s in specs:
                rows.append({"checkpoint": ck_name, "epoch": int(ck["epoch"]), "subset": key, "attack": s.name,
                             "acc": acc[f"{key}/{s.label}"], "n": int(acc[f"{key}/n"])})
    write_table(path, pd.DataFrame(rows, columns=FINAL_COLUMNS), meta)
    return path
