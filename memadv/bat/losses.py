"""The losses of the training objectives as pure functions of logits, labels and weights: the
poisoning score and BAT's weights and discrimination loss (paper Eqs. 4-8), and the baselines'
TRADES, MART and GAIRAT terms, each with its source. The objectives that call them, with the attack
step and the train/eval contract, are :mod:`memadv.bat.objectives`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor



def poisoning_score(logits: Tensor, y: Tensor) -> Tensor:
    """Eq. 4: ``q(x_adv) = max_{t != y} F_t(x_adv)``, the largest softmax probability of a wrong class."""
    probs = F.softmax(logits, dim=1)
    onehot = F.one_hot(y, logits.shape[1]).to(torch.bool)
    return probs.masked_fill(onehot, float("-inf")).amax(dim=1)



def bat_weights(logits: Tensor, y: Tensor, mem: Tensor, alpha: float, sigma: float) -> Tensor:
    """Eq. 5: ``w = exp(-alpha * q(x_adv))`` if ``mem > sigma`` and ``argmax_t F_t(x_adv) != y``, else 1.

    Computed without gradient (the weights are constants in Eq. 6). An example with unknown
    memorization (NaN) is never down-weighted.
    """
    with torch.no_grad():
        q = poisoning_score(logits, y)
        hit = (mem > sigma) & (logits.argmax(dim=1) != y)
        return torch.where(hit, torch.exp(-alpha * q), torch.ones_like(q)).detach()



def weighted_ce(logits: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Eq. 6: ``sum_i w_i * CE(F(x_adv_i), y_i) / sum_i w_i``."""
    ce = F.cross_entropy(logits, y, reduction="none")
    return (w * ce).sum() / w.sum()



def bat_discrimination_loss(h: Tensor, y: Tensor, typical: Tensor, tau: float,
                            normalize: bool = True) -> tuple[Tensor, int]:
    """Eq. 7 on the typical examples of the batch; returns (loss, number of (i, j) pairs).

    For every ordered pair (i, j), i != j, of typical examples with ``y_i == y_j``, with
    ``N(i)`` = the typical examples of the batch whose label differs from ``y_i`` (footnote 3)::

        l_ij = -log( exp(h_i . h_j / tau) / sum_{k in N(i)} exp(h_i . h_k / tau) )

    and the loss is the mean of ``l_ij`` over all such pairs whose anchor has at least one
    negative (0 when there is none). As written in Eq. 7 the positive is *not* in the denominator
    (unlike InfoNCE/SupCon), so ``l_ij`` can be negative.

    ``normalize`` (memadv default True; the paper does not say): ``h`` is L2-normalised first, so
    ``h_i . h_j`` is the cosine similarity. Reasons: (1) the paper motivates Eq. 7 by the class-wise
    *cosine* distance of representations (Sec. 3.2, Table 1, Figs. 21-23), which this then optimises
    directly; (2) without the positive in the denominator the loss is unbounded below for raw
    features (scaling ``h`` up drives it to -inf), while with unit vectors it lies in
    [-2/tau - log|N(i)|, 2/tau - log|N(i)|]; (3) the usual contrastive choice (SupCon, SimCLR), whose
    temperature 0.1 is then a sensible default.
    """
    typ = typical.nonzero(as_tuple=True)[0]
    zero = h.sum() * 0.0
    if typ.numel() < 2:
        return zero, 0
    z = h[typ]
    if normalize:
        z = F.normalize(z, dim=1)
    lab = y[typ]
    s = z @ z.t() / tau                                           # (T, T) similarities
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(len(typ), dtype=torch.bool, device=h.device)
    pos = same & ~eye                                             # positives j of anchor i
    neg = ~same                                                   # negatives k of anchor i
    has_neg = neg.any(dim=1)
    pos = pos & has_neg[:, None]
    n_pairs = int(pos.sum().item())
    if n_pairs == 0:
        return zero, 0
    log_denom = torch.logsumexp(s.masked_fill(~neg, float("-inf")), dim=1)   # (T,), -inf without negatives
    log_denom = torch.where(has_neg, log_denom, torch.zeros_like(log_denom))
    l = log_denom[:, None] - s                                   # -log(exp(s_ij) / denom_i)
    return l[pos].sum() / n_pairs, n_pairs



