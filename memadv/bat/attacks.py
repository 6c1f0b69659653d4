"""L-inf attacks on images in [0, 1] (normalisation lives inside the net).

Every attack here follows the same rules:

* it never changes ``model.training`` (the caller chooses train/eval mode) and never touches the
  parameters' ``.grad`` (input gradients come from :func:`torch.autograd.grad`);
* its result lies in the L-inf ball of radius ``eps`` around ``x`` and in [0, 1];
* tensors are created on ``x.device``; the only randomness is the optional ``torch.Generator``.

One projected-gradient loop, :func:`pgd`, serves every gradient attack: the loss it ascends is a
parameter (cross-entropy for PGD, the Carlini-Wagner margin for "CW", the KL divergence to the
natural prediction for TRADES). :func:`autoattack` calls the AutoAttack library (``pyautoattack``,
the packaged code of Croce & Hein) rather than re-implementing it; ``docs/attacks.md`` says why.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memadv.errors import ConfigError, UnknownChoiceError

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss(logits, y) -> per-example loss (B,)``; the attack ascends its sum."""

RANDOM_STARTS = ("uniform", "normal", "none")


# --------------------------------------------------------------------------- losses the attacks ascend

def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy: ``-log softmax(z)_y``."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_loss(logits: Tensor, y: Tensor, confidence: float = 50.0) -> Tensor:
    """Per-example Carlini-Wagner margin loss, as adversarial-training papers use it for "CW":

    ``-max(z_y - max_{j != y} z_j + confidence, 0)``.

    Ascending it pushes the largest wrong logit above the true one until the margin reaches
    ``confidence``. ``confidence = 50`` is the default of ``cwloss`` in the GAIRAT repository
    (``attack_generator.py`` l. 5; ``GAIRAT.py`` itself evaluates only PGD-20, l. 257) and in
    Friendly-Adversarial-Training (``attack_generator.py`` l. 4), whose ``attack_test.py`` l. 62 runs
    the CW evaluation: 30 steps of eps/4 from a uniform random start. The MART repository has no CW code.
    """
    onehot = F.one_hot(y, logits.shape[1]).to(torch.bool)
    real = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(onehot, float("-inf")).amax(dim=1)
    return -torch.clamp(real - other + confidence, min=0.0)


def kl_loss(p_natural: Tensor) -> LossFn:
    """TRADES's inner loss: ``KL(p_nat || softmax(z))`` per example, with ``p_nat`` held fixed."""
    p_nat = p_natural.detach()
    log_p_nat = torch.log(p_nat.clamp_min(1e-30))

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return (p_nat * (log_p_nat - F.log_softmax(logits, dim=1))).sum(dim=1)

    return loss


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "cw": cw_loss}


def _loss_fn(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise UnknownChoiceError("attack loss", loss, LOSSES)
    return LOSSES[loss]


# --------------------------------------------------------------------------- helpers

def _check(eps: float, step_size: float | None = None, steps: int | None = None) -> None:
    if not (0.0 <= eps <= 1.0):
        raise ConfigError(f"--eps must be in [0, 1], got {eps!r}")
    if step_size is not None and not (step_size >= 0.0):
        raise ConfigError(f"--step-size must be >= 0, got {step_size!r}")
    if steps is not None and steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps!r}")


def project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Project onto the L-inf ball of radius ``eps`` around ``x``, then onto [0, 1]."""
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    return x_adv.clamp(0.0, 1.0)


def _noise(kind: str, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) or standard normal noise shaped like ``x``, drawn from ``generator``."""
    device = generator.device if generator is not None else x.device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _input_grad(model: nn.Module, x_adv: Tensor, y: Tensor, loss_fn: LossFn) -> tuple[Tensor, Tensor]:
    """(gradient of sum(loss) w.r.t. the input, logits), without touching parameter gradients."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        loss = loss_fn(logits, y).sum()
        (grad,) = torch.autograd.grad(loss, [x_adv])
    return grad.detach(), logits.detach()


# --------------------------------------------------------------------------- attacks

def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad_x CE))``."""
    _check(eps)
    x = x.detach()
    grad, _ = _input_grad(model, x, y, ce_loss)
    return project(x + eps * grad.sign(), x, eps).detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
        random_start: bool | str = True, loss: str | LossFn = "ce",
        generator: torch.Generator | None = None, *, init_std: float = 1e-3,
        return_kappa: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """L-inf projected gradient ascent (Madry et al. 2018) on ``loss``.

    ``x_0 = x + noise``; ``x_{k+1} = Proj_{B(x, eps) ∩ [0,1]}(x_k + step_size * sign(grad_x loss(F(x_k), y)))``.

    random_start:
        ``True`` / ``"uniform"``: noise ~ U(-eps, eps) (Madry et al.; PGD-AT, GAIRAT, BAT);
        ``"normal"``: noise = ``init_std`` * N(0, 1), ``init_std = 0.001`` (TRADES and MART reference code);
        ``False`` / ``"none"``: start at ``x``.
    loss:
        ``"ce"``, ``"cw"`` or a callable ``loss(logits, y) -> (B,)`` (e.g. :func:`kl_loss`).
    return_kappa:
        also return GAIRAT's ``kappa`` (long, shape (B,)): the number of iterates ``x_0 .. x_{K-1}``
        that the model classifies correctly, counted exactly as ``GA_PGD`` in the GAIRAT reference
        code does (prediction at each step before the update; the final iterate is not counted).
    """
    _check(eps, step_size, steps)
    if random_start is True:
        random_start = "uniform"
    elif random_start is False or random_start is None:
        random_start = "none"
    if random_start not in RANDOM_STARTS:
        raise UnknownChoiceError("random start", random_start, RANDOM_STARTS)
    loss_fn = _loss_fn(loss)
    x = x.detach()
    if random_start == "uniform":
        x_adv = x + (2.0 * _noise("uniform", x, generator) - 1.0) * eps
    elif random_start == "normal":
        x_adv = x + init_std * _noise("normal", x, generator)
    else:
        x_adv = x.clone()
    x_adv = project(x_adv, x, eps)
    kappa = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(steps):
        grad, logits = _input_grad(model, x_adv, y, loss_fn)
        if return_kappa:
            kappa += (logits.argmax(dim=1) == y).long()
        x_adv = project(x_adv + step_size * grad.sign(), x, eps)
    x_adv = x_adv.detach()
    return (x_adv, kappa) if return_kappa else x_adv


