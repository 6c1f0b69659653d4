"""The files of one training run (``<out>/<run name>/``): its name, its configuration check on
resume, the RNG state and checkpoints that make a resumed run identical to an uninterrupted one,
and the readers of a finished run (see :mod:`memadv.bat.train` for the list of files).

Checkpoints are written atomically (:func:`memadv.files.atomic.atomic_path`) and read to CPU.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from memadv.bat import selection
from memadv.bat.methods import method
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.train_config import MACHINE_FIELDS, TrainConfig
from memadv.config import config_to_dict
from memadv.safe_values import check_path_component
from memadv.files.atomic import atomic_path
from memadv.data.dataset import Dataset
from memadv.data.registry import DATASET_OPTION_NAMES
from memadv.files.tables import read_table
from memadv.files.weights_only import load_weights_only
from memadv.errors import ConfigError, MemadvError, SchemaError
from memadv.layout import RunLayout
from memadv.nets import build_net

CHECKPOINT_VERSION = 1
FINAL_COLUMNS = ["checkpoint", "epoch", "subset", "attack", "acc", "n"]
# atypical_test.parquet's second subset: every test image outside D'_atyp (C4 is decided on it: it has headroom)
OUTSIDE_ATYPICAL = "test/outside-atypical"
DEFAULT_LR = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "lr")
CHECKPOINTS = tuple(selection.CHECKPOINT_FILES.items())  # last, best_adv, best_clean, best_val_adv, best_val_clean


# --------------------------------------------------------------------------- run identity



def run_name(cfg: TrainConfig, objective_cfg: ObjectiveConfig | None = None) -> str:
    """``<method>[-<option><value>...]-seed<seed>``: the method's objective options set to something
    other than their defaults (BAT's alpha and beta always), then the seed; ``--name`` overrides."""
    if cfg.name:
        return check_path_component("--name", cfg.name)  # a folder under --out: never a path out of it
    parts = [cfg.method]
    if objective_cfg is not None:
        defaults = type(objective_cfg)()
        for name in method(cfg.method).run_name_fields:
            v = getattr(objective_cfg, name)
            if (cfg.method == "bat" and name in ("alpha", "beta")) or v != getattr(defaults, name):
                parts.append(f"{name.replace('_', '')}{_fmt(v)}")
    if cfg.lr != DEFAULT_LR:  # another learning rate is another run (a grid's runs sit side by side)
        parts.append(f"lr{_fmt(cfg.lr)}")
    if cfg.val_fraction > 0:  # a run with a validation slice trains on other data
        parts.append(f"val{_fmt(cfg.val_fraction)}")
    parts.append(f"seed{cfg.seed}")
    return "-".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "_".join(_fmt(x) for x in v)
    return str(v)


def full_config(cfg: TrainConfig, objective_cfg: ObjectiveConfig) -> dict[str, Any]:
    return {"train": config_to_dict(cfg), "objective": config_to_dict(objective_cfg)}


def _comparable(conf: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in conf.get("train", {}).items() if k not in MACHINE_FIELDS}
    for key in DATASET_OPTION_NAMES:  # unset = absent: runs made before these options existed still resume
        if train.get(key) is None:
            train.pop(key, None)
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


def loop_rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG the training loop draws from (torch CPU/CUDA, numpy, python, the epoch's data
    generator), for ``last.pt``; not memadv.estimate.checkpoints' device state of a shard."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])],
            "python": random.getstate(),
            "data": data_gen.get_state()}


def restore_loop_rng(state: dict[str, Any], data_gen: torch.Generator) -> None:
    """Inverse of :func:`loop_rng_state`."""
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


# The keys every checkpoint holds (best_*.pt and last.pt), and the ones a resume needs from last.pt.
CHECKPOINT_KEYS = ("model", "epoch")
RESUME_KEYS = CHECKPOINT_KEYS + ("optimizer", "scheduler", "metrics", "best", "rng")


