"""memadv's estimator training vs the plain single-model loop a user would write, per registered net.

For each input shape (digits 1x8x8 from the embedded set; Fashion-MNIST-shaped 1x28x28, 10
classes, synthetic uint8 tensors) and each net, trains the same K models (same seeds, subsets,
orders, epochs) three ways, side by side in one run:

* **plain**: an ordinary ``nn.Module`` and ``torch.optim.SGD`` loop, one model after the other,
  written here independently of memadv (the baseline of issue 12);
* **packed**: ``train_models(packing="packed")``, all K models in one packed module;
* **auto**: ``train_models(packing="auto")``, what ``memadv estimate`` does (packed, or one by one
  where packing loses on this device).

All three include predicting train and test correctness (what the estimator needs from each model).
Arithmetic is counted with ``torch.utils.flop_counter`` on the plain net (multiply-add = 2 FLOP)
and divided by the SGEMM rate (a 1024x1024x1024 float32 ``torch.mm``) measured around each net in
the same run, so "fraction of the SGEMM rate" is the useful-arithmetic efficiency. Each way is timed
``--repeats`` times, interleaved, and the minimum counts (the same for the SGEMM rate: its maximum). Workloads are
scaled per net so that the whole bench runs in minutes on a 2-core CPU (``--scale`` multiplies
them). The last line is the headline: the MLPs' fraction of the SGEMM rate and every net's ratio
of plain-loop time to memadv's time.

    python bench/packed_vs_single.py [--nets mlp,cnn] [--shapes digits,fashion-mnist] [--threads N] [--scale 1]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from memadv.data import load_dataset
from memadv.data.dataset import Dataset
from memadv.estimate.config import EstimateConfig
from memadv.estimate.seeds import model_seed, subset_mask
from memadv.estimate.train import lr_at, packing_for, train_models
from memadv.nets.registry import NETS, build_net


@dataclass
class Workload:
    models: int
    n_train: int   # examples in the (synthetic) training set; subsets are 70% of it
    n_test: int
    epochs: int
    batch_size: int


# Per net: small enough that the slowest path finishes in about a minute on this CPU, big enough
# that per-step overheads are what they are in a real shard (digits: the first n_train/n_test
# examples of its 1,437/360 split, i.e. all of it for the small nets).
WORKLOADS = {
    "mlp": Workload(100, 3000, 500, 3, 64),  # K = 100: the digits default models per shard
    "cnn": Workload(4, 600, 200, 1, 64),
    "trades-cnn": Workload(4, 600, 200, 1, 64),
    "resnet32": Workload(2, 90, 32, 1, 32),
    "resnet18": Workload(2, 46, 16, 1, 16),
    "preact-resnet18": Workload(2, 46, 16, 1, 16),
    "wrn-28-10": Workload(2, 12, 4, 1, 4),
}


def fashion_shaped(n_train: int, n_test: int) -> Dataset:
    """Synthetic 1x28x28 uint8 images with 10 classes (only shapes matter for speed)."""
    g = torch.Generator().manual_seed(0)
    def imgs(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return Dataset("fashion-mnist-shaped", imgs(n_train), torch.randint(0, 10, (n_train,), generator=g),
                   imgs(n_test), torch.randint(0, 10, (n_test,), generator=g), 10, (0.286,), (0.353,))


def plain_loop(cfg: EstimateConfig, ds: Dataset, ids: list[int]) -> np.ndarray:
    """What a user writes: one nn.Module at a time, same seeds/subsets/orders. Returns test correctness (K, n_test)."""
    out = []
    for m in ids:
        torch.manual_seed(model_seed(cfg.seed, m, "init"))
        net = build_net(cfg.net, ds.num_classes, ds.image_shape, ds.mean, ds.std)
        subset = torch.from_numpy(np.flatnonzero(subset_mask(cfg.seed, m, ds.x_train.shape[0], cfg.subset_ratio)))
        gen = torch.Generator().manual_seed(model_seed(cfg.seed, m, "order"))
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for epoch in range(cfg.epochs):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch, cfg)
            net.train()
            for b in subset[torch.randperm(len(subset), generator=gen)].split(cfg.batch_size):
                loss = F.cross_entropy(net(ds.x_train[b].float() / 255), ds.y_train[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            (net(ds.x_train.float() / 255).argmax(1) == ds.y_train).numpy()  # the estimator needs both
            out.append((net(ds.x_test.float() / 255).argmax(1) == ds.y_test).numpy())
    return np.stack(out)


def flops_per_model(cfg: EstimateConfig, ds: Dataset) -> float:
    """FLOP of one model's training (all epochs) and prediction, counted on the plain net."""
    net = build_net(cfg.net, ds.num_classes, ds.image_shape, ds.mean, ds.std)
    n_in = int(subset_mask(cfg.seed, 0, ds.x_train.shape[0], cfg.subset_ratio).sum())
    x = torch.rand(cfg.batch_size, *ds.image_shape)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(net(x), torch.zeros(cfg.batch_size, dtype=torch.long)).backward()
    step = fc.get_total_flops() / cfg.batch_size  # per example, forward + backward
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()
        net(x)
    fwd = fc.get_total_flops() / cfg.batch_size
    return step * n_in * cfg.epochs + fwd * (ds.x_train.shape[0] + ds.x_test.shape[0])


