"""Attack sanity: eps-ball and [0, 1], mode and .grad untouched, determinism, hand-checked losses,
PGD-20 at least as strong as FGSM on a trained model, AutoAttack on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memadv.bat import attacks
from memadv.bat.attacks import autoattack, ce_loss, cw_inf, cw_loss, fgsm, kl_loss, pgd
from memadv.errors import ConfigError, UnknownChoiceError
from memadv.nets import build_net

TOL = 1e-6  # float32 rounding of x +- eps


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one intra-op thread is faster, and far faster on a busy machine
    (AutoAttack's thousands of small steps took 70 s instead of 5 s with 2 threads under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net(kind: str = "mlp", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_net(kind, 10, (1, 8, 8), [0.5], [0.3])


def _batch(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[0] = 0.0  # pixels on the box boundary
    x[1] = 1.0
    return x, torch.randint(0, 10, (n,), generator=g)


def _check_in_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + TOL
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


def _all_attacks(eps: float, g: torch.Generator | None):
    return {
        "fgsm": lambda m, x, y: fgsm(m, x, y, eps),
        "pgd-uniform": lambda m, x, y: pgd(m, x, y, eps, eps / 4, 5, random_start=True, generator=g),
        "pgd-normal": lambda m, x, y: pgd(m, x, y, eps, eps / 4, 5, random_start="normal", generator=g),
        "pgd-none": lambda m, x, y: pgd(m, x, y, eps, eps / 4, 5, random_start=False),
        "pgd-big-step": lambda m, x, y: pgd(m, x, y, eps, 3 * eps, 3, generator=g),
        "cw": lambda m, x, y: cw_inf(m, x, y, eps, eps / 4, 5, generator=g),
        "kl": lambda m, x, y: pgd(m, x, y, eps, eps / 4, 5, random_start="normal",
                                  loss=kl_loss(F.softmax(m(x), dim=1)), generator=g),
    }


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("training", [True, False])
def test_attacks_stay_in_ball_keep_mode_and_grads(kind, training):
    net = _net(kind)
    net.train(training)
    x, y = _batch()
    sentinels = {}
    for i, p in enumerate(net.parameters()):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.125)
            sentinels[i] = p.grad.clone()
    eps = 8 / 255
    for name, attack in _all_attacks(eps, torch.Generator().manual_seed(3)).items():
        x_adv = attack(net, x, y)
        _check_in_ball(x_adv, x, eps)
        assert net.training is training, name
        for i, p in enumerate(net.parameters()):
            if i in sentinels:
                assert torch.equal(p.grad, sentinels[i]), name
            else:
                assert p.grad is None, name
        assert all(p.requires_grad for p in net.parameters())


def test_attacks_run_under_no_grad_and_move_the_loss():
    net = _net()
    net.eval()
    x, y = _batch()
    with torch.no_grad():
        x_adv = pgd(net, x, y, 16 / 255, 4 / 255, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert F.cross_entropy(net(x_adv), y) > F.cross_entropy(net(x), y)


def test_randomness_only_from_the_generator():
    net = _net()
    x, y = _batch()
    state = torch.get_rng_state()
    a = pgd(net, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(7))
    b = pgd(net, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(7))
    c = pgd(net, x, y, 0.1, 0.02, 3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(pgd(net, x, y, 0.1, 0.02, 3, random_start=False),
                       pgd(net, x, y, 0.1, 0.02, 3, random_start="none"))


def test_random_start_distributions():
    net = _net()
    x = torch.full((4, 1, 8, 8), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    eps = 0.2
    g = torch.Generator().manual_seed(0)
    u = pgd(net, x, y, eps, 0.01, 0, random_start="uniform", generator=g) - x     # steps = 0: the start
    assert u.abs().max() <= eps + TOL and u.abs().max() > 0.8 * eps and abs(u.mean().item()) < 0.05
    n = pgd(net, x, y, eps, 0.01, 0, random_start="normal", generator=g) - x
    assert 0.0005 < n.std().item() < 0.002                                         # 0.001 * N(0, 1)
    assert torch.equal(pgd(net, x, y, 0.0, 0.01, 5, generator=g), x)             # eps = 0: no change


class _Threshold(nn.Module):
    """logits = 10 * (0.5 - x, x - 0.5) on a single pixel: class 1 iff x > 0.5."""

    def forward(self, x):
        v = x.flatten(1)[:, :1]
        return 10.0 * torch.cat([0.5 - v, v - 0.5], dim=1)


def test_pgd_steps_by_hand_and_kappa():
    m = _Threshold()
    x = torch.tensor([0.75, 0.95, 0.3]).view(3, 1, 1, 1)
    y = torch.tensor([1, 1, 1])
    x_adv, kappa = pgd(m, x, y, eps=0.5, step_size=0.1, steps=5, random_start=False, return_kappa=True)
    # every step moves the pixel down by 0.1 (sign of the CE gradient), clipped to [0, 1]
    assert torch.allclose(x_adv.flatten(), torch.tensor([0.25, 0.45, 0.0]), atol=1e-6)
    # iterates of example 0: .75 .65 .55 .45 .35 -> 3 correct; example 1: .95 .85 .75 .65 .55 -> 5;
    # example 2 starts misclassified -> 0 (GAIRAT's GA_PGD counts before each update)
    assert kappa.tolist() == [3, 5, 0]
    assert kappa.dtype == torch.long


def test_kappa_matches_a_replica_of_the_reference_loop():
    net = _net()
    net.eval()
    x, y = _batch(16)
    with torch.no_grad():
        y = net(x).argmax(1)  # start correct so kappa is informative
    eps, step, steps = 0.15, 0.02, 10
    x_adv, kappa = pgd(net, x, y, eps, step, steps, random_start=False, return_kappa=True)
    # independent replica: count correct predictions of x_0 .. x_{K-1}
    xa, counts = x.clone(), np.zeros(len(x), dtype=int)
    for _ in range(steps):
        xa.requires_grad_(True)
        out = net(xa)
        counts += (out.argmax(1) == y).numpy()
        g, = torch.autograd.grad(F.cross_entropy(out, y), xa)
        xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    assert kappa.tolist() == counts.tolist()
    assert torch.allclose(x_adv, xa)
    assert 0 < kappa.sum() < steps * len(x)


def test_fgsm_by_hand():
    m = _Threshold()
    x = torch.tensor([0.6, 0.02]).view(2, 1, 1, 1)
    y = torch.tensor([1, 0])
    x_adv = fgsm(m, x, y, 0.1)
    # example 0 (class 1) moves down; example 1 (class 0, gradient pushes x up) moves up
    assert torch.allclose(x_adv.flatten(), torch.tensor([0.5, 0.12]), atol=1e-6)


def test_cw_and_kl_losses_by_hand():
    z = torch.tensor([[2.0, 1.0, 0.5], [2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    # -max(z_y - max_{j!=y} z_j + c, 0)
    assert cw_loss(z, y, 50.0).tolist() == [-(2 - 1 + 50), -(1 - 2 + 50), -(3 - 1 + 50)]
    assert cw_loss(z, y, 0.0).tolist() == [-1.0, 0.0, -2.0]
    p = np.exp([[1.0, 0.0, -1.0]]) / np.exp([[1.0, 0.0, -1.0]]).sum()
    q = np.exp([[0.0, 2.0, 0.0]]) / np.exp([[0.0, 2.0, 0.0]]).sum()
    got = kl_loss(torch.tensor(p, dtype=torch.float32))(torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([0]))
    assert got.item() == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-5)
    ce = ce_loss(z, y)
    assert ce[0].item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0.5))), rel=1e-6)


def test_bad_arguments_are_one_line_errors():
    net, (x, y) = _net(), _batch(2)
    with pytest.raises(ConfigError, match="--eps"):
        pgd(net, x, y, 1.5, 0.1, 3)
    with pytest.raises(ConfigError, match="--steps"):
        pgd(net, x, y, 0.1, 0.1, -1)
    with pytest.raises(UnknownChoiceError, match="valid choices: ce, cw"):
        pgd(net, x, y, 0.1, 0.1, 3, loss="hinge")
    with pytest.raises(UnknownChoiceError, match="valid choices: none, normal, uniform"):
        pgd(net, x, y, 0.1, 0.1, 3, random_start="gauss")
    with pytest.raises(UnknownChoiceError, match="standard"):
        autoattack(net, x, y, 0.1, version="fast")


# --------------------------------------------------------------------------- on a trained model

@pytest.fixture(scope="module")
def digits_mlp():
    """A 2x256 MLP trained for 6 epochs on 1400 sklearn digits (about 1 s), with held-out digits."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    tr, te = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    net = build_net("mlp", 10, (1, 8, 8), [x[tr].mean().item()], [x[tr].std().item()])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(6):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            loss = F.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.zero_grad(set_to_none=True)
    net.eval()
    return net, x[te], y[te]


