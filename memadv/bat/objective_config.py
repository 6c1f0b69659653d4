"""Attack and objective hyper-parameters of every training method (:class:`ObjectiveConfig`) and the
per-dataset default radius; the objectives themselves are in :mod:`memadv.bat.objectives`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from memadv.config import check_range, option
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.paper_thresholds import MEM_ATYPICAL

# Default L-inf radius of the training and evaluation attacks, per dataset.
DEFAULT_EPS: dict[str, float] = {
    "cifar10": 8 / 255,            # paper, Sec. 5.1 / Table 2 (l_inf 8/255)
    "cifar100": 8 / 255,           # paper, Sec. 5.1 / Table 2
    "tinyimagenet": 4 / 255,       # paper, Sec. 5.1 ("bounded by l_inf-norm 4/255")
    "digits": 64 / 255,            # memadv's choice, see ObjectiveConfig.eps
    "synthetic-longtail": 64 / 255,  # same 8x8 [0, 1] images as digits; same choice
    # Wong & Kolter 2018 (ICML, "Provable defenses against adversarial examples via the convex outer
    # adversarial polytope"), Fashion-MNIST experiments: eps 0.1; reference code
    # locuslab/convex_adversarial examples/fashion_mnist.py (--epsilon default 0.1).
    "fashion-mnist": 0.1,
    # Madry et al. 2018 (ICLR) MNIST challenge and the TRADES reference code (train_trades_mnist.py): 0.3.
    "mnist": 0.3,
}

# the same values as a per-dataset table of the eps field (memadv.config's convention; --help shows it)
EPS_TABLE: dict[str, dict[str, float]] = {d: {"eps": e} for d, e in DEFAULT_EPS.items()}

GAIRAT_WEIGHTS = ("tanh", "sigmoid", "discrete")
GAIRAT_SCHEDULES = ("fixed", "linear")


@dataclass
class ObjectiveConfig:
    """Attack and objective hyper-parameters (section ``[objective]`` of a TOML config).

    ``eps`` (unset = the dataset's default, :data:`DEFAULT_EPS`): 8/255 for CIFAR-10/100 and 4/255
    for Tiny ImageNet (the paper). For the 8x8 embedded sets (digits, pixels in 17 grey levels
    k/16) memadv uses 64/255 ≈ 0.25, i.e. four grey levels. Measured with the one-hidden-layer MLP (lr 0.1,
    momentum 0.9, weight decay 5e-4, batch 64, 30 epochs) on 1400 digits, PGD-AT with 10 steps of
    eps/4, accuracy on 397 held-out digits (ERM model: clean 0.977):

    ========  ========================  ===================================
    eps       ERM model: FGSM / PGD-20  PGD-AT model: clean / FGSM / PGD-20
    ========  ========================  ===================================
    8/255     0.942 / 0.942             0.990 / 0.957 / 0.957
    16/255    0.844 / 0.841             0.990 / 0.945 / 0.945
    32/255    0.408 / 0.343             0.982 / 0.824 / 0.793
    48/255    0.076 / 0.020             0.972 / 0.683 / 0.589
    64/255    0.005 / 0.000             0.932 / 0.471 / 0.335
    80/255    0.000 / 0.000             0.854 / 0.310 / 0.204
    ========  ========================  ===================================

    At 64/255 the ERM model is broken completely, and PGD-AT costs clean accuracy (97.7 -> 93.2). Its
    adversarial accuracy is about a third of its clean accuracy. That is the regime of the paper's
    CIFAR-100 runs (ERM -> 0; AT clean 57, adversarial 27), with room for the clean-accuracy gain
    that BAT claims. At 48/255 and below, PGD-AT costs less than one point of clean accuracy.
    """

    eps: float | None = option(None, "L-inf radius of training and evaluation attacks", unit="pixel in [0, 1]",
                               source="paper Sec. 5.1; embedded sets: memadv, docs in ObjectiveConfig",
                               per_dataset=EPS_TABLE)
    step_size: float | None = option(None, "PGD step size for training; unset = eps/4 (2/255 at eps 8/255)",
                                     unit="pixel in [0, 1]", source="Madry et al. 2018; Rice et al. 2020")
    steps: int = option(10, "PGD steps of the training attack", source="TRADES/MART/GAIRAT reference code (10)")
    eval_steps: int = option(20, "steps of the evaluation PGD attack (PGD-20)",
                             source="paper Sec. 5.1; GAIRAT.py l. 257")
    eval_step_size: float | None = option(None, "step size of evaluation PGD; unset = eps/4",
                                          unit="pixel in [0, 1]", source="GAIRAT.py l. 257 (0.031/4)")
    cw_steps: int = option(30, "steps of the CW-inf evaluation attack (PGD on the CW margin, uniform random start)",
                           source="Friendly-Adversarial-Training attack_test.py l. 62 (perturb_steps=30)")
    cw_step_size: float | None = option(None, "step size of the CW-inf evaluation attack; unset = eps/4",
                                        unit="pixel in [0, 1]",
                                        source="Friendly-Adversarial-Training attack_test.py l. 62 (0.031/4)")
    cw_confidence: float = option(50.0, "margin kappa of the CW loss used by the CW evaluation attack",
                                  source="cwloss(confidence=50): GAIRAT attack_generator.py l. 5, "
                                         "Friendly-Adversarial-Training attack_generator.py l. 4")
    # BAT (Eqs. 4-8)
    alpha: float = option(1.0, "BAT re-weighting strength: w = exp(-alpha * q) (Eq. 5)",
                          source="paper Table 2 (alpha = 1 or 2)")
    beta: float = option(0.2, "BAT weight of the discrimination loss (Eq. 8)", source="paper Table 2 (beta = 0.2)")
    sigma: float = option(MEM_ATYPICAL, "memorization threshold: atypical mem > sigma, typical mem <= sigma",
                          source="paper Sec. 3.1 (mem > 0.15 = atypical)")
    tau: float = option(0.1, "temperature of the discrimination loss (Eq. 7); the paper does not give it",
                        source="memadv choice: SupCon's 0.1 (Khosla et al. 2020) for cosine similarities")
    normalize_features: bool = option(True, "L2-normalise penultimate representations before Eq. 7 "
                                      "(dot products become cosines); the paper does not say",
                                      source="memadv choice, see docs of bat_discrimination_loss")
    # baselines
    trades_beta: float = option(5.0, "TRADES 1/lambda (weight of the KL term)",
                                source="paper Table 2 'TRADES (1/lambda = 5)'; TRADES code default is 6")
    mart_beta: float = option(6.0, "MART weight of the (1 - p_y)-weighted KL term", source="MART code mart.py (6.0)")
    gairat_lambda: float = option(-1.0, "GAIRAT lambda in the tanh weight", source="GAIRAT code (--Lambda -1.0)")
    gairat_lambda_max: float = option(float("inf"), "GAIRAT lambda before/at the start of the linear schedule",
                                      source="GAIRAT code (--Lambda_max inf)")
    gairat_schedule: str = option("fixed", "GAIRAT lambda schedule", choices=GAIRAT_SCHEDULES,
                                  source="GAIRAT code (--Lambda_schedule fixed)")
    gairat_weight: str = option("tanh", "GAIRAT weight assignment function", choices=GAIRAT_WEIGHTS,
                                source="GAIRAT code (--weight_assignment_function Tanh)")
    gairat_burn_in: float = option(0.5, "fraction of the epochs trained as plain PGD-AT before GAIRAT re-weights "
                                        "(0.5 of 160 = epoch 80; adaptation, docs/attacks.md)",
                                   source="GAIRAT.py l. 13, 36, 79: begin_epoch 60 of 120 = its first lr drop")

    def __post_init__(self) -> None:
        if self.eps is not None:
            check_range("eps", self.eps, 0.0, 1.0)
        for name in ("step_size", "eval_step_size", "cw_step_size"):
            v = getattr(self, name)
            if v is not None:
                check_range(name, v, 0.0, 1.0)
        check_range("steps", self.steps, 0)
        check_range("eval_steps", self.eval_steps, 0)
        check_range("cw_steps", self.cw_steps, 0)
        check_range("cw_confidence", self.cw_confidence, 0.0)
        check_range("alpha", self.alpha, 0.0)
        check_range("beta", self.beta, 0.0)
        check_range("sigma", self.sigma, 0.0, 1.0)
        check_range("tau", self.tau, 0.0, lo_open=True)
        check_range("trades_beta", self.trades_beta, 0.0)
        check_range("mart_beta", self.mart_beta, 0.0)
        check_range("gairat_burn_in", self.gairat_burn_in, 0.0, 1.0)
        if self.gairat_lambda != self.gairat_lambda:
            raise ConfigError(f"--gairat-lambda must be a number, got {self.gairat_lambda!r}")
        if self.gairat_schedule not in GAIRAT_SCHEDULES:
            raise UnknownChoiceError("GAIRAT schedule", self.gairat_schedule, GAIRAT_SCHEDULES)
        if self.gairat_weight not in GAIRAT_WEIGHTS:
            raise UnknownChoiceError("GAIRAT weight function", self.gairat_weight, GAIRAT_WEIGHTS)
        if self.gairat_schedule == "linear" and not math.isfinite(self.gairat_lambda_max):
            raise ConfigError("--gairat-lambda-max must be finite with --gairat-schedule linear")

    def is_resolved(self) -> bool:
        """Whether eps and every step size are set (what :meth:`resolved` guarantees)."""
        return None not in (self.eps, self.step_size, self.eval_step_size, self.cw_step_size)

    def resolved(self, dataset: str | None = None) -> "ObjectiveConfig":
        """A copy with ``eps``, ``step_size``, ``eval_step_size`` and ``cw_step_size`` filled in (dataset
        default eps, eps/4). The objective config does not hold its data set (one sweep file's alpha
        serves every data set), so unlike the configs that do it is completed here, when it is paired
        with a training config (memadv.config's convention). Raises ConfigError when ``eps`` is unset
        and ``dataset`` is None or has no default."""
        eps = self.eps
        if eps is None:
            if dataset is None:
                raise ConfigError("--eps is unset and no dataset was given to take its default from")
            if dataset not in DEFAULT_EPS:
                raise ConfigError(f"no default --eps for dataset {dataset!r}: pass --eps")
            eps = DEFAULT_EPS[dataset]
        return replace(self, eps=eps,
                       step_size=eps / 4 if self.step_size is None else self.step_size,
                       eval_step_size=eps / 4 if self.eval_step_size is None else self.eval_step_size,
                       cw_step_size=eps / 4 if self.cw_step_size is None else self.cw_step_size)
