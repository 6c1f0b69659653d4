"""Configuration of the subset-sampling estimator, with per-dataset defaults in one table.

Sources of the defaults:
* subset ratio 0.7 and the number of models: Feldman & Zhang 2020 ("What neural networks
  memorize and why"), Sec. 3: 70% subsets; 2,000 models for ImageNet, 4,000 for CIFAR-100.
* CIFAR / Tiny ImageNet training recipe: the paper's Appendix D (SGD, lr 0.1, momentum 0.9,
  weight decay 5e-4, lr x0.1 at 50% and 75% of the epochs: its 160/80/120 schedule); nets as in
  the paper's Sec. 5 (ResNet-18 for CIFAR, ResNet-32 for Tiny ImageNet).
* fashion-mnist / mnist: the 784-256-10 MLP of the embedded sets, packed 16 per shard (measured
  on a GPU: 0.7 s per model-epoch on 42,000 examples); batch 128 as the Madry/TRADES MNIST
  code; no augmentation (28x28 grey images are centred, a flipped shoe is still a shoe but a
  flipped digit is not, so neither set flips). Epochs 60: the fewest of 10/25/40/60 whose models
  fit their 70% subsets to >= 99% mean training accuracy on Fashion-MNIST --per-class 1000 (99.7%;
  40 epochs: 98.9%, 25: 97.1%; docs/estimator.md, "Fashion-MNIST"). MNIST (unmeasured) shares them.
  ``--per-class N`` keeps the first N training examples of each class (a real run on a small
  machine); the test split keeps all 10,000 unless ``--test-per-class`` is given.
* digits / synthetic-longtail: chosen here so that 2,000 models train in a few minutes on two CPU
  cores while each model still fits (nearly) all of its training subset — the estimator needs
  models that memorize (measured in docs/estimator.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dataclasses

from memadv.config import SEED_MAX, SEED_MIN, check_range, fill_per_dataset, option
from memadv.data.registry import DATASETS, OWN_DATA_HELP, announce_defaults, dataset_options, defaults_name
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.nets.registry import NETS
from memadv.paper_thresholds import INFL_ATYPICAL

# The most models one estimate may plan. The run lists (and stats) every shard before training, so an
# absurd --models (2**62) would hang there with nothing written to say why; a million is 250x Feldman &
# Zhang's largest run (4,000 models, CIFAR-100) and lists in seconds.
MAX_MODELS = 1_000_000

PACKINGS = ("auto", "packed", "one-by-one")

# dataset -> defaults for every field left as None in EstimateConfig.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    #                     net         models  per shard  epochs  lr     batch  augment
    "digits":             dict(net="mlp", models=2000, models_per_shard=100, epochs=25, lr=0.05, batch_size=64, augment=False),
    "synthetic-longtail": dict(net="mlp", models=2000, models_per_shard=100, epochs=25, lr=0.05, batch_size=64, augment=False),
    "cifar10":            dict(net="resnet18", models=4000, models_per_shard=8, epochs=160, lr=0.1, batch_size=128, augment=True),
    "cifar100":           dict(net="resnet18", models=4000, models_per_shard=8, epochs=160, lr=0.1, batch_size=128, augment=True),
    "tinyimagenet":       dict(net="resnet32", models=2000, models_per_shard=8, epochs=160, lr=0.1, batch_size=128, augment=True),
    "fashion-mnist":      dict(net="mlp", models=2000, models_per_shard=16, epochs=60, lr=0.05, batch_size=128, augment=False),
    "mnist":              dict(net="mlp", models=2000, models_per_shard=16, epochs=60, lr=0.05, batch_size=128, augment=False),
}


@dataclass
class EstimateConfig:
    dataset: str = option("digits", "dataset to estimate", choices=tuple(DATASETS))
    data_root: str | None = option(None, "folder holding the dataset files (torchvision layouts; fashion-mnist/mnist: "
                                 "FashionMNIST/raw, MNIST/raw or the four IDX files flat); not needed for "
                                 "digits/synthetic-longtail; fashion-mnist defaults to /usr/share/datasets/fashion-mnist "
                                 "(apt-get install dataset-fashion-mnist)")
    classes: int | None = option(None, "tinyimagenet only: keep the first N classes", source="paper Sec. 5.1 uses 50")
    per_class: int | None = option(None, "keep the first N training examples of each class in canonical order "
                                   "(ids stay the original positions; the fingerprint covers the choice); unset = all",
                                   unit="examples per class")
    test_per_class: int | None = option(None, "keep the first N test examples of each class; unset = all (test "
                                        "examples cost one forward pass per model, so keeping all is cheap)",
                                        unit="examples per class")
    image_size: list[int] | None = option(None, OWN_DATA_HELP["image_size"], unit="pixels (H W)")
    image_column: str | None = option(None, OWN_DATA_HELP["image_column"])
    label_column: str | None = option(None, OWN_DATA_HELP["label_column"])
    array_layout: str | None = option(None, OWN_DATA_HELP["array_layout"])
    net: str | None = option(None, "architecture", choices=tuple(NETS), per_dataset=DATASET_DEFAULTS)
    models: int | None = option(None, "number of models M", unit="models", source="Feldman & Zhang: 4000 CIFAR-100, 2000 ImageNet",
                                 per_dataset=DATASET_DEFAULTS)
    models_per_shard: int | None = option(None, "models trained together (packed) in one shard = one task", unit="models",
                                           per_dataset=DATASET_DEFAULTS)
    subset_ratio: float = option(0.7, "fraction of the training set in each model's subset", source="Feldman & Zhang 2020")
    epochs: int | None = option(None, "training epochs per model", unit="epochs", per_dataset=DATASET_DEFAULTS)
    lr: float | None = option(None, "initial SGD learning rate; x0.1 at each of --lr-milestones", source="paper App. D",
                              per_dataset=DATASET_DEFAULTS)
    batch_size: int | None = option(None, "mini-batch size per model", unit="examples", per_dataset=DATASET_DEFAULTS)
    lr_milestones: list[float] = option([0.5, 0.75], "the learning rate is multiplied by 0.1 at each of these "
                                        "fractions of the epochs", unit="fraction of --epochs",
                                        source="the paper's 80/120 of 160 epochs (App. D; He et al. 2016's CIFAR schedule)")
    momentum: float = option(0.9, "SGD momentum", source="paper App. D")
    weight_decay: float = option(5e-4, "SGD weight decay", source="paper App. D")
    augment: bool | None = option(None, "random crop (pad 4) + horizontal flip", per_dataset=DATASET_DEFAULTS)
    seed: int = option(0, "run seed; model m's subset, init and batch order derive from (seed, m)",
                       minimum=SEED_MIN, maximum=SEED_MAX)
    cross_class_threshold: float = option(INFL_ATYPICAL, "also keep cross-class (train, test) pairs with |infl| >= this in infl.parquet")
    device: str = option("cpu", "torch device for training, e.g. cpu, cuda, cuda:1", device=True)
    packing: str = option("auto", "how a shard's models train: packed (all at once), one-by-one (plain nn.Module "
                          "each) or auto (the faster one measured for the net and device, docs/benchmarks.md); "
                          "results are the same up to float summation order", choices=PACKINGS)
    bf16: bool = option(False, "bfloat16 autocast for forward/backward (weights and SGD stay float32); "
                        "for CUDA, off by default, not faster on CPU",
                        source="PyTorch automatic mixed precision, torch.autocast")
    channels_last: bool = option(False, "channels-last memory format for conv nets trained one by one; for CUDA "
                                 "tensor cores, off by default",
                                 source="PyTorch memory-format tutorial (channels_last)")
    # not in IDENTITY: logging changes no model (memadv.estimate.proxy_log), so a run may switch it
    proxies: bool = option(True, "log free proxies of mem while training (cumulative training loss, forgetting "
                                 "events, first epoch learned, held-out loss) and aggregate them to "
                                 "scores/proxies.parquet; no extra pass over the data",
                           source="Ravikumar et al. ICML 2025; Toneva et al. ICLR 2019; Jiang et al. ICML 2021")
    # ERM on all of D for the typical-test rule (memadv.estimate.full_models); not in IDENTITY: a finished
    # estimate may add them later
    full_models: int = option(30, "also train this many models on the whole training set for the typical-test "
                                  "rule (paper Sec. 3.2: 'ERM trained on D'); 0 = none", unit="models",
                              source="memadv: 30 gives the 80% rule a resolution of 1/30")

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise UnknownChoiceError("dataset", self.dataset, DATASETS)
        unset = [f.name for f in dataclasses.fields(self)
                 if f.metadata.get("per_dataset") is not None and getattr(self, f.name) is None]
        # the one convention (memadv.config, docs/architecture.md); a user's own data set takes the
        # defaults of the built-in set of its image shape
        like = defaults_name(self.dataset, self.data_root, self.dataset_options()) if unset else self.dataset
        fill_per_dataset(self, like)
        announce_defaults(self.dataset, like, {k: getattr(self, k) for k in unset})
        if self.net not in NETS:
            raise UnknownChoiceError("net", self.net, NETS)
        if self.packing not in PACKINGS:
            raise UnknownChoiceError("packing", self.packing, PACKINGS)
        check_range("subset_ratio", self.subset_ratio, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("models", self.models, 2, MAX_MODELS)
        check_range("models_per_shard", self.models_per_shard, 1, MAX_MODELS)
        check_range("epochs", self.epochs, 1)
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("batch_size", self.batch_size, 1)
        for f in self.lr_milestones:
            check_range("lr_milestones", f, 0.0, 1.0, lo_open=True, hi_open=True)
        if any(b <= a for a, b in zip(self.lr_milestones, self.lr_milestones[1:])):
            raise ConfigError(f"--lr-milestones must be increasing, got {self.lr_milestones}")
        check_range("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("cross_class_threshold", self.cross_class_threshold, 0.0, 1.0)
        check_range("full_models", self.full_models, 0, MAX_MODELS)
        if self.classes is not None:
            check_range("classes", self.classes, 2)
        self.dataset_options()  # refuses an option that does not apply to the data set (never recorded)
        if self.per_class is not None:
            check_range("per_class", self.per_class, 1)
        if self.test_per_class is not None:
            check_range("test_per_class", self.test_per_class, 1)

    @property
    def on_cpu(self) -> bool:
        """Whether the shards train on the CPU (``--device cpu``; not ``cuda:1``, ``mps``)."""
        return self.device.split(":")[0] == "cpu"

    @property
    def n_shards(self) -> int:
        return -(-self.models // self.models_per_shard)

    def shard_models(self, shard: int) -> range:
        return range(shard * self.models_per_shard, min((shard + 1) * self.models_per_shard, self.models))

    def dataset_options(self) -> dict[str, Any]:
        """Keyword options of :func:`memadv.data.registry.load_dataset` for this estimate (the set
        ones); ConfigError for one that does not apply to the data set."""
        return dataset_options(self.dataset, classes=self.classes, per_class=self.per_class,
                               test_per_class=self.test_per_class, image_size=self.image_size,
                               image_column=self.image_column, label_column=self.label_column,
                               array_layout=self.array_layout)

    def runtime(self) -> dict[str, Any]:
        """Where and how this process runs the shards (:data:`RUNTIME`): taken from the command line on
        every run and handed to each task, never read back from spec.json."""
        return {k: getattr(self, k) for k in self.RUNTIME}

    # Where and how the shards run: free to change between runs of one estimate (a moved data set,
    # another GPU, the other packing path: same models up to float summation order).
    RUNTIME = ("data_root", "device", "packing", "channels_last")
    # Fields that define the estimate: a run directory refuses a spec that differs in any of them.
    # Everything else (RUNTIME, cross_class_threshold: an aggregation setting `aggregate` re-derives,
    # full_models: added after estimates existed) is taken from the command line of each run. ``models`` may
    # grow: model m's subset, init and batch order derive from (seed, m) alone, so a larger M
    # only adds shards (a last shard that held fewer models than models_per_shard is trained again).
    IDENTITY = ("dataset", "classes", "per_class", "test_per_class", "image_size", "image_column", "label_column",
                "array_layout", "net", "models_per_shard",
                "subset_ratio", "epochs", "lr", "lr_milestones", "batch_size", "momentum", "weight_decay", "augment",
                "seed", "bf16")
    # IDENTITY fields added after estimates existed: the value every older spec (which lacks the key) used
    SPEC_DEFAULTS = {"lr_milestones": [0.5, 0.75]}