def sgemm_rate(reps: int = 5) -> float:
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * 1024 ** 3 * reps / (time.perf_counter() - t0)


def timed(f) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = f()
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(n for n in NETS if n in WORKLOADS))
    ap.add_argument("--shapes", default="digits,fashion-mnist")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each net's number of models")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the minimum time counts")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, cpu")
    head: list[str] = []
    for shape in args.shapes.split(","):
        for net in args.nets.split(","):
            w = WORKLOADS[net]
            if shape == "digits":
                full = load_dataset("digits")  # the whole set (1,437/360) unless the net's workload is smaller
                nt, ne = min(w.n_train, full.x_train.shape[0]), min(w.n_test, full.x_test.shape[0])
                ds = Dataset("digits", full.x_train[:nt], full.y_train[:nt], full.x_test[:ne], full.y_test[:ne],
                             full.num_classes, full.mean, full.std)
            else:
                ds = fashion_shaped(w.n_train, w.n_test)
            cfg = EstimateConfig(dataset="digits", net=net, epochs=w.epochs, batch_size=w.batch_size,
                                 augment=False, lr=0.01)
            ids = list(range(max(1, int(w.models * args.scale))))
            flop = flops_per_model(cfg, ds) * len(ids)
            train_models(cfg, ds, ids[:1])  # warm-up (allocator, oneDNN kernels)
            cfg_p = EstimateConfig(**{**cfg.__dict__, "packing": "packed"})
            choice = packing_for(cfg)
            # Interleaved repeats, minimum of each: the machine is shared, so load drifts within a run.
            t_plain = t_packed = t_auto = rate = float("inf")
            rates = [sgemm_rate()]
            for _ in range(args.repeats):
                t, plain = timed(lambda: plain_loop(cfg, ds, ids))
                t_plain = min(t_plain, t)
                t, packed = timed(lambda: train_models(cfg_p, ds, ids))
                t_packed = min(t_packed, t)
                if choice != "packed":
                    t_auto = min(t_auto, timed(lambda: train_models(cfg, ds, ids))[0])
                rates.append(sgemm_rate())
            t_auto = t_packed if choice == "packed" else t_auto
            rate = max(rates)  # the rate this CPU reaches in this run (least disturbed moment)
            agree = float((packed.test_correct == plain).mean())
            print(f"{shape:13s} {net:15s} K={len(ids):3d}  s/model: plain {t_plain / len(ids):7.3f}  "
                  f"packed {t_packed / len(ids):7.3f}  auto({choice}) {t_auto / len(ids):7.3f}  "
                  f"plain/auto {t_plain / t_auto:5.2f}x  plain/packed {t_plain / t_packed:5.2f}x  "
                  f"auto at {flop / t_auto / rate:6.1%} of SGEMM {rate / 1e9:5.1f} GFLOP/s  "
                  f"(test agreement packed vs plain {agree:.3f})", flush=True)
            if net == "mlp":
                head.append(f"{shape} mlp {flop / t_auto / rate:.0%} of SGEMM, {t_plain / t_auto:.1f}x plain")
            else:
                head.append(f"{shape} {net} {t_plain / t_auto:.2f}x")
    print("memadv vs plain loop: " + "; ".join(head))


if __name__ == "__main__":
    main()
