"""Objective formulas on tiny fixed tensors, against values computed independently (numpy, by hand)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memadv.bat.objective_config import DEFAULT_EPS, ObjectiveConfig
from memadv.bat.methods import METHODS, build_objective
from memadv.bat.losses import bat_discrimination_loss, bat_weights, gairat_weights, mart_loss_fn, poisoning_score, trades_loss_fn, weighted_ce
from memadv.config import build_config
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.nets import build_net


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def softmax_np(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce_np(z, y):
    p = softmax_np(z)
    return -np.log(p[np.arange(len(y)), y])


LOGITS = [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 4.0], [0.5, -1.0, 2.0]]
LABELS = [0, 0, 2, 1]


def T(a, dtype=torch.float32):
    return torch.tensor(a, dtype=dtype)


# --------------------------------------------------------------------------- BAT pieces

def test_poisoning_score_eq4():
    q = poisoning_score(T(LOGITS), T(LABELS, torch.long)).numpy()
    p = softmax_np(LOGITS)
    expect = [max(p[i, t] for t in range(3) if t != LABELS[i]) for i in range(4)]
    assert np.allclose(q, expect, atol=1e-6)
    # by hand for the first row: softmax(2, 1, 0) wrong classes 1 and 2 -> e^1 / (e^2 + e^1 + 1)
    assert q[0] == pytest.approx(math.e / (math.e ** 2 + math.e + 1), rel=1e-6)


def test_weights_eq5_only_atypical_and_misclassified_are_downweighted():
    z = T(LOGITS)
    y = T(LABELS, torch.long)
    # predictions: 0, 1, 2, 2 -> correct, wrong, correct, wrong
    alpha, sigma = 2.0, 0.15
    cases = {
        "atypical, wrong": ([0.0, 0.9, 0.0, 0.0], 1),
        "atypical, correct": ([0.0, 0.0, 0.9, 0.0], None),
        "typical, wrong": ([0.0, 0.1, 0.0, 0.1], None),
        "mem == sigma is typical": ([0.0, 0.15, 0.0, 0.0], None),
        "unknown mem": ([0.0, float("nan"), 0.0, float("nan")], None),
    }
    p = softmax_np(LOGITS)
    q1 = max(p[1, 1], p[1, 2])  # wrong-class max of example 1 (label 0)
    for name, (mem, hit) in cases.items():
        w = bat_weights(z, y, T(mem), alpha, sigma)
        expect = np.ones(4)
        if hit is not None:
            expect[hit] = math.exp(-alpha * q1)
        assert np.allclose(w.numpy(), expect, atol=1e-6), name
        assert not w.requires_grad
    # both atypical examples misclassified -> both down-weighted; alpha = 0 -> no down-weighting
    w = bat_weights(z, y, T([0.5, 0.5, 0.5, 0.5]), alpha, sigma).numpy()
    q3 = max(p[3, 0], p[3, 2])
    assert np.allclose(w, [1, math.exp(-alpha * q1), 1, math.exp(-alpha * q3)], atol=1e-6)
    assert torch.equal(bat_weights(z, y, T([0.5] * 4), 0.0, sigma), torch.ones(4))
    # weights are constants even when the logits carry gradients
    zg = z.clone().requires_grad_(True)
    assert not bat_weights(zg, y, T([0.5] * 4), alpha, sigma).requires_grad


def test_weighted_ce_eq6_normalisation():
    w = [1.0, 0.5, 0.25, 0.125]
    got = weighted_ce(T(LOGITS), T(LABELS, torch.long), T(w)).item()
    ce = ce_np(LOGITS, LABELS)
    assert got == pytest.approx(float((np.array(w) * ce).sum() / sum(w)), rel=1e-6)
    # normalised by the sum of weights: invariant to scaling all weights
    assert weighted_ce(T(LOGITS), T(LABELS, torch.long), 7 * T(w)).item() == pytest.approx(got, rel=1e-6)
    # all ones -> the plain mean
    assert weighted_ce(T(LOGITS), T(LABELS, torch.long), torch.ones(4)).item() == pytest.approx(ce.mean(), rel=1e-6)


def test_discrimination_loss_eq7_by_hand():
    # e0, e1: class 0 typical; e2: class 1 typical (no typical positive); e3: class 1 *atypical*
    # (excluded); e4: class 2 typical, singleton (only a negative).
    h = T([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    y = T([0, 0, 1, 1, 2], torch.long)
    typical = torch.tensor([True, True, True, False, True])
    loss, n = bat_discrimination_loss(h, y, typical, tau=0.5, normalize=False)
    # tau = 0.5: s01 = 0.5/0.5 = 1, s02 = 0, s04 = 1/0.5 = 2; s10 = 1, s12 = 1, s14 = 2
    l01 = -math.log(math.exp(1) / (math.exp(0) + math.exp(2)))
    l10 = -math.log(math.exp(1) / (math.exp(1) + math.exp(2)))
    assert n == 2
    assert loss.item() == pytest.approx((l01 + l10) / 2, rel=1e-6)


def test_discrimination_loss_normalised_features_against_numpy():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(7, 3))
    y = np.array([0, 0, 1, 1, 1, 2, 0])
    typical = np.array([1, 1, 1, 1, 0, 1, 1], dtype=bool)
    tau = 0.3
    loss, n = bat_discrimination_loss(T(h), T(y, torch.long), torch.tensor(typical), tau=tau, normalize=True)
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    terms = []
    for i in range(7):
        for j in range(7):
            if i == j or not typical[i] or not typical[j] or y[i] != y[j]:
                continue
            negs = [k for k in range(7) if typical[k] and y[k] != y[i]]
            if not negs:
                continue
            denom = sum(math.exp(hn[i] @ hn[k] / tau) for k in negs)
            terms.append(-math.log(math.exp(hn[i] @ hn[j] / tau) / denom))
    assert n == len(terms) == 8  # class 0: 3 typical -> 6 ordered pairs; class 1: 2 typical -> 2
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_discrimination_loss_without_pairs_is_zero_and_differentiable():
    h = torch.randn(3, 4, requires_grad=True)
    for y, typ in [([0, 1, 2], [1, 1, 1]), ([0, 0, 0], [1, 1, 1]), ([0, 0, 1], [1, 0, 1])]:
        loss, n = bat_discrimination_loss(h, T(y, torch.long), torch.tensor(typ, dtype=torch.bool), 0.1)
        assert n == 0 and loss.item() == 0.0
        loss.backward()


# --------------------------------------------------------------------------- baselines' formulas

def test_trades_loss_against_formula():
    nat = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    adv = [[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]]
    y = [0, 2]
    beta = 5.0
    loss, ce, kl = trades_loss_fn(T(nat), T(adv), T(y, torch.long), beta)
    p, q = softmax_np(nat), softmax_np(adv)
    kl_np = (p * np.log(p / q)).sum(axis=1).mean()      # KL(F(x) || F(x_adv)), batch mean
    assert ce.item() == pytest.approx(ce_np(nat, y).mean(), rel=1e-6)
    assert kl.item() == pytest.approx(kl_np, rel=1e-5)
    assert loss.item() == pytest.approx(ce_np(nat, y).mean() + beta * kl_np, rel=1e-5)
    # the reference's formulation: KLDivLoss(sum)(log_softmax(adv), softmax(nat)) / batch_size
    ref = F.kl_div(F.log_softmax(T(adv), 1), F.softmax(T(nat), 1), reduction="sum") / 2
    assert kl.item() == pytest.approx(ref.item(), rel=1e-5)


def test_mart_loss_against_formula():
    nat = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.1, 3.0]]
    adv = [[0.0, 1.0, 0.0], [1.0, -1.0, 2.0], [0.2, 0.0, 2.5]]
    y = np.array([0, 2, 2])
    beta = 6.0
    loss, bce, robust = mart_loss_fn(T(nat), T(adv), T(y, torch.long), beta)
    pa, pn = softmax_np(adv), softmax_np(nat)
    b = len(y)
    # new_y: the most probable class other than y (mart.py: top-2 of argsort)
    top2 = np.argsort(pa, axis=1)[:, -2:]
    new_y = np.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    bce_np = (-np.log(pa[np.arange(b), y])).mean() + (-np.log(1.0001 - pa[np.arange(b), new_y] + 1e-12)).mean()
    kl = (pn * (np.log(pn) - np.log(pa + 1e-12))).sum(axis=1)
    robust_np = (kl * (1.0000001 - pn[np.arange(b), y])).sum() / b
    assert bce.item() == pytest.approx(bce_np, rel=1e-5)
    assert robust.item() == pytest.approx(robust_np, rel=1e-5)
    assert loss.item() == pytest.approx(bce_np + beta * robust_np, rel=1e-5)


def test_gairat_weights_against_formula():
    kappa = torch.tensor([0, 2, 5, 7, 10])
    K, lam = 10, -1.0
    h = K // 2
    raw = (np.tanh(lam + (h - kappa.numpy()) * 5 / h) + 1) / 2
    assert np.allclose(gairat_weights(kappa, K, lam, "tanh").numpy(), raw * 5 / raw.sum(), atol=1e-6)
    sig = 1 / (1 + np.exp(-(lam + (h - kappa.numpy()) * 5 / h)))
    assert np.allclose(gairat_weights(kappa, K, lam, "sigmoid").numpy(), sig * 5 / sig.sum(), atol=1e-6)
    disc = (K + 1 - kappa.numpy()) / (K + 1)
    assert np.allclose(gairat_weights(kappa, K, lam, "discrete").numpy(), disc * 5 / disc.sum(), atol=1e-6)
    assert torch.equal(gairat_weights(kappa, K, float("inf")), torch.ones(5))
    # fewer steps survived (closer to the boundary) -> larger weight
    w = gairat_weights(kappa, K, lam).numpy()
    assert np.all(np.diff(w) < 0)


def test_gairat_loss_and_schedule():
    cfg = ObjectiveConfig(eps=0.1).resolved()
    obj = build_objective("gairat", cfg)
    z, y = T(LOGITS), T(LABELS, torch.long)
    kappa = torch.tensor([10, 0, 3, 6])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return z

    ce = ce_np(LOGITS, LABELS)
    # reference GAIRAT.py: 120 epochs, begin_epoch 60, Lambda -1 from (1-based) epoch 60 on
    obj.set_epoch(58, 120)
    assert obj.lam == math.inf
    loss, _ = obj.loss(Fixed(), None, None, y, None, kappa)
    assert loss.item() == pytest.approx(ce.mean(), rel=1e-6)
    obj.set_epoch(59, 120)
    assert obj.lam == -1.0
    loss, stats = obj.loss(Fixed(), None, None, y, None, kappa)
    raw = (np.tanh(-1.0 + (5 - kappa.numpy()) * 5 / 5) + 1) / 2
    assert loss.item() == pytest.approx((ce * raw * 4 / raw.sum()).mean(), rel=1e-5)
    # burn-in scales with the run: half of 160 epochs -> re-weighting from the 80th epoch
    obj.set_epoch(78, 160)
    assert not obj.active
    obj.set_epoch(79, 160)
    assert obj.active
    lin = build_objective("gairat", ObjectiveConfig(eps=0.1, gairat_schedule="linear", gairat_lambda_max=3.0).resolved())
    lin.set_epoch(89, 120)
    assert lin.lam == pytest.approx(3.0 - (90 / 120) * (3.0 - (-1.0)))


# --------------------------------------------------------------------------- objectives on nets

def _setup(seed=0, n=16, kind="mlp"):
    torch.manual_seed(seed)
    net = build_net(kind, 4, (1, 8, 8), [0.5], [0.3])
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    idx = torch.randperm(40, generator=g)[:n]
    mem = torch.rand(40, generator=g)
    return net, x, y, idx, mem


def _step(obj, net, x, y, idx, seed):
    net.eval()
    x_adv, aux = obj.perturb(net, x, y, idx, generator=torch.Generator().manual_seed(seed))
    net.train()
    loss, stats = obj.loss(net, x, x_adv, y, idx, aux)
    return loss, stats


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_bat_with_alpha_beta_zero_is_pgd_at_exactly(kind):
    net, x, y, idx, mem = _setup(kind=kind)
    cfg = ObjectiveConfig(eps=16 / 255, alpha=0.0, beta=0.0, sigma=0.15).resolved()
    bat, pgd_at = build_objective("bat", cfg, mem=mem), build_objective("pgd", cfg)
    net_b = copy.deepcopy(net)
    opt_a = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_b = torch.optim.SGD(net_b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(4):
        la, _ = _step(pgd_at, net, x, y, idx, seed=step)
        lb, stats = _step(bat, net_b, x, y, idx, seed=step)
        assert torch.equal(la, lb)
        opt_a.zero_grad()
        opt_b.zero_grad()
        la.backward()
        lb.backward()
        for pa, pb in zip(net.parameters(), net_b.parameters()):
            assert torch.equal(pa.grad, pb.grad)
        opt_a.step()
        opt_b.step()
    assert stats["mean_weight"] == 1.0
    for (ka, va), (kb, vb) in zip(net.state_dict().items(), net_b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_bat_total_eq8_from_its_parts():
    net, x, y, idx, mem = _setup(n=24)
    mem[idx[:8]] = 0.9                      # a third of the batch atypical, the rest typical
    mem[idx[8:]] = 0.05
    cfg = ObjectiveConfig(eps=32 / 255, alpha=2.0, beta=0.3, tau=0.2, sigma=0.15).resolved()
    bat = build_objective("bat", cfg, mem=mem)
    loss, stats = _step(bat, net, x, y, idx, seed=0)
    # recompute independently from the same adversarial batch
    net.eval()
    x_adv, _ = bat.perturb(net, x, y, idx, generator=torch.Generator().manual_seed(0))
    net.train()
    with torch.no_grad():
        h = net.embed(x_adv).double().numpy()
        z = net.head(net.embed(x_adv)).double().numpy()
    yy = y.numpy()
    p = softmax_np(z)
    wrong = z.argmax(1) != yy
    atyp = np.zeros(len(yy), dtype=bool)
    atyp[:8] = True
    q = np.array([max(p[i, t] for t in range(4) if t != yy[i]) for i in range(len(yy))])
    w = np.where(atyp & wrong, np.exp(-2.0 * q), 1.0)
    ce = (w * ce_np(z, yy)).sum() / w.sum()
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    terms = []
    for i in range(8, 24):
        negs = [k for k in range(8, 24) if yy[k] != yy[i]]
        for j in range(8, 24):
            if j != i and yy[j] == yy[i] and negs:
                terms.append(-hn[i] @ hn[j] / 0.2 + math.log(sum(math.exp(hn[i] @ hn[k] / 0.2) for k in negs)))
    assert stats["n_downweighted"] == float((atyp & wrong & (w < 1)).sum()) > 0
    assert stats["n_typical"] == 16.0 and stats["n_pairs"] == len(terms) > 0
    assert loss.item() == pytest.approx(ce + 0.3 * np.mean(terms), rel=1e-4)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_objective_runs_and_respects_modes(method):
    net, x, y, idx, mem = _setup(kind="cnn")
    obj = build_objective(method, ObjectiveConfig(eps=8 / 255, steps=3).resolved(), mem=mem)
    obj.set_epoch(100, 120)
    net.eval()
    x_adv, aux = obj.perturb(net, x, y, idx, generator=torch.Generator().manual_seed(0))
    assert not net.training
    assert all(p.grad is None for p in net.parameters())
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    net.train()
    loss, stats = obj.loss(net, x, x_adv, y, idx, aux)
    assert net.training
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(isinstance(v, float) for v in stats.values()) and "loss" in stats
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    if method == "erm":
        assert torch.equal(x_adv, x)
    if method == "gairat":
        assert aux.shape == (len(x),) and aux.min() >= 0 and aux.max() <= 3


# --------------------------------------------------------------------------- config and factory

def test_build_objective_errors_and_defaults():
    with pytest.raises(UnknownChoiceError) as e:
        build_objective("fgsm-at", ObjectiveConfig(eps=0.1))
    assert "valid choices: bat, erm, gairat, mart, pgd, trades" in str(e.value)
    with pytest.raises(ConfigError, match="needs memorization scores"):
        build_objective("bat", ObjectiveConfig(eps=0.1).resolved())
    with pytest.raises(ConfigError, match="unset eps / step sizes"):  # resolved once, by the caller
        build_objective("pgd", ObjectiveConfig())
    with pytest.raises(ConfigError, match="unset eps / step sizes"):
        build_objective("pgd", ObjectiveConfig(eps=0.1))  # step sizes still unset
    with pytest.raises(ConfigError, match="--eps is unset"):
        ObjectiveConfig().resolved()
    with pytest.raises(ConfigError, match="no default --eps"):
        ObjectiveConfig().resolved("svhn")
    for ds, eps in [("cifar100", 8 / 255), ("cifar10", 8 / 255), ("tinyimagenet", 4 / 255), ("digits", 64 / 255),
                    ("fashion-mnist", 0.1), ("mnist", 0.3)]:
        obj = build_objective("pgd", ObjectiveConfig().resolved(ds))
        assert obj.cfg.eps == eps == DEFAULT_EPS[ds]
        assert obj.cfg.step_size == eps / 4 and obj.cfg.eval_step_size == eps / 4
    obj = build_objective("pgd", ObjectiveConfig(eps=0.1, step_size=0.01).resolved("cifar100"))
    assert obj.cfg.eps == 0.1 and obj.cfg.step_size == 0.01
    with pytest.raises(ConfigError, match="one memorization score per training example"):
        build_objective("bat", ObjectiveConfig(eps=0.1).resolved(), mem=torch.zeros(3, 2))


def test_paper_defaults():
    c = ObjectiveConfig()
    assert (c.alpha, c.beta, c.sigma, c.trades_beta, c.mart_beta) == (1.0, 0.2, 0.15, 5.0, 6.0)
    assert (c.steps, c.eval_steps, c.gairat_lambda, c.gairat_burn_in) == (10, 20, -1.0, 0.5)


@pytest.mark.parametrize("field,value,flag", [
    ("alpha", -0.1, "--alpha"), ("beta", -1.0, "--beta"), ("tau", 0.0, "--tau"), ("tau", -1.0, "--tau"),
    ("sigma", 1.5, "--sigma"), ("sigma", -0.1, "--sigma"), ("eps", 1.2, "--eps"), ("eps", -0.1, "--eps"),
    ("alpha", float("nan"), "--alpha"), ("steps", -1, "--steps"), ("trades_beta", -1.0, "--trades-beta"),
])
def test_out_of_range_values_are_one_line_config_errors(field, value, flag):
    with pytest.raises(ConfigError) as e:
        ObjectiveConfig(**{field: value})
    assert flag in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        build_config(ObjectiveConfig, {field: value})
    with pytest.raises(UnknownChoiceError):
        ObjectiveConfig(gairat_schedule="cosine")


def test_mart_gradient_stays_finite_when_a_natural_probability_underflows():
    """A logit gap over ~100 makes a softmax probability exactly 0 in float32; the KL's p log p term
    must then have a zero, not a NaN, gradient (as xlogy's log(0) * 0 gave: MART's loss became NaN
    in epoch 2 on Fashion-MNIST). The value stays the reference's."""
    from memadv.bat.losses import mart_loss_fn
    logits_nat = torch.tensor([[120.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    logits_adv = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    loss, _, robust = mart_loss_fn(logits_nat, logits_adv, y, 6.0)
    loss.backward()
    assert torch.isfinite(logits_nat.grad).all() and torch.isfinite(logits_adv.grad).all()
    p_nat, p_adv = logits_nat.softmax(1).detach(), logits_adv.softmax(1).detach()
    kl = torch.nn.functional.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)  # reference form
    expected = (kl * (1.0000001 - p_nat.gather(1, y[:, None]).squeeze(1))).sum() / 2
    assert torch.allclose(robust.detach(), expected, atol=1e-7)
