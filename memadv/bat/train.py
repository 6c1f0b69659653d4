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
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from memadv.bat import evaluate as ev
from memadv.bat import selection
from memadv.config import check_range, config_to_dict, option
from memadv.data.atomic import atomic_path, write_json_atomic
from memadv.data.augment import random_crop_flip
from memadv.data.dataset import Dataset
from memadv.data.registry import DATASETS, load_dataset
from memadv.data.scores import dataset_meta
from memadv.data.tables import read_table, write_table
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError

METHODS = ("erm", "pgd", "trades", "mart", "gairat", "bat")
FINAL_ATTACKS = ("clean", "fgsm", "pgd", "cw", "aa")
CHECKPOINT_VERSION = 1

# --------------------------------------------------------------------------- per-dataset defaults
# ONE table: the value a TrainConfig field takes when it is left unset (None) on the command line or
# in TOML. (The attack radius eps is the objective's: memadv.bat.objectives.DEFAULT_EPS — 8/255
# CIFAR, 4/255 Tiny ImageNet as in the paper, 64/255 for the 8x8 embedded sets.)
#
# field       cifar10, cifar100          tinyimagenet               digits, synthetic-longtail
# net         resnet18 (paper Table 2)   resnet32 (paper Table 3)   mlp (2x256; 8x8 images)
# epochs      160 (paper Sec. 5.1)       160 (paper Sec. 5.1)       30 (laptop scale; PGD-AT on digits
#                                                                   has plateaued by then, objectives.py)
# milestones  80, 120 (paper Sec. 5.1)   80, 120 (paper Sec. 5.1)   15, 23 (the paper's 1/2 and 3/4)
# batch_size  128 (Madry/TRADES code)    128 (same)                 64 (1,437 images -> 23 steps/epoch)
# crop_pad    4 (standard CIFAR recipe)  4 (same)                   0 (measured, PGD-AT 30 epochs, eps 64/255,
#                                                                   test clean / PGD-20 at the last epoch:
#                                                                   pad 1 -> 0.66 / 0.20, pad 0 -> 0.97 / 0.44;
#                                                                   shifting an 8x8 digit on top of the attack
#                                                                   stalls training)
# flip        true (standard recipe)     true (same)                false (mirrored digits change class)
# eval_max    10000 (memadv: PGD-20 on    10000 (same)               none (all 1,437 train + 360 test)
#             all 50k train images each epoch would cost ~2 PGD-10 training epochs; the cap samples
#             10k train ids once per run and keeps the whole 10k test set)
_PAPER = dict(epochs=160, milestones=[80, 120], batch_size=128, crop_pad=4, flip=True, eval_max=10000)
_EMBEDDED = dict(net="mlp", epochs=30, milestones=[15, 23], batch_size=64, crop_pad=0, flip=False, eval_max=None)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10": dict(net="resnet18", **_PAPER),
    "cifar100": dict(net="resnet18", **_PAPER),
    "tinyimagenet": dict(net="resnet32", **_PAPER),
    "digits": dict(_EMBEDDED),
    "synthetic-longtail": dict(_EMBEDDED),
}

# Fields that describe the machine, not the run: they may differ when a run is resumed.
MACHINE_FIELDS = ("device", "data_root", "progress", "eval_batch_size")


