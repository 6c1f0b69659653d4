"""CIFAR-style ResNets and WRN: shapes, the embed/head contract, parameter counts, packed (vmap) use.

Tensors are tiny (batch 2, one or two models) so the file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from memadv.nets import build_net
from memadv.nets.base import Normalize
from memadv.nets.resnet import PreActResNet18, ResNet18
from memadv.nets.wrn import WideResNet

RESNETS = ["resnet18", "preact-resnet18", "resnet32"]
EMBED_DIM = {"resnet18": 512, "preact-resnet18": 512, "resnet32": 64, "wrn-28-10": 640}

# Known parameter counts (CIFAR-style nets, 100 classes unless stated); checked within 3%.
#   ResNet-18: 11.2M (e.g. the CIFAR-100 ResNet-18 of the adversarial-training literature),
#   WRN-28-10: 36.5M (Zagoruyko & Komodakis 2016, Table 1),
#   ResNet-32: 0.46M with 10 classes (He et al. 2016, Table 6) -> 0.47M with 100.
KNOWN_PARAMS = [("resnet18", 100, 11.2e6), ("preact-resnet18", 100, 11.2e6), ("resnet32", 10, 0.46e6),
                ("resnet32", 100, 0.47e6), ("wrn-28-10", 100, 36.5e6), ("wrn-28-10", 10, 36.5e6)]


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine's 2 cores are shared: one intra-op thread is several times faster than two there.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make(name: str, num_classes: int = 7, in_shape=(3, 32, 32)) -> nn.Module:
    c = in_shape[0]
    return build_net(name, num_classes, in_shape, (0.5,) * c, (0.25,) * c)


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("in_shape,batch", [((3, 32, 32), 2), ((3, 64, 64), 1), ((1, 16, 16), 2)])
def test_shapes_and_embed_head(name: str, in_shape, batch: int) -> None:
    torch.manual_seed(0)
    net = make(name, 7, in_shape).eval()
    # Normalize is the first layer, the head is one linear layer.
    assert isinstance(next(iter(net.children())), Normalize)
    assert isinstance(net.head, nn.Linear) and net.head.in_features == EMBED_DIM[name]
    x = torch.rand(batch, *in_shape)
    with torch.no_grad():
        out, h = net(x), net.embed(x)
        assert out.shape == (batch, 7) and h.shape == (batch, EMBED_DIM[name])
        assert torch.equal(out, net.head(h))
    assert torch.isfinite(out).all()


def test_wrn_28_10_shapes() -> None:
    # One 32x32 image for the full WRN-28-10 (~5 GFLOPs per forward); 64x64 inputs go through the
    # same code with widen 1, which only changes the channel counts.
    torch.manual_seed(0)
    net = make("wrn-28-10", 7).eval()
    assert isinstance(next(iter(net.children())), Normalize)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())  # dropout 0 by default
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        h, out = net.embed(x), net(x)
        assert h.shape == (1, 640) and out.shape == (1, 7)
        assert torch.equal(out, net.head(h))
        thin = WideResNet(7, (1, 64, 64), (0.5,), (0.25,), depth=28, widen=1).eval()
        x = torch.rand(2, 1, 64, 64)
        h, out = thin.embed(x), thin(x)
        assert h.shape == (2, 64) and out.shape == (2, 7)
        assert torch.equal(out, thin.head(h))


@pytest.mark.parametrize("name,num_classes,expected", KNOWN_PARAMS)
def test_parameter_counts(name: str, num_classes: int, expected: float) -> None:
    n = sum(p.numel() for p in make(name, num_classes).parameters())
    assert abs(n - expected) / expected < 0.03, (name, n)


def test_resnet32_structure() -> None:
    net = make("resnet32", 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31  # 1 stem + 3 stages x 5 blocks x 2 (option A: no shortcut convs); + fc = 32 layers
    assert [len(s) for s in net.stages] == [5, 5, 5]
    assert [s[-1].conv2.out_channels for s in net.stages] == [16, 32, 64]


def test_wrn_structure_and_dropout() -> None:
    net = WideResNet(10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, depth=28, widen=10, dropout=0.3)
    assert [len(s) for s in net.stages] == [4, 4, 4]
    assert [s[0].conv1.out_channels for s in net.stages] == [160, 320, 640]
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 12
    with pytest.raises(ValueError):
        WideResNet(10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, depth=27)


def _small(name: str, num_classes: int, in_shape) -> nn.Module:
    """The architectures' own classes, narrowed where that keeps the backward pass cheap: ResNet-18s
    with base width 8 (same blocks and code as width 64), WRN-10-1; ResNet-32 at full size."""
    c = in_shape[0]
    mean, std = (0.5,) * c, (0.25,) * c
    if name == "resnet18":
        return ResNet18(num_classes, in_shape, mean, std, base_width=8)
    if name == "preact-resnet18":
        return PreActResNet18(num_classes, in_shape, mean, std, base_width=8)
    if name == "wrn":
        return WideResNet(num_classes, in_shape, mean, std, depth=10, widen=1)
    return make(name, num_classes, in_shape)


@pytest.mark.parametrize("name", RESNETS + ["wrn"])
def test_packed_vmap_train_mode(name: str) -> None:
    """K models stacked with stack_module_state and run with functional_call + vmap in train mode equal
    the K models run one by one: logits, gradients, and BatchNorm running statistics (stacked buffers)."""
    K, B, in_shape = 2, 3, (3, 32, 32)
    torch.manual_seed(0)
    nets = [_small(name, 5, in_shape).train() for _ in range(K)]
    refs = [copy.deepcopy(n) for n in nets]
    x = torch.rand(K, B, *in_shape)
    y = torch.randint(0, 5, (K, B))

    params, buffers = stack_module_state(nets)
    assert any(k.endswith("running_mean") for k in buffers)
    base = copy.deepcopy(nets[0]).to("meta")

    def loss_fn(p, b, xb, yb):
        logits = functional_call(base, (p, b), (xb,))
        return nn.functional.cross_entropy(logits, yb), logits

    losses, logits = vmap(loss_fn)(params, buffers, x, y)
    losses.sum().backward()

    ref_logits = torch.stack([r(x[k]) for k, r in enumerate(refs)])
    sum(nn.functional.cross_entropy(ref_logits[k], y[k]) for k in range(K)).backward()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    for k, r in enumerate(refs):
        for pname, p in r.named_parameters():
            torch.testing.assert_close(params[pname].grad[k], p.grad, rtol=1e-3, atol=1e-5, msg=pname)
        for bname, buf in r.named_buffers():
            # Running mean/var updated in place inside vmap, num_batches_tracked counted per model.
            torch.testing.assert_close(buffers[bname][k], buf, rtol=1e-4, atol=1e-6, msg=bname)
    nbt = [v for k, v in buffers.items() if k.endswith("num_batches_tracked")]
    assert nbt and all(v.tolist() == [1] * K for v in nbt)


def test_packed_models_are_independent() -> None:
    """Each stacked model keeps its own initialisation: different seeds give different logits."""
    torch.manual_seed(1)
    nets = [make("resnet32", 5).eval() for _ in range(2)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(out[1], nets[1](x), rtol=1e-4, atol=1e-5)