def trades_loss_fn(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """TRADES (Zhang et al. 2019): ``CE(F(x), y) + beta * (1/B) sum_i KL(F(x_i) || F(x_adv_i))``.

    ``beta`` is 1/lambda; gradients flow through both distributions, as in the reference
    ``trades.py`` (``KLDivLoss(sum)(log_softmax(F(x_adv)), softmax(F(x))) / batch_size``).
    Returns (loss, natural CE, mean KL).
    """
    ce = F.cross_entropy(logits_nat, y)
    p_nat = F.softmax(logits_nat, dim=1)
    kl = (p_nat * (F.log_softmax(logits_nat, dim=1) - F.log_softmax(logits_adv, dim=1))).sum() / y.shape[0]
    return ce + beta * kl, ce, kl



def mart_loss_fn(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """MART (Wang et al. 2020): ``BCE(p(x_adv), y) + beta * (1/B) sum_i KL(p(x_i) || p(x_adv_i)) (1 - p_y(x_i))``

    with the boosted CE ``BCE = -log p_y(x_adv) - log(1 - max_{k != y} p_k(x_adv))`` (batch means).
    The small constants are the reference ``mart.py``'s: ``log(1.0001 - p + 1e-12)``,
    ``log(p_adv + 1e-12)`` inside the KL and the weight ``1.0000001 - p_y``.
    Returns (loss, BCE, weighted KL).
    """
    b = y.shape[0]
    p_adv = F.softmax(logits_adv, dim=1)
    p_nat = F.softmax(logits_nat, dim=1)
    onehot = F.one_hot(y, logits_adv.shape[1]).to(torch.bool)
    new_y = p_adv.masked_fill(onehot, float("-inf")).argmax(dim=1)   # most likely wrong class
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), new_y)
    true_p = p_nat.gather(1, y[:, None]).squeeze(1)
    # KLDivLoss semantics (sum_k p log p - p log(p_adv + 1e-12)), with p log p as p * log_softmax: the
    # same value, but a finite gradient where a natural probability underflows to 0 (a logit gap over
    # ~100 in float32), where xlogy's (and the reference KLDivLoss's) gradient log(0) * 0 is NaN — seen
    # as a NaN loss in the second epoch of MART on Fashion-MNIST (784-256-10 MLP, lr 0.1).
    kl = (p_nat * F.log_softmax(logits_nat, dim=1) - p_nat * torch.log(p_adv + 1e-12)).sum(dim=1)
    robust = (kl * (1.0000001 - true_p)).sum() / b
    return bce + beta * robust, bce, robust



def gairat_weights(kappa: Tensor, num_steps: int, lam: float, func: str = "tanh") -> Tensor:
    """GAIRAT (Zhang et al. 2021) normalised instance weights from ``kappa`` (steps an example stays correct).

    With ``K = num_steps`` and ``h = floor(K / 2)`` (reference ``GAIR.py``)::

        tanh:     w = (1 + tanh(lam + 5 (h - kappa) / h)) / 2
        sigmoid:  w = sigmoid(lam + 5 (h - kappa) / h)
        discrete: w = (K + 1 - kappa) / (K + 1)

    normalised to ``w * B / sum(w)`` (mean 1). ``lam = +inf`` gives uniform weights.
    """
    k = kappa.to(torch.float32)
    if func == "discrete":
        w = ((num_steps + 1) - k) / (num_steps + 1)
    else:
        if math.isinf(lam) and lam > 0:
            w = torch.ones_like(k)
        else:
            half = max(int(num_steps / 2), 1)
            arg = lam + (half - k) * 5.0 / half
            w = (arg.tanh() + 1.0) / 2.0 if func == "tanh" else arg.sigmoid()
    return w * w.numel() / w.sum()