@dataclass
class TrainConfig:
    """One training run: the loop, the optimiser, the evaluation. Objective hyper-parameters
    (alpha, beta, tau, sigma, TRADES/MART beta, GAIRAT lambda, attack steps) live in the objective's
    own config (``memadv.bat.objectives``)."""

    # (choices are checked in __post_init__, so a wrong name is a one-line error with exit status 2)
    method: str = option("pgd", "training objective: " + ", ".join(METHODS), source="paper Sec. 5.1")
    dataset: str = option("digits", "dataset name: " + ", ".join(DATASETS))
    data_root: str | None = option(None, "folder holding the dataset files (CIFAR, Tiny ImageNet)")
    net: str | None = option(None, "architecture (default: per-dataset table in memadv.bat.train)")
    epochs: int | None = option(None, "training epochs (default: per-dataset table)", source="paper Sec. 5.1: 160")
    lr: float = option(0.1, "initial SGD learning rate", source="paper Sec. 5.1")
    milestones: list[int] | None = option(None, "epochs after which lr is multiplied by --lr-gamma (default: "
                                          "per-dataset table, scaled to --epochs when that is set)",
                                          source="paper Sec. 5.1: 80 120")
    lr_gamma: float = option(0.1, "learning-rate decay factor at each milestone", source="paper Sec. 5.1")
    momentum: float = option(0.9, "SGD momentum", source="paper App. D")
    weight_decay: float = option(5e-4, "SGD weight decay", source="paper App. D")
    batch_size: int | None = option(None, "mini-batch size (default: per-dataset table)", unit="examples")
    crop_pad: int | None = option(None, "random-crop padding (default: per-dataset table)", unit="pixels")
    flip: bool | None = option(None, "random horizontal flips (default: per-dataset table)")
    seed: int = option(0, "seed of initialisation, data order, augmentation and attacks")
    eval_every: int = option(1, "evaluate every N epochs (and always after the last)", unit="epochs")
    eval_max: int | None = option(None, "evaluate at most this many examples per split each epoch (a fixed "
                                        "random subset; 0 = all; default: per-dataset table, 10000 for CIFAR / "
                                        "Tiny ImageNet, all for the embedded sets)", unit="examples")
    eval_batch_size: int = option(512, "evaluation batch size", unit="examples")
    final_attacks: list[str] = option(list(FINAL_ATTACKS), "attacks of the final evaluation (Table 4)",
                                      source="paper App. D")
    final_max: int | None = option(None, "final evaluation on at most this many test examples (default: all)",
                                   unit="examples")
    scores: str | None = option(None, "memorization scores: a scores/ folder or run folder (mem.parquet)")
    splits: str | None = option(None, "split file (splits.parquet) for typical/atypical evaluation "
                                      "(default: <run>/splits/splits.parquet beside --scores, if present)")
    name: str | None = option(None, "run folder name (default: <method>[-<hyper-parameters>]-seed<seed>)")
    # issue 9 hook: held-out checkpoint selection (memadv.bat.selection, memadv.data.validation)
    val_fraction: float = option(0.0, "hold this share of every class of the training set out of training and "
                                      "select best checkpoints on it too (0 = none: the paper's test-selected "
                                      "protocol only)", unit="fraction of each class",
                                 source="Rice et al. 2020, robust_overfitting generate_validation.py (1,000 ids)")
    val_seed: int = option(0, "seed of the validation slice (one slice for every method and --seed)")
    device: str = option("auto", "torch device: auto (cuda if available), cpu, cuda, cuda:1, mps")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownChoiceError("method", self.method, METHODS)
        if self.dataset not in DATASETS:
            raise UnknownChoiceError("dataset", self.dataset, DATASETS)
        from memadv.nets import NETS
        if self.net is not None and self.net not in NETS:
            raise UnknownChoiceError("net", self.net, NETS)
        if self.epochs is not None:
            check_range("epochs", self.epochs, 1)
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("lr_gamma", self.lr_gamma, 0, 1, lo_open=True)
        check_range("momentum", self.momentum, 0, 1, hi_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        if self.batch_size is not None:
            check_range("batch_size", self.batch_size, 1)
        if self.crop_pad is not None:
            check_range("crop_pad", self.crop_pad, 0)
        check_range("eval_every", self.eval_every, 1)
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, hi_open=True)
        if self.eval_max is not None:
            check_range("eval_max", self.eval_max, 0)
        check_range("eval_batch_size", self.eval_batch_size, 1)
        if self.final_max is not None:
            check_range("final_max", self.final_max, 1)
        for a in self.final_attacks:
            if a not in FINAL_ATTACKS:
                raise UnknownChoiceError("final attack", a, FINAL_ATTACKS)
        if self.milestones is not None:
            self.milestones = [int(m) for m in self.milestones]
            if sorted(self.milestones) != self.milestones or any(m < 1 for m in self.milestones):
                raise ConfigError(f"--milestones must be increasing positive epochs, got {self.milestones}")

    def resolved(self) -> "TrainConfig":
        """A copy with every None that the per-dataset table covers filled in."""
        table = DATASET_DEFAULTS.get(self.dataset, DATASET_DEFAULTS["cifar10"])
        values = {k: (table[k] if getattr(self, k) is None and k in table else getattr(self, k))
                  for k in (f.name for f in dataclasses.fields(self))}
        if self.milestones is None and self.epochs is not None and self.epochs != table["epochs"]:
            # scale the table's milestones (1/2 and 3/4 of the epochs) to the chosen length
            scaled = {max(1, round(self.epochs * m / table["epochs"])) for m in table["milestones"]}
            values["milestones"] = sorted(scaled)
        return TrainConfig(**values)


class NonFiniteLossError(MemadvError):
    """The training loss became NaN or infinite."""


# --------------------------------------------------------------------------- objective and configs

def objective_config_class() -> type:
    from memadv.bat.objectives import ObjectiveConfig
    return ObjectiveConfig