def cw_inf(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int = 20,
           random_start: bool | str = True, confidence: float = 50.0,
           generator: torch.Generator | None = None) -> Tensor:
    """"CW-inf" as adversarial-training papers report it: :func:`pgd` on :func:`cw_loss`."""
    return pgd(model, x, y, eps, step_size, steps, random_start=random_start,
               loss=lambda z, t: cw_loss(z, t, confidence), generator=generator)  # type: ignore[return-value]


AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")


# The targeted DLR loss of APGD-T divides by z_pi1 - (z_pi3 + z_pi4)/2, the gap between the largest
# and the mean of the third and fourth largest logits (Croce & Hein 2020, Eq. 6 of "Reliable evaluation
# of adversarial robustness ..."): the standard and plus versions need at least 4 classes.
AUTOATTACK_MIN_CLASSES = 4


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, version: str = "standard",
               generator: torch.Generator | None = None, *, attacks: Sequence[str] | None = None,
               batch_size: int = 250, n_target_classes: int | None = None) -> Tensor:
    """AutoAttack (Croce & Hein 2020), L-inf, through the ``pyautoattack`` package.

    ``version="standard"`` runs APGD-CE, APGD-T (9 targets), FAB-T (9 targets) and Square (5000
    queries), each on the points still classified correctly; ``"custom"`` runs only ``attacks``
    (names as in the library: ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab``, ``fab-t``, ``square``).
    With fewer than 10 classes the targeted attacks use ``num_classes - 1`` targets (the library's
    own check flags more than that as an error); ``n_target_classes`` overrides.

    The library seeds torch's global RNG; here that happens inside :func:`torch.random.fork_rng`, so
    the caller's global RNG state is unchanged, and the seed is drawn from ``generator`` (0 without
    one). The model runs in eval mode and its parameters are frozen for the call (FAB back-propagates
    with ``.backward()``); both are restored.
    Returns the adversarial examples (inside the eps-ball and [0, 1]).
    """
    _check(eps)
    if version not in AUTOATTACK_VERSIONS:
        raise UnknownChoiceError("AutoAttack version", version, AUTOATTACK_VERSIONS)
    if (version == "custom") != (attacks is not None):
        raise ConfigError("AutoAttack: pass attacks=[...] exactly when version='custom'")
    try:
        from pyautoattack import AutoAttack
    except ImportError:  # pragma: no cover - declared in setup.cfg
        raise ConfigError("AutoAttack needs the 'pyautoattack' package: pip install pyautoattack") from None
    x = x.detach()
    if x.shape[0] == 0:
        return x.clone()
    # An evaluation attack sees the model in eval mode, as evaluate.py's do: in train mode BatchNorm
    # would use (and update) batch statistics, and the one-example class probe below fails with
    # "Expected more than 1 value per channel when training". Restored after.
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        with torch.no_grad():
            n_classes = int(model(x[:1]).shape[1])
        if n_classes < AUTOATTACK_MIN_CLASSES and version != "custom":
            raise ConfigError(f"AutoAttack {version!r} needs at least {AUTOATTACK_MIN_CLASSES} classes (targeted DLR "
                              f"loss), the model has {n_classes}")
        seed = 0 if generator is None else int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        devices = [x.device] if x.device.type == "cuda" else []
        for p in params:
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=devices):
            kwargs = {"attacks": list(attacks)} if version == "custom" else {}
            adversary = AutoAttack(model, device=x.device, eps=float(eps), norm="Linf", seed=seed,
                                   version=version, **kwargs)  # type: ignore[arg-type]
            targets = n_target_classes if n_target_classes is not None else min(9, n_classes - 1)
            adversary.apgd_targeted.n_target_classes = targets
            adversary.fab.n_target_classes = targets
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)
    return project(x_adv.to(x.device, x.dtype), x, eps).detach()
