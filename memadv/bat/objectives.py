"""Training objectives: ERM, PGD-AT, TRADES, MART, GAIRAT and BAT, each in two steps.

The training loop owns train/eval mode and calls, per mini-batch::

    model.eval()                                   # or whatever the loop chooses for the attack
    x_adv, aux = objective.perturb(model, x, y, idx, generator=g)
    model.train()
    loss, stats = objective.loss(model, x, x_adv, y, idx, aux)
    loss.backward(); optimizer.step()

and ``objective.set_epoch(epoch, total_epochs)`` at the start of every epoch (0-based ``epoch``;
only GAIRAT uses it). ``idx`` holds the batch's example ids (positions in the dataset's canonical
order); BAT looks its memorization scores up with it. ``stats`` is a dict of Python floats for
logging. Attacks never change the mode and never touch parameter gradients (see ``attacks.py``).

All methods share one training attack (``eps``, ``step_size``, ``steps`` of :class:`ObjectiveConfig`),
as the paper compares them "as a fair comparison with BAT"; each keeps the random start of its
reference code (uniform in the eps-ball for PGD-AT, GAIRAT and BAT; 0.001·N(0, 1) for TRADES and MART).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memadv.bat.attacks import kl_loss, pgd
from memadv.bat.losses import (bat_discrimination_loss, bat_weights, gairat_weights, mart_loss_fn, trades_loss_fn,
                               weighted_ce)
from memadv.errors import ConfigError

from memadv.bat.objective_config import ObjectiveConfig


# --------------------------------------------------------------------------- formulas (pure functions)


# --------------------------------------------------------------------------- objectives

class Objective:
    """Base class. ``perturb`` returns ``(x_adv, aux)``; ``loss`` returns ``(loss, stats)``."""

    name = "objective"
    needs_mem = False

    def __init__(self, cfg: ObjectiveConfig):
        if not cfg.is_resolved():
            # resolved once, by the caller that knows the data set (memadv.bat.train.prepare)
            raise ConfigError("the objective config has unset eps / step sizes: pass ObjectiveConfig.resolved(dataset)")
        self.cfg = cfg

    def set_epoch(self, epoch: int, total: int) -> None:
        """Called by the loop at the start of each epoch (0-based); no-op unless the method is scheduled."""

    def _attack(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator | None,
                **kw: Any) -> Any:
        c = self.cfg
        return pgd(model, x, y, c.eps, c.step_size, c.steps, generator=generator, **kw)  # type: ignore[arg-type]

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, idx: Tensor,
             aux: Any = None) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError


def _acc(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean().item()) if y.numel() else float("nan")


class ERM(Objective):
    """Empirical risk minimisation: ``mean_i CE(F(x_i), y_i)`` on clean examples (no attack)."""

    name = "erm"

    def perturb(self, model, x, y, idx, generator=None):
        return x.detach(), None

    def loss(self, model, x, x_adv, y, idx, aux=None):
        logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="none").sum() / y.shape[0]
        return loss, {"loss": loss.item(), "acc": _acc(logits, y)}


class PGDAT(Objective):
    """PGD adversarial training (Madry et al. 2018), Eq. 3: ``mean_i CE(F(x_adv_i), y_i)``,
    ``x_adv`` = PGD on CE from a uniform random start in the eps-ball."""

    name = "pgd"

    def perturb(self, model, x, y, idx, generator=None):
        return self._attack(model, x, y, generator, random_start="uniform", loss="ce"), None

    def loss(self, model, x, x_adv, y, idx, aux=None):
        logits = model(x_adv)
        # sum / B rather than .mean(): the identical arithmetic to BAT's Eq. 6 when all w = 1.
        loss = F.cross_entropy(logits, y, reduction="none").sum() / y.shape[0]
        return loss, {"loss": loss.item(), "adv_acc": _acc(logits, y)}


class TRADES(Objective):
    """TRADES (Zhang et al. 2019): ``min CE(F(x), y) + beta * max_{x'} KL(F(x) || F(x'))``.

    ``x_adv`` maximises the KL to the natural prediction (PGD from ``x + 0.001 N(0, 1)``), see
    :func:`trades_loss_fn`. ``beta = cfg.trades_beta`` (1/lambda): 5 as in the paper's tables, where
    the TRADES code defaults to 6.
    """

    name = "trades"

    def perturb(self, model, x, y, idx, generator=None):
        with torch.no_grad():
            p_nat = F.softmax(model(x), dim=1)
        return self._attack(model, x, y, generator, random_start="normal", loss=kl_loss(p_nat)), None

    def loss(self, model, x, x_adv, y, idx, aux=None):
        logits_nat = model(x)
        logits_adv = model(x_adv)
        loss, ce, kl = trades_loss_fn(logits_nat, logits_adv, y, self.cfg.trades_beta)
        return loss, {"loss": loss.item(), "ce": ce.item(), "kl": kl.item(),
                      "acc": _acc(logits_nat, y), "adv_acc": _acc(logits_adv, y)}


class MART(Objective):
    """MART (Wang et al. 2020), :func:`mart_loss_fn`; ``x_adv`` = PGD on CE from ``x + 0.001 N(0, 1)``
    (reference ``mart.py``); ``beta = cfg.mart_beta`` = 6 (``mart.py`` default)."""

    name = "mart"

    def perturb(self, model, x, y, idx, generator=None):
        return self._attack(model, x, y, generator, random_start="normal", loss="ce"), None

    def loss(self, model, x, x_adv, y, idx, aux=None):
        logits_nat = model(x)
        logits_adv = model(x_adv)
        loss, bce, robust = mart_loss_fn(logits_nat, logits_adv, y, self.cfg.mart_beta)
        return loss, {"loss": loss.item(), "bce": bce.item(), "kl": robust.item(),
                      "acc": _acc(logits_nat, y), "adv_acc": _acc(logits_adv, y)}


class GAIRAT(Objective):
    """GAIRAT (Zhang et al. 2021): ``mean_i w_i CE(F(x_adv_i), y_i)`` with :func:`gairat_weights` of kappa.

    ``x_adv`` and ``kappa`` come from PGD on CE with a uniform start (``GA_PGD``). Schedule, as in
    the reference ``GAIRAT.py`` (1-based epoch ``e = epoch + 1`` of ``T``, ``b = round(burn_in * T)``):
    for ``e < b`` plain PGD-AT (lambda = +inf, weights 1); afterwards ``lambda = cfg.gairat_lambda``
    ("fixed") or ``lambda_max - (e / T) (lambda_max - lambda)`` ("linear"). The reference's
    "piecewise" schedule is not offered: its later branches are unreachable there, so it equals "fixed".
    Burn-in: the reference (``GAIRAT.py`` l. 36, 141) re-weights from epoch 60 of its 120 (l. 13), which
    is where its "piecewise" learning rate first drops (l. 79: ``t / epochs < 0.5``). memadv keeps the
    *fraction* (0.5: epoch 80 of the paper's 160, again the first lr drop, milestones 80/120) rather
    than the absolute 60 — an adaptation, labelled in the table notes and ``docs/attacks.md``.
    Before the first :meth:`set_epoch` call the objective is in burn-in.
    """

    name = "gairat"

    def __init__(self, cfg: ObjectiveConfig):
        super().__init__(cfg)
        self.lam = float("inf")
        self.active = False

    def set_epoch(self, epoch: int, total: int) -> None:
        c = self.cfg
        e = epoch + 1
        begin = round(c.gairat_burn_in * total)
        self.active = e >= begin
        if not self.active:
            self.lam = float("inf")
        elif c.gairat_schedule == "linear":
            self.lam = c.gairat_lambda_max - (e / total) * (c.gairat_lambda_max - c.gairat_lambda)
        else:
            self.lam = c.gairat_lambda

    def perturb(self, model, x, y, idx, generator=None):
        return self._attack(model, x, y, generator, random_start="uniform", loss="ce", return_kappa=True)

    def loss(self, model, x, x_adv, y, idx, aux=None):
        logits = model(x_adv)
        ce = F.cross_entropy(logits, y, reduction="none")
        if self.active:
            if aux is None:
                raise ValueError("GAIRAT.loss needs the kappa returned by GAIRAT.perturb")
            w = gairat_weights(aux.to(ce.device), self.cfg.steps, self.lam, self.cfg.gairat_weight).detach()
            loss = (ce * w).mean()
        else:
            w = torch.ones_like(ce)
            loss = ce.sum() / y.shape[0]
        return loss, {"loss": loss.item(), "adv_acc": _acc(logits, y), "lambda": self.lam,
                      "w_min": w.min().item(), "w_max": w.max().item()}


class BAT(Objective):
    """Benign Adversarial Training (paper Sec. 4, Algorithm 1), Eq. 8::

        L_BAT = sum_i w_i CE(F(x_adv_i), y_i) / sum_i w_i  +  beta * L_DL

    ``x_adv`` = PGD exactly as PGD-AT; ``w`` from Eq. 5 (:func:`bat_weights`, constants) with the
    poisoning score of Eq. 4; ``L_DL`` = Eq. 7 (:func:`bat_discrimination_loss`) on the penultimate
    representations ``net.embed(x_adv)`` of the batch's typical examples. Typical means
    ``mem <= sigma`` (Algorithm 1's D_typ, the complement of Eq. 5's atypical ``mem > sigma``; Eq. 7
    writes ``< sigma``, which differs only at equality). ``mem`` is a tensor over all training
    examples, indexed by the batch ids ``idx``. With ``alpha = beta = 0`` this is PGD-AT exactly
    (same attack, same arithmetic; the DL term is not even computed).
    """

    name = "bat"
    needs_mem = True

    def __init__(self, cfg: ObjectiveConfig, mem: Tensor):
        super().__init__(cfg)
        mem = torch.as_tensor(mem)
        if mem.dim() != 1:
            raise ConfigError(f"BAT needs one memorization score per training example (1-D), got shape {tuple(mem.shape)}")
        self.mem = mem.detach().to(torch.float32)

    def _mem(self, idx: Tensor, device: torch.device) -> Tensor:
        idx = torch.as_tensor(idx).long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.mem.numel()):
            raise ConfigError(f"example id out of range of the {self.mem.numel()} memorization scores "
                              f"(got ids {int(idx.min())}..{int(idx.max())})")
        return self.mem[idx.to(self.mem.device)].to(device)

    def perturb(self, model, x, y, idx, generator=None):
        return self._attack(model, x, y, generator, random_start="uniform", loss="ce"), None

    def loss(self, model, x, x_adv, y, idx, aux=None):
        c = self.cfg
        mem = self._mem(idx, x_adv.device)
        if c.beta > 0:
            h = model.embed(x_adv)
            logits = model.head(h)
        else:
            logits = model(x_adv)
        w = bat_weights(logits, y, mem, c.alpha, c.sigma)
        ce = weighted_ce(logits, y, w)
        typical = mem <= c.sigma
        if c.beta > 0:
            dl, n_pairs = bat_discrimination_loss(h, y, typical, c.tau, c.normalize_features)
            loss = ce + c.beta * dl
        else:
            dl, n_pairs = None, 0
            loss = ce
        return loss, {"loss": loss.item(), "ce_weighted": ce.item(),
                      "dl": float("nan") if dl is None else dl.item(), "adv_acc": _acc(logits, y),
                      "mean_weight": w.mean().item(), "n_downweighted": float((w < 1).sum().item()),
                      "n_typical": float(typical.sum().item()), "n_pairs": float(n_pairs)}