def resolve_objective_config(objective_cfg: Any, dataset: str) -> Any:
    """The objective config with eps / step sizes filled in from the dataset's defaults."""
    if objective_cfg is None:
        objective_cfg = objective_config_class()()
    return objective_cfg.resolve(dataset)


def make_configs(values: dict[str, Any]) -> tuple["TrainConfig", Any]:
    """(TrainConfig, ObjectiveConfig) from one flat dict of options; unknown keys are an error."""
    ocls = objective_config_class()
    tnames = {f.name for f in dataclasses.fields(TrainConfig)}
    onames = {f.name for f in dataclasses.fields(ocls)}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - tnames - onames)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(tnames | onames))}")
    from memadv.config import build_config
    return (build_config(TrainConfig, {k: v for k, v in values.items() if k in tnames}),
            build_config(ocls, {k: v for k, v in values.items() if k in onames}))


def build_objective_for(cfg: TrainConfig, objective_cfg: Any, mem: torch.Tensor | None):
    """The objective of ``cfg.method`` (see :mod:`memadv.bat.objectives`)."""
    from memadv.bat.objectives import build_objective
    return build_objective(cfg.method, objective_cfg, mem=mem, dataset=cfg.dataset)


# --------------------------------------------------------------------------- inputs

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r} is not a torch device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name!r}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def load_mem(scores: str | Path, dataset: Dataset) -> torch.Tensor:
    """Memorization score per training id (NaN where the score file has none); fingerprint checked."""
    from memadv.data.scores import read_scores
    sc = read_scores(scores, dataset, need_infl=False)
    mem = torch.full((dataset.x_train.shape[0],), float("nan"), dtype=torch.float32)
    idx = np.array(sc.mem["idx"].to_numpy(np.int64))
    if idx.size and (idx.min() < 0 or idx.max() >= mem.shape[0]):
        raise ConfigError(f"scores in {scores} name training ids outside 0..{mem.shape[0] - 1} of {dataset.name}")
    mem[torch.from_numpy(idx)] = torch.from_numpy(np.array(sc.mem["mem"].to_numpy(np.float32)))
    return mem


def default_splits_path(scores: str | None) -> Path | None:
    """``<run>/splits/splits.parquet`` beside a ``<run>/scores`` folder (or a run folder), if it exists."""
    if scores is None:
        return None
    p = Path(scores)
    for run in (p.parent, p) if p.name == "scores" else (p, p.parent):
        cand = run / "splits" / "splits.parquet"
        if cand.is_file():
            return cand
    return None


def load_subsets(cfg: TrainConfig, dataset: Dataset) -> dict[str, np.ndarray]:
    """Named evaluation subsets: ``train/all``, ``test/all`` and the split file's sets."""
    subsets: dict[str, np.ndarray] = {"train/all": np.arange(dataset.x_train.shape[0]),
                                      "test/all": np.arange(dataset.x_test.shape[0])}
    if cfg.splits is not None:
        from memadv.data.splits import read_split_sets
        sets = read_split_sets(cfg.splits, dataset)
        for key, ids in sets.items():
            split = key.split("/", 1)[0]
            ids = np.asarray(ids, dtype=np.int64)
            n = dataset.labels(split).shape[0] if split in ("train", "test") else 0
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise ConfigError(f"split file {cfg.splits} names {key} ids outside 0..{n - 1} of {dataset.name}")
            subsets[key] = ids
    return subsets


def cap_subsets(subsets: dict[str, np.ndarray], cap: int | None, seed: int) -> dict[str, np.ndarray]:
    """Keep, per split, only ids in a fixed random sample of ``cap`` ids of the union (None or 0: all)."""
    if not cap:
        return subsets
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        named = {k: v for k, v in subsets.items() if k.startswith(split + "/")}
        if not named:
            continue
        union = np.unique(np.concatenate(list(named.values())))
        keep = union if union.size <= cap else np.sort(np.random.default_rng(seed).choice(union, cap, replace=False))
        for k, v in named.items():
            out[k] = v[np.isin(v, keep)]
    return out


# --------------------------------------------------------------------------- run identity

# objective options that change what a method trains (its run folder name shows them when set)
_ATTACK_FIELDS = ("eps", "step_size", "steps")
RELEVANT_FIELDS: dict[str, tuple[str, ...]] = {
    "erm": (),
    "pgd": _ATTACK_FIELDS,
    "trades": _ATTACK_FIELDS + ("trades_beta",),
    "mart": _ATTACK_FIELDS + ("mart_beta",),
    "gairat": _ATTACK_FIELDS + ("gairat_lambda", "gairat_lambda_max", "gairat_schedule", "gairat_weight",
                                "gairat_burn_in"),
    "bat": _ATTACK_FIELDS + ("alpha", "beta", "sigma", "tau", "normalize_features"),
}


