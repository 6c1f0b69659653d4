"""The small nets: shapes on every input size the registry serves, and the packed MLP's exactness."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memadv.nets import build_net
from memadv.nets.packed import PackedMLP, PackedNets, pack

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]  # digits, (fashion-)mnist, cifar, tiny imagenet


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["mlp", "cnn", "trades-cnn", "wk-cnn", "wk-cnn-fc1024", "wk-cnn-wide"])
def test_small_nets_follow_the_contract(name, shape):
    torch.manual_seed(0)
    net = build_net(name, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0])
    x = torch.rand(3, *shape)
    logits = net(x)
    assert logits.shape == (3, 10)
    assert torch.equal(logits, net.head(net.embed(x)))
    packed = pack([net, build_net(name, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0])])
    assert torch.allclose(packed(x, shared_input=True)[0], logits, atol=1e-5)


def test_trades_cnn_matches_the_reference_layout_on_28x28():
    """TRADES' small CNN flattens a 64x4x4 map on MNIST-sized input and has a zero-initialised last layer."""
    net = build_net("trades-cnn", 10, (1, 28, 28), (0.5,), (0.25,))
    fc1 = [m for m in net.body if isinstance(m, torch.nn.Linear)][0]
    assert fc1.in_features == 64 * 4 * 4 and fc1.out_features == 200
    assert not net.head.weight.any()


def test_wong_kolter_cnn_matches_the_reference_size_on_28x28():
    """fast_adversarial's mnist_net: 16 and 32 channels, a 32x7x7 map, 100 hidden units, 166,406
    parameters; the wide variant has 8x the channels, the study's net 1,024 hidden units."""
    net, wide, fc1024 = (build_net(n, 10, (1, 28, 28), (0.5,), (0.25,))
                         for n in ("wk-cnn", "wk-cnn-wide", "wk-cnn-fc1024"))
    assert sum(p.numel() for p in net.parameters()) == 166_406
    fc = [m for m in wide.body if isinstance(m, torch.nn.Linear)][0]
    assert fc.in_features == 256 * 7 * 7 and fc.out_features == 100
    fc = [m for m in fc1024.body if isinstance(m, torch.nn.Linear)][0]
    assert fc.in_features == 32 * 7 * 7 and fc.out_features == 1024 and fc1024.head.in_features == 1024
    assert sum(p.numel() for p in fc1024.parameters()) == 1_625_402


def test_packed_mlp_equals_vmap_packing_in_value_and_gradient():
    torch.manual_seed(1)
    nets = [build_net("mlp", 10, (1, 8, 8), (0.5,), (0.25,)) for _ in range(3)]
    fast, ref = PackedMLP(nets), PackedNets(nets)
    assert isinstance(pack(nets), PackedMLP)
    x = torch.rand(3, 5, 1, 8, 8, dtype=torch.float64)
    fast, ref = fast.double(), ref.double()
    y = torch.randint(0, 10, (15,))
    for m in (fast, ref):
        torch.nn.functional.cross_entropy(m(x).flatten(0, 1), y).backward()
    assert torch.allclose(fast(x), ref(x), atol=1e-12)
    for a, b in zip(fast.stacked, ref.stacked):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)
    # model k's slice of the stacked parameters is net k's state dict, name for name
    sd = {n: t[2] for n, t in zip(fast.param_names, fast.stacked)}
    assert sd.keys() == nets[2].state_dict().keys()
    assert all(torch.equal(sd[k], v.double()) for k, v in nets[2].state_dict().items())


def test_gpu_bench_smoke_on_cpu():
    """bench/gpu.sh --device cpu --tiny runs end to end and prints its headline last."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["bash", str(root / "bench" / "gpu.sh"), "--device", "cpu", "--tiny"],
                         env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert "models/GPU-hour" in last and "PGD-AT ResNet-18 CIFAR-100" in last
