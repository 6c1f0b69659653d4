"""Configuration of one adversarial training run: :class:`TrainConfig`, its per-dataset defaults
and the objective config that goes with it.

The objective's hyper-parameters (BAT's alpha, beta, tau, sigma; TRADES/MART beta; GAIRAT lambda;
the attack's eps, step size and steps) are :class:`memadv.bat.objectives.ObjectiveConfig`; a run
is the pair ``(TrainConfig, ObjectiveConfig)`` (:func:`make_configs` builds both from one flat dict
of options, as a sweep file or the command line gives them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from memadv.bat.evaluate import ATTACK_NAMES
from memadv.bat.methods import METHODS
from memadv.bat.objective_config import ObjectiveConfig
from memadv.config import SEED_MAX, SEED_MIN, build_config, check_range, fill_per_dataset, option
from memadv.data.registry import DATASETS, OWN_DATA_HELP, OWN_DATASETS, announce_defaults, defaults_name
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError

FINAL_ATTACKS = ATTACK_NAMES  # the final evaluation may run every attack memadv.bat.evaluate knows

# --------------------------------------------------------------------------- per-dataset defaults
# ONE table: the value a TrainConfig field takes when it is left unset (None) on the command line or
# in TOML. (The attack radius eps is the objective's: memadv.bat.objective_config.DEFAULT_EPS — 8/255
# CIFAR, 4/255 Tiny ImageNet as in the paper, 64/255 for the 8x8 embedded sets.)
#
# field       cifar10, cifar100          tinyimagenet               digits, synthetic-longtail
# net         resnet18 (paper Table 2)   resnet32 (paper Table 3)   mlp (one hidden layer, 256 units)
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
# fashion-mnist, mnist (28x28 grey, 60k/10k): the estimator's net (mlp, see memadv.estimate.config),
# batch 128 as the Madry/TRADES MNIST code, no crop/flip (the estimator's models see no augmentation
# either, and a flipped digit changes class), the embedded sets' 30-epoch schedule, and the CIFAR cap
# of 10,000 evaluation examples per split (60k train images would make PGD-20 per epoch dominate).
_MNIST_LIKE = dict(net="mlp", epochs=30, milestones=[15, 23], batch_size=128, crop_pad=0, flip=False, eval_max=10000)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10": dict(net="resnet18", **_PAPER),
    "cifar100": dict(net="resnet18", **_PAPER),
    "tinyimagenet": dict(net="resnet32", **_PAPER),
    "digits": dict(_EMBEDDED),
    "synthetic-longtail": dict(_EMBEDDED),
    "fashion-mnist": dict(_MNIST_LIKE),
    "mnist": dict(_MNIST_LIKE),
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
    data_root: str | None = option(None, "folder holding the dataset files (CIFAR, Tiny ImageNet, "
                                 "MNIST; fashion-mnist defaults to /usr/share/datasets/fashion-mnist)")
    # data-set options (memadv.data.registry.dataset_options); with --scores they default to, and must
    # equal, the ones the scores were made with
    classes: int | None = option(None, "tinyimagenet only: keep the first N classes (default with --scores: "
                                 "as the scores)", source="paper Sec. 5.1 uses 50")
    per_class: int | None = option(None, "keep the first N training examples of each class (default with "
                                   "--scores: as the scores; unset = all)", unit="examples per class")
    test_per_class: int | None = option(None, "keep the first N test examples of each class (default with "
                                        "--scores: as the scores; unset = all)", unit="examples per class")
    image_size: list[int] | None = option(None, OWN_DATA_HELP["image_size"] + " (default with --scores: as the scores)",
                                          unit="pixels (H W)")
    image_column: str | None = option(None, OWN_DATA_HELP["image_column"])
    label_column: str | None = option(None, OWN_DATA_HELP["label_column"])
    array_layout: str | None = option(None, OWN_DATA_HELP["array_layout"])
    net: str | None = option(None, "architecture", per_dataset=DATASET_DEFAULTS)
    epochs: int | None = option(None, "training epochs", source="paper Sec. 5.1: 160", per_dataset=DATASET_DEFAULTS)
    lr: float = option(0.1, "initial SGD learning rate", source="paper Sec. 5.1")
    milestones: list[int] | None = option(None, "epochs after which lr is multiplied by --lr-gamma, scaled to "
                                          "--epochs when that is set", source="paper Sec. 5.1: 80 120",
                                          per_dataset=DATASET_DEFAULTS)
    lr_gamma: float = option(0.1, "learning-rate decay factor at each milestone", source="paper Sec. 5.1")
    momentum: float = option(0.9, "SGD momentum", source="paper App. D")
    weight_decay: float = option(5e-4, "SGD weight decay", source="paper App. D")
    batch_size: int | None = option(None, "mini-batch size", unit="examples", per_dataset=DATASET_DEFAULTS)
    crop_pad: int | None = option(None, "random-crop padding", unit="pixels", per_dataset=DATASET_DEFAULTS)
    flip: bool | None = option(None, "random horizontal flips", per_dataset=DATASET_DEFAULTS)
    seed: int = option(0, "seed of initialisation, data order, augmentation and attacks", minimum=SEED_MIN,
                       maximum=SEED_MAX)
    eval_every: int = option(1, "evaluate every N epochs (and always after the last)", unit="epochs")
    eval_max: int | None = option(None, "evaluate at most this many examples per split each epoch (one fixed "
                                        "random subset, the same for every seed and method; 0 or unset = all)", unit="examples",
                                 per_dataset=DATASET_DEFAULTS)
    eval_batch_size: int = option(512, "evaluation batch size", unit="examples")
    final_attacks: list[str] = option(list(FINAL_ATTACKS), "attacks of the final evaluation (Table 4)",
                                      source="paper App. D")
    final_max: int | None = option(None, "final evaluation on at most this many test examples (one fixed random "
                                   "subset, the same for every seed and method; default: all)",
                                   unit="examples")
    scores: str | None = option(None, "memorization scores: a scores/ folder or run folder (mem.parquet)")
    splits: str | None = option(None, "split file (splits.parquet) for typical/atypical evaluation "
                                      "(default: <run>/splits/splits.parquet beside --scores, if present)")
    name: str | None = option(None, "run folder name (default: <method>[-<hyper-parameters>]-seed<seed>)")
    # held-out checkpoint selection (memadv.bat.selection, memadv.data.validation)
    val_fraction: float = option(0.0, "hold this share of every class of the training set out of training and "
                                      "select best checkpoints on it too (0 = none: the paper's test-selected "
                                      "protocol only)", unit="fraction of each class",
                                 source="Rice et al. 2020, robust_overfitting generate_validation.py (1,000 ids)")
    val_seed: int = option(0, "seed of the validation slice (one slice for every method and --seed)",
                           minimum=SEED_MIN, maximum=SEED_MAX)
    device: str = option("auto", "torch device: auto (cuda if available), cpu, cuda, cuda:1, mps",
                         device=("auto",))
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
        for key in ("classes", "per_class", "test_per_class"):
            if getattr(self, key) is not None:
                check_range(key, getattr(self, key), 1)
        self.dataset_options()  # refuses --classes for a data set other than tinyimagenet
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
        # per-dataset defaults, the one convention (memadv.config.fill_per_dataset): a config that knows
        # its data set is complete once built
        unset = [f.name for f in dataclasses.fields(self)
                 if f.metadata.get("per_dataset") is not None and getattr(self, f.name) is None]
        # a user's own data set takes the defaults of the built-in set of its image shape
        like = defaults_name(self.dataset, *self._where_the_data_is()) if unset else self.dataset
        table = DATASET_DEFAULTS.get(like, {})  # empty only for an own data set with every default given
        if table and self.milestones is None and self.epochs is not None and self.epochs != table["epochs"]:
            # scale the table's milestones (1/2 and 3/4 of the epochs) to the chosen length
            self.milestones = sorted({max(1, round(self.epochs * m / table["epochs"])) for m in table["milestones"]})
        fill_per_dataset(self, like)
        announce_defaults(self.dataset, like, {k: getattr(self, k) for k in unset})

    def _where_the_data_is(self) -> tuple[str | None, dict[str, Any]]:
        """(data_root, data-set options) of what the run will load: the ones given, and with
        ``scores`` the estimate's for each one not given (memadv.bat.inputs.with_scores_dataset
        fills the same in later). An own data set's defaults need its images, and images of mixed
        sizes load only with the ``image_size`` the scores were made with."""
        options = self.dataset_options()
        if self.scores is None or self.dataset not in OWN_DATASETS:
            return self.data_root, options
        from memadv.data.registry import options_from_meta
        from memadv.scores.schema import read_scores_meta
        try:
            meta = read_scores_meta(self.scores)
        except MemadvError:
            # scores not written yet (a pipeline builds its configs before its estimate runs) or
            # damaged: the options given decide here, and prepare() reports a damaged file
            return self.data_root, options
        spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
        data_root = self.data_root if self.data_root is not None else spec.get("data_root")
        return data_root, {**options_from_meta(meta), **options}

    def dataset_options(self) -> dict[str, Any]:
        """Keyword options of :func:`memadv.data.registry.load_dataset` (the set ones); ConfigError
        for one that does not apply to the data set."""
        from memadv.data.registry import dataset_options
        return dataset_options(self.dataset, classes=self.classes, per_class=self.per_class,
                               test_per_class=self.test_per_class, image_size=self.image_size,
                               image_column=self.image_column, label_column=self.label_column,
                               array_layout=self.array_layout)



def make_configs(values: dict[str, Any]) -> tuple[TrainConfig, ObjectiveConfig]:
    """(TrainConfig, ObjectiveConfig) from one flat dict of options; unknown keys are an error."""
    ocls = ObjectiveConfig
    tnames = {f.name for f in dataclasses.fields(TrainConfig)}
    onames = {f.name for f in dataclasses.fields(ocls)}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - tnames - onames)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(tnames | onames))}")
    return (build_config(TrainConfig, {k: v for k, v in values.items() if k in tnames}),
            build_config(ocls, {k: v for k, v in values.items() if k in onames}))