def run_name(cfg: TrainConfig, objective_cfg: Any = None) -> str:
    """``<method>[-<option><value>...]-seed<seed>``: the method's objective options set to something
    other than their defaults (BAT's alpha and beta always), then the seed; ``--name`` overrides."""
    if cfg.name:
        return cfg.name
    parts = [cfg.method]
    if objective_cfg is not None:
        defaults = type(objective_cfg)()
        for name in RELEVANT_FIELDS[cfg.method]:
            v = getattr(objective_cfg, name)
            if (cfg.method == "bat" and name in ("alpha", "beta")) or v != getattr(defaults, name):
                parts.append(f"{name.replace('_', '')}{_fmt(v)}")
    if cfg.val_fraction > 0:  # issue 9 hook: a run with a validation slice trains on other data
        parts.append(f"val{_fmt(cfg.val_fraction)}")
    parts.append(f"seed{cfg.seed}")
    return "-".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "_".join(_fmt(x) for x in v)
    return str(v)


def full_config(cfg: TrainConfig, objective_cfg: Any) -> dict[str, Any]:
    return {"train": config_to_dict(cfg), "objective": config_to_dict(objective_cfg)}


def _comparable(conf: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in conf.get("train", {}).items() if k not in MACHINE_FIELDS}
    return {"train": train, "objective": conf.get("objective", {})}


def check_same_config(run_dir: Path, conf: dict[str, Any]) -> None:
    path = run_dir / "config.json"
    old = json.loads(path.read_text())
    a, b = _comparable(old), _comparable(json.loads(json.dumps(conf, default=str)))
    if a != b:
        diffs = [f"{sec}.{k}: {a[sec].get(k)!r} -> {b[sec].get(k)!r}"
                 for sec in ("train", "objective") for k in sorted(set(a[sec]) | set(b[sec]))
                 if a[sec].get(k) != b[sec].get(k)]
        raise ConfigError(f"{run_dir} holds a run with another configuration ({'; '.join(diffs)}); "
                          f"re-run with its options to resume, or choose another --out or --name")


# --------------------------------------------------------------------------- RNG and checkpoints

def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global RNGs (and numpy's, python's) for this epoch; return the data generator."""
    s = epoch_seed(seed, epoch)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)
    return torch.Generator().manual_seed(s)


def rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])],
            "python": random.getstate(),
            "data": data_gen.get_state()}


def set_rng_state(state: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    data_gen.set_state(state["data"])


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise MemadvError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}; delete it to start over") from None


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


def epoch_attacks(ocfg: Any) -> list[ev.AttackSpec]:
    """The per-epoch evaluation: clean accuracy and PGD-20 ("adv") at the objective's eps."""
    return [ev.AttackSpec("clean", label="clean"),
            ev.AttackSpec("pgd", ocfg.eps, ocfg.eval_step_size, ocfg.eval_steps, label="adv")]


def final_attacks(cfg: TrainConfig, ocfg: Any) -> list[ev.AttackSpec]:
    specs = ev.paper_attacks(ocfg.eps, ocfg.eval_step_size, ocfg.eval_steps, cw_confidence=ocfg.cw_confidence,
                             cw_steps=ocfg.cw_steps, cw_step_size=ocfg.cw_step_size)  # issue 9: reference CW
    return [s for s in specs if s.name in cfg.final_attacks]


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    write_table(run_dir / "metrics.parquet", pd.DataFrame(rows), meta)


def prepare(cfg: TrainConfig, objective_cfg: Any = None, dataset: Dataset | None = None
            ) -> tuple[TrainConfig, Any, Dataset, torch.Tensor | None, dict[str, np.ndarray]]:
    """Resolve the configs and load + check every input (dataset, scores, splits) before any file is written."""
    cfg = cfg.resolved()
    ocfg = resolve_objective_config(objective_cfg, cfg.dataset)
    if dataset is None:
        dataset = load_dataset(cfg.dataset, cfg.data_root)
    elif dataset.name != cfg.dataset:
        raise ConfigError(f"dataset passed in is {dataset.name!r}, the config says {cfg.dataset!r}")
    if cfg.splits is None and cfg.scores is not None:
        found = default_splits_path(cfg.scores)
        if found is not None:
            cfg = dataclasses.replace(cfg, splits=str(found))
    mem = load_mem(cfg.scores, dataset) if cfg.scores is not None else None
    if cfg.method == "bat" and mem is None:
        raise ConfigError("--method bat needs memorization scores: pass --scores (a scores/ folder with mem.parquet)")
    subsets = load_subsets(cfg, dataset)
    subsets = selection.with_validation(subsets, dataset, cfg.val_fraction, cfg.val_seed)  # issue 9 hook
    return cfg, ocfg, dataset, mem, subsets