def _acc(net, x, y) -> float:
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def test_pgd20_at_least_as_strong_as_fgsm(digits_mlp):
    net, x, y = digits_mlp
    eps = 32 / 255
    clean = _acc(net, x, y)
    acc_fgsm = _acc(net, fgsm(net, x, y, eps), y)
    acc_pgd = _acc(net, pgd(net, x, y, eps, eps / 4, 20, generator=torch.Generator().manual_seed(0)), y)
    acc_cw = _acc(net, cw_inf(net, x, y, eps, eps / 4, 20, generator=torch.Generator().manual_seed(0)), y)
    assert clean > 0.9
    assert acc_fgsm < clean
    assert acc_pgd <= acc_fgsm
    assert acc_cw < clean


def test_autoattack_standard_runs_on_cpu(digits_mlp):
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square 5000) on 8 digits: about 4 s on one core.

    At eps = 8/255 the model is robust on these examples, so all four attacks run on every point.
    """
    net, x, y = digits_mlp
    x, y = x[:8], y[:8]
    net.train()  # AutoAttack must not switch modes either (an MLP has no mode-dependent layers)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    state = torch.get_rng_state()
    eps = 8 / 255
    x_adv = autoattack(net, x, y, eps, version="standard", generator=torch.Generator().manual_seed(0))
    assert net.training
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.requires_grad and torch.count_nonzero(p.grad) == 0 for p in net.parameters())
    _check_in_ball(x_adv, x, eps)
    assert _acc(net, x_adv, y) <= _acc(net, x, y)
    net.zero_grad(set_to_none=True)
    net.eval()


def test_autoattack_breaks_an_undefended_model(digits_mlp):
    net, x, y = digits_mlp
    x, y = x[:8], y[:8]
    eps = 64 / 255
    x_adv = autoattack(net, x, y, eps, version="custom", attacks=["apgd-ce"])
    _check_in_ball(x_adv, x, eps)
    assert _acc(net, x_adv, y) < 0.5 < _acc(net, x, y)


def test_autoattack_module_is_the_library():
    import pyautoattack
    assert hasattr(pyautoattack, "AutoAttack")
    assert attacks.AUTOATTACK_VERSIONS[0] == "standard"


def test_autoattack_on_a_batchnorm_model_in_train_mode_evaluates_in_eval_mode(digits_mlp):
    """Issue 18 item 11: a model with BatchNorm left in train mode crashed AutoAttack ("Expected more
    than 1 value per channel when training", its one-example class probe). The attack evaluates in
    eval mode, leaves the BatchNorm statistics alone and gives the model back in train mode."""
    _, x, y = digits_mlp
    x, y = x[:8], y[:8]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    net.train()
    stats = [t.clone() for t in net[2].buffers()]
    eps = 8 / 255
    x_adv = autoattack(net, x, y, eps, version="custom", attacks=["apgd-ce"])
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(stats, net[2].buffers()))  # no batch-statistics update
    _check_in_ball(x_adv, x, eps)
