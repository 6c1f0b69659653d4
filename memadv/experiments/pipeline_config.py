"""The configuration of ``memadv pipeline`` (:class:`PipelineConfig`: every stage's option beyond the
estimate's, defaults from the paper), the Table 2 runs, the ``--quick`` sizes and the final
evaluation's attacks per data set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memadv.config import SEED_MAX, SEED_MIN, check_range, forward, option
from memadv.splits.error_control import ErrorControl
from memadv.data.registry import DATASETS
from memadv.errors import ConfigError
from memadv.estimate.config import EstimateConfig
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.train_config import FINAL_ATTACKS, TrainConfig
from memadv.layout import RunLayout
from memadv.paper.table2 import TABLE_RUNS


ALL_FINAL_ATTACKS = list(FINAL_ATTACKS)
# AutoAttack on digits takes ~2 minutes per checkpoint on two CPU cores (3 checkpoints per run):
# the embedded datasets leave it out of the default final evaluation (pass --final-attacks to add it).
DEFAULT_FINAL_ATTACKS = {"digits": [a for a in FINAL_ATTACKS if a != "aa"],
                         "synthetic-longtail": [a for a in FINAL_ATTACKS if a != "aa"]}
# the same as a per-dataset table (memadv.config's convention), for --help
FINAL_ATTACKS_TABLE = {d: {"final_attacks": DEFAULT_FINAL_ATTACKS.get(d, ALL_FINAL_ATTACKS)} for d in DATASETS}

# --quick: every stage with tiny sizes (tests)
QUICK_ESTIMATE = dict(models=48, models_per_shard=24, epochs=8, full_models=4)
QUICK_TRAIN = dict(train_epochs=2, eval_max=120, final_max=60, final_attacks=["clean", "fgsm", "pgd"])
# the 48 models of --quick decide no typical example at any error level (docs/splits.md): the paper's reading
QUICK_PIPELINE = dict(ablation_alpha=[0.0, 1.0, 2.0], ablation_beta=[0.0, 0.2], train_seeds=[0], error_control="none")


@dataclass
class PipelineConfig:
    """The pipeline's own options (the estimator's and the executor's come with their own configs)."""

    quick: bool = option(False, "tiny sizes for every stage (48 estimator models, 2 training epochs, small "
                                "evaluations): a smoke test of the whole chain in well under two minutes", switch=True)
    # training options are TrainConfig's, forwarded to every training run (unset: TrainConfig's default)
    train_epochs: int | None = forward(TrainConfig, "epochs", None, "epochs of every training run")
    train_seeds: list[int] = option([0, 1, 2], "seeds of the Section 3 and BAT table runs (results are means over "
                                    "them); the ablation grid uses the first", minimum=SEED_MIN, maximum=SEED_MAX)
    train_device: str = forward(TrainConfig, "device", "auto", "torch device of the training runs: auto (cuda if "
                                                                "available), cpu, cuda, cuda:1, mps")
    train_net: str | None = forward(TrainConfig, "net", None, "architecture of every training run (Sections 3.1-3.2, "
                                    "the BAT table, the ablation); the estimator's models use --net")
    train_eps: float | None = forward(ObjectiveConfig, "eps", None, "L-inf radius of the training and evaluation "
                                      "attacks of every training run")
    val_fraction: float = forward(TrainConfig, "val_fraction", 0.0, "the BAT table and ablation runs hold this share "
                                  "of every class out of training and select best checkpoints on it (Table 2's "
                                  "val-selected rows; 0 = the paper's test-selected protocol and last-vs-last only)")
    sec32_p: list[int] = option([0, 20, 100], "Section 3.2: percentages of D_atyp added to D_typ",
                                source="paper Sec. 3.2")
    eval_max: int | None = forward(TrainConfig, "eval_max", None)
    eval_every: int = forward(TrainConfig, "eval_every", 1)
    final_max: int | None = forward(TrainConfig, "final_max", None)
    final_attacks: list[str] | None = option(None, "final attacks of the BAT table runs (Table 4); AutoAttack "
                                             "takes ~2 min per checkpoint on the embedded sets on two CPU cores",
                                             per_dataset=FINAL_ATTACKS_TABLE)
    lr_grid: list[float] = option([], "learning rates every Table 2 method tries at the first seed on the validation "
                                  "slice (needs --val-fraction > 0 and --ablation false); each method's table runs "
                                  "then use the one with the highest validation PGD-20 accuracy at the last epoch "
                                  "(memadv.experiments.lr_grid); empty = every method at --lr's default",
                                  unit="SGD learning rate",
                                  source="paper Sec. 5.1 (0.1); TRADES train_trades_mnist.py (0.01)")
    ablation_alpha: list[float] = option([0.0, 1.0, 2.0, 3.0], "ablation grid: BAT alpha values",
                                         source="paper Sec. 5.2: 0 1 2 3")
    ablation_beta: list[float] = option([0.0, 0.1, 0.2, 0.3], "ablation grid: BAT beta values",
                                        source="paper Sec. 5.2: 0 0.1 0.2 0.3")
    ablation: bool = option(True, "run the ablation grid stage")
    poisoning_control: bool = option(True, "run C3's poisoning control: PGD-AT on D_typ + the high / low "
                                           "poisoning-score half of D_atyp, 2 runs per seed "
                                           "(memadv.analysis.poisoning_control)", source="paper Sec. 3.2, Eq. 4")
    error_control: str = option("fdr:0.05", "the splits stage's --error-control (memadv splits): fdr:0.05 = the "
                                            "decided sets (D_typ, D'_typ of Section 3.2 ...), with the paper's reading "
                                            "beside them in splits/summary.md and the report; none = the paper's "
                                            "reading (noise decides part of D'_typ); `memadv status RUN` says how "
                                            "many models decide enough examples (--quick: none)",
                                source="docs/splits.md, 'Error control'")

    def __post_init__(self) -> None:
        if self.train_epochs is not None:
            check_range("train_epochs", self.train_epochs, 1)
        for p in self.sec32_p:
            check_range("sec32_p", p, 0, 100)
        self.sec32_p = sorted({int(p) for p in self.sec32_p})
        if not self.train_seeds:
            raise ConfigError("--train-seeds needs at least one seed")
        ErrorControl.parse(self.error_control)  # a one-line error before anything runs
        self.train_seeds = sorted({int(s) for s in self.train_seeds})
        for a in self.ablation_alpha + self.ablation_beta:
            check_range("ablation_alpha/beta", a, 0)
        for lr in self.lr_grid:
            check_range("lr_grid", lr, 0, lo_open=True)
        self.lr_grid = list(dict.fromkeys(float(x) for x in self.lr_grid))  # listed order kept: it breaks ties
        if self.lr_grid and not self.val_fraction > 0:
            raise ConfigError("--lr-grid chooses each method's learning rate on the validation slice: set "
                              "--val-fraction (e.g. 0.1), or leave --lr-grid out")
        if self.lr_grid and self.ablation:
            raise ConfigError("--lr-grid with the ablation grid would mix learning rates in Fig. 5 (its runs share "
                              "the table's): add --ablation false, or leave --lr-grid out")
        if self.quick:
            for k, v in QUICK_TRAIN.items():
                if getattr(self, k) in (None, ALL_FINAL_ATTACKS):
                    setattr(self, k, v)
            defaults = PipelineConfig()
            for k, v in QUICK_PIPELINE.items():
                if getattr(self, k) == getattr(defaults, k):
                    setattr(self, k, v)

    def estimate_config(self, cfg: EstimateConfig) -> EstimateConfig:
        return dataclasses.replace(cfg, **QUICK_ESTIMATE) if self.quick else cfg

    def final_attacks_for(self, dataset: str) -> list[str]:
        if self.final_attacks is not None:
            return list(self.final_attacks)
        return list(DEFAULT_FINAL_ATTACKS.get(dataset, ALL_FINAL_ATTACKS))

    def sec3_settings(self, cfg: EstimateConfig):
        from memadv.paper.sec3 import Sec3Settings
        return Sec3Settings(dataset=cfg.dataset, data_root=cfg.data_root, dataset_options=cfg.dataset_options(),
                            net=self.train_net, eps=self.train_eps, epochs=self.train_epochs,
                            eval_every=self.eval_every,
                            seeds=list(self.train_seeds), eval_max=self.eval_max, final_max=self.final_max,
                            device=self.train_device, ps=list(self.sec32_p))

    def table_runs(self, cfg: EstimateConfig, run_dir: Path) -> list[dict[str, Any]]:
        """Every Table 2 run; with --lr-grid, at its method's chosen lr once the grid has run."""
        lrs = self.chosen_lrs(run_dir)
        return [self._train_values(cfg, run_dir, {**r, "seed": s, **({"lr": lrs[i]} if lrs else {})})
                for s in self.train_seeds for i, r in enumerate(TABLE_RUNS)]

    def lr_grid_runs(self, cfg: EstimateConfig, run_dir: Path) -> list[list[dict[str, Any]]]:
        """Per Table 2 run (TABLE_RUNS order), its grid runs: the first seed at every lr of --lr-grid."""
        seed = self.train_seeds[0]
        return [[self._train_values(cfg, run_dir, {**r, "seed": seed, "lr": lr}) for lr in self.lr_grid]
                for r in TABLE_RUNS]

    def chosen_lrs(self, run_dir: Path) -> list[float] | None:
        """Each TABLE_RUNS entry's chosen lr (``RUN/lrgrid/choice.json``); None without a grid or choice."""
        from memadv.experiments import lr_grid
        choices = lr_grid.read_choice(Path(run_dir), self.lr_grid) if self.lr_grid else None
        if not choices or len(choices) != len(TABLE_RUNS):
            return None
        return [float(c["lr"]) for c in choices]

    def ablation_runs(self, cfg: EstimateConfig, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(runs to train in ablation/train, table runs to link there): every (alpha, beta) of the grid
        except (0, 0), which PGD-AT fills (BAT with alpha = beta = 0 is PGD-AT)."""
        table = {(r.get("alpha"), r.get("beta")): r for r in TABLE_RUNS if r["method"] == "bat"}
        seed = self.train_seeds[0]
        new, shared = [], [self._train_values(cfg, run_dir, {"method": "pgd", "seed": seed})]
        for a in self.ablation_alpha:
            for b in self.ablation_beta:
                if a == 0 and b == 0:
                    continue
                r = {"method": "bat", "alpha": float(a), "beta": float(b), "seed": seed}
                (shared if (float(a), float(b)) in table else new).append(self._train_values(cfg, run_dir, r))
        return new, shared

    def _train_values(self, cfg: EstimateConfig, run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
        values = {"dataset": cfg.dataset, "data_root": cfg.data_root, "scores": str(RunLayout(run_dir).scores),
                  "splits": str(RunLayout(run_dir).split_file),
                  "net": self.train_net, "eps": self.train_eps, "val_fraction": self.val_fraction or None,
                  "eval_every": None if self.eval_every == 1 else self.eval_every,
                  "epochs": self.train_epochs, "eval_max": self.eval_max, "final_max": self.final_max,
                  "final_attacks": self.final_attacks_for(cfg.dataset), "device": self.train_device,
                  **cfg.dataset_options(), **run}
        return {k: v for k, v in values.items() if v is not None}



def run_names(runs: list[dict[str, Any]]) -> list[str]:
    from memadv.experiments.sweep import build_run_configs
    from memadv.bat.runs import run_name
    out = []
    for r in runs:
        c, o = build_run_configs(r)
        out.append(run_name(c, o))
    return out