def load_checkpoint(path: Path, required: tuple[str, ...] = CHECKPOINT_KEYS) -> dict[str, Any]:
    """A checkpoint loaded to CPU. ``weights_only=True``: a run folder may come from elsewhere, and
    unpickling it could run code; memadv's checkpoints hold only tensors, numbers, strings and
    containers (RNG states included). Raises MemadvError (one line) for a truncated, foreign or unsafe
    file, or one that lacks any of the ``required`` keys."""
    try:
        ck = load_weights_only(path)
    except SchemaError as e:  # a truncated or foreign file, or one that needs unpickling of code
        raise MemadvError(f"cannot read checkpoint {path}: {e}; delete it to start over") from None
    missing = [k for k in required if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise MemadvError(f"checkpoint {path} lacks keys {missing} (not a memadv checkpoint of this version); "
                          f"delete it to start over")
    return ck


# --------------------------------------------------------------------------- reading runs back

def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    df, _ = read_table(Path(run_dir) / "metrics.parquet", required=["epoch"])
    return df


def read_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise MemadvError(f"{run_dir} has no config.json; it is not a training run folder")
    return json.loads(path.read_text())


class TrainingRun:
    """One training run folder, read back: the one reader of a run's files for every other module
    (status, tables, figures). ``folder`` need not exist; the readers raise
    :class:`memadv.errors.MemadvError` / :class:`memadv.errors.SchemaError` for missing or malformed files."""

    CONFIG, METRICS, FINAL, LAST = "config.json", "metrics.parquet", "final.parquet", "last.pt"
    # Section 3.2 runs only: the last weights on all of D'_atyp, a test set the run does not evaluate
    # itself (its test split is D'_typ); written after the run by memadv.experiments.sec3
    ATYPICAL_TEST = "atypical_test.parquet"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def final_path(self) -> Path:
        return self.folder / self.FINAL

    @property
    def atypical_test_path(self) -> Path:
        return self.folder / self.ATYPICAL_TEST

    def atypical_test(self) -> pd.DataFrame | None:
        """Rows of ``atypical_test.parquet`` (columns :data:`FINAL_COLUMNS`), None when not written."""
        if not self.atypical_test_path.is_file():
            return None
        df, _ = read_table(self.atypical_test_path, required=FINAL_COLUMNS)
        return df

    def has_config(self) -> bool:
        return (self.folder / self.CONFIG).is_file()

    def has_metrics(self) -> bool:
        return (self.folder / self.METRICS).is_file()

    def is_finished(self) -> bool:
        """``final.parquet`` is written once, after the last epoch: its presence marks the run finished."""
        return self.final_path.is_file()

    def config(self) -> dict[str, Any]:
        """``{"train": {...}, "objective": {...}}`` as the run resolved them (config.json)."""
        return read_config(self.folder)

    def metrics(self) -> pd.DataFrame:
        """One row per evaluated epoch (metrics.parquet), in epoch order, index 0..n-1."""
        return read_metrics(self.folder).sort_values("epoch").reset_index(drop=True)

    def objective_config(self) -> ObjectiveConfig:
        """The :class:`ObjectiveConfig` the run trained with (config.json's ``objective``; keys this
        version does not know are left out, so runs written by an older memadv still read)."""
        names = {f.name for f in dataclasses.fields(ObjectiveConfig)}
        return ObjectiveConfig(**{k: v for k, v in self.config().get("objective", {}).items() if k in names})

    def final(self) -> pd.DataFrame:
        """Final evaluation rows (final.parquet; columns :data:`FINAL_COLUMNS`)."""
        df, _ = read_table(self.final_path, required=FINAL_COLUMNS)
        return df

    def has_checkpoint(self, file: str = LAST) -> bool:
        return (self.folder / file).is_file()

    def checkpoint(self, file: str = LAST) -> dict[str, Any]:
        """A checkpoint of the run (``last.pt``, ``best_adv.pt``, ``best_clean.pt``), loaded to CPU."""
        return load_checkpoint(self.folder / file)

    def load_model(self, dataset: Dataset, file: str = LAST) -> tuple[torch.nn.Module, int]:
        """(the run's net with the weights of checkpoint ``file``, in eval mode; that checkpoint's epoch).
        ``dataset`` gives the classes, image shape and normalisation the net was built with."""
        ck = self.checkpoint(file)
        torch.manual_seed(0)  # building the net draws throw-away initial weights; keep that draw fixed
        model = build_net(self.config()["train"]["net"], dataset.num_classes, dataset.image_shape, dataset.mean,
                          dataset.std)
        model.load_state_dict(ck["model"])
        return model.eval(), int(ck["epoch"])


def find_training_runs(path: str | Path) -> list[TrainingRun]:
    """The training runs at ``path``, sorted by name: ``path`` itself when it is a run folder (holds
    config.json), else every sub-folder holding config.json of ``path/train`` (a ``RUN`` folder) or,
    without one, of ``path`` (a train folder). Hidden folders (``.sweep``) are skipped; a missing
    ``path`` gives ``[]``. Runs that have not evaluated an epoch yet are included (see ``has_metrics``)."""
    path = Path(path)
    if TrainingRun(path).has_config():
        return [TrainingRun(path)]
    base = RunLayout(path).table_train if RunLayout(path).table_train.is_dir() else path
    if not base.is_dir():
        return []
    return [TrainingRun(p) for p in sorted(base.iterdir())
            if p.is_dir() and not p.name.startswith(".") and TrainingRun(p).has_config()]