def train(cfg: TrainConfig, out_dir: str | Path, objective_cfg: Any = None, *,
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
    name = run_name(cfg, objective_cfg if objective_cfg is not None else objective_config_class()())
    cfg, ocfg, dataset, mem, subsets = prepare(cfg, objective_cfg, dataset)
    device = resolve_device(cfg.device)
    run_dir = Path(out_dir) / name
    conf = full_config(cfg, ocfg)
    if (run_dir / "config.json").exists():
        check_same_config(run_dir, conf)
        if (run_dir / "final.parquet").exists():
            return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", conf)
    meta = {**dataset_meta(dataset), "run": name, "method": cfg.method, "config": conf}
    train_ids = selection.training_ids(run_dir, subsets, dataset, meta)  # issue 9 hook: checks the slice on resume

    torch.manual_seed(cfg.seed)
    from memadv.nets import build_net
    model = build_net(cfg.net, dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std).to(device)
    objective = build_objective_for(cfg, ocfg, mem.to(device) if mem is not None else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    rows: list[dict[str, Any]] = []
    best: dict[str, tuple[float, int]] = {kind: (-1.0, 0) for kind in selection.best_kinds(subsets)}
    start_epoch = 1
    data_gen = torch.Generator()
    last = run_dir / "last.pt"
    if last.exists():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        rows = list(ck["metrics"])
        best.update({k: (float(v[0]), int(v[1])) for k, v in ck["best"].items()})
        start_epoch = int(ck["epoch"]) + 1
        set_rng_state(ck["rng"], data_gen)
        _write_metrics(run_dir, rows, meta)  # drops a row whose epoch's checkpoint never landed

    eval_subsets = cap_subsets(subsets, cfg.eval_max, cfg.seed)
    if selection.VAL_KEY in subsets:  # issue 9 hook: the whole validation slice, never capped
        eval_subsets[selection.VAL_KEY] = subsets[selection.VAL_KEY]
    specs = epoch_attacks(ocfg)
    epochs: Any = range(start_epoch, cfg.epochs + 1)
    if cfg.progress:
        from tqdm import tqdm
        epochs = tqdm(epochs, desc=name, initial=start_epoch - 1, total=cfg.epochs, unit="epoch")
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
            rows.append(row)
            for kind in best:
                value = acc[selection.SELECTION_COLUMN[f"best_{kind}"]]
                if value > best[kind][0]:
                    best[kind] = (value, epoch)
                    save_checkpoint(run_dir / f"best_{kind}.pt",
                                    {"model": model.state_dict(), "epoch": epoch, "metrics": row, "config": conf,
                                     "version": CHECKPOINT_VERSION})
            if cfg.progress and hasattr(epochs, "set_postfix"):
                epochs.set_postfix(clean=f"{acc['test/all/clean']:.3f}", adv=f"{acc['test/all/adv']:.3f}")
        save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "epoch": epoch, "config": conf,
                               "rng": rng_state(data_gen), "metrics": rows, "best": best,
                               "version": CHECKPOINT_VERSION})
        _write_metrics(run_dir, rows, meta)

    final_evaluation(run_dir, model, dataset, subsets, cfg, ocfg, meta, device)
    return run_dir


# --------------------------------------------------------------------------- final evaluation (Table 4)

FINAL_COLUMNS = ["checkpoint", "epoch", "subset", "attack", "acc", "n"]
CHECKPOINTS = tuple(selection.CHECKPOINT_FILES.items())  # last, best_adv, best_clean, best_val_adv, best_val_clean


def final_evaluation(run_dir: Path, model, dataset: Dataset, subsets: dict[str, np.ndarray], cfg: TrainConfig,
                     ocfg: Any, meta: dict[str, Any], device: torch.device) -> Path:
    """``final.parquet``: every final attack on the test subsets (capped at ``final_max`` examples)
    for the last, best-adv and best-clean weights. Written once; its presence marks the run finished."""
    path = run_dir / "final.parquet"
    if path.exists():
        return path
    test = cap_subsets({k: v for k, v in subsets.items() if k.startswith("test/")}, cfg.final_max, cfg.seed)
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


# --------------------------------------------------------------------------- reading runs back

def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    df, _ = read_table(Path(run_dir) / "metrics.parquet", required=["epoch"])
    return df


def read_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise MemadvError(f"{run_dir} has no config.json; it is not a training run folder")
    return json.loads(path.read_text())
