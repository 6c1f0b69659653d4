"""Estimator and adversarial-training throughput on one accelerator (issue 12, goal 4).

1. **Estimator, models per GPU-hour** on CIFAR-shaped input (synthetic 3x32x32 uint8 images,
   10 classes) for ResNet-18 and the small convnet (``trades-cnn``): trains shards of K models
   with memadv's own ``train_models`` (augmentation on, the step ``memadv estimate`` runs) for one
   epoch on ``n`` images, for K = 1, 2, 4, ... until the time per model stops improving, memory
   runs out or the time budget is spent; then, at the best K, once more with bf16 autocast and
   channels-last. Models per GPU-hour extrapolate the best time per model-image to the paper's
   recipe: 160 epochs on 70% subsets of 50,000 images (prediction of 60,000 images included as
   one forward pass each, at a third of the cost of a training image).
2. **Seconds per PGD-AT epoch** of ResNet-18 on CIFAR-100-shaped input, through memadv's trainer
   epoch (``bench/pgd_at_epoch.py``), extrapolated from ``--pgd-images`` to 50,000 images.

``--device cpu --tiny`` is a smoke mode (a few images, K <= 2) that checks the script end to end
without an accelerator; its numbers mean nothing. The last line is the headline.

    bench/gpu.sh                       # = python bench/gpu_speed.py --device cuda
    python bench/gpu_speed.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgd_at_epoch import epoch_seconds  # noqa: E402  (bench/ is a folder of scripts, not a package)

from memadv.data.dataset import Dataset  # noqa: E402
from memadv.estimate.config import EstimateConfig  # noqa: E402
from memadv.estimate.train import train_models  # noqa: E402

PAPER_EPOCHS = 160          # paper App. D
PAPER_TRAIN, PAPER_TEST = 50_000, 10_000
SUBSET_RATIO = 0.7          # Feldman & Zhang 2020


def cifar_shaped(n_train: int, n_test: int, classes: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    def imgs(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return Dataset("cifar-shaped", imgs(n_train), torch.randint(0, classes, (n_train,), generator=g),
                   imgs(n_test), torch.randint(0, classes, (n_test,), generator=g), classes,
                   (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def shard_seconds(ds: Dataset, net: str, k: int, device: torch.device, batch: int, **opts: bool) -> float:
    cfg = EstimateConfig(dataset="cifar10", net=net, epochs=1, batch_size=batch, augment=True,
                         device=str(device), models=max(2, k), models_per_shard=k, **opts)
    sync(device)
    t0 = time.perf_counter()
    train_models(cfg, ds, list(range(k)))
    sync(device)
    return time.perf_counter() - t0


def models_per_hour(sec_per_model: float, n_train: int, n_test: int) -> float:
    """Extrapolate one model's time (1 epoch on SUBSET_RATIO*n_train images + predicting n_train+n_test)."""
    train_imgs, pred_imgs = SUBSET_RATIO * n_train, n_train + n_test
    per_img = sec_per_model / (train_imgs + pred_imgs / 3)
    full = per_img * (PAPER_EPOCHS * SUBSET_RATIO * PAPER_TRAIN + (PAPER_TRAIN + PAPER_TEST) / 3)
    return 3600.0 / full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: a few images, K <= 2 (for CPU tests)")
    ap.add_argument("--images", type=int, default=4096, help="training images per shard trial")
    ap.add_argument("--pgd-images", type=int, default=5120)
    ap.add_argument("--budget-s", type=float, default=150.0, help="time budget per net for the K search")
    args = ap.parse_args()
    device = torch.device(args.device)
    n, n_test, batch, pgd_n = ((24, 8, 8, 4) if args.tiny else (args.images, args.images // 4, 128, args.pgd_images))
    ks = [1, 2] if args.tiny else [1, 2, 4, 8, 16, 32, 64]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + (", --tiny smoke mode: numbers are meaningless" if args.tiny else ""), flush=True)
    ds = cifar_shaped(n, n_test, 10)
    head = []
    for net in ("trades-cnn", "resnet18"):
        shard_seconds(ds, net, 1, device, batch)  # warm-up (cuDNN autotuning, allocator)
        best_k, best = 0, float("inf")
        spent = 0.0
        for k in (ks if not (args.tiny and net == "resnet18") else ks[:1]):  # tiny: keep the CPU smoke short
            try:
                t = shard_seconds(ds, net, k, device, batch)
            except torch.cuda.OutOfMemoryError:
                print(f"{net}: K={k} out of memory", flush=True)
                torch.cuda.empty_cache()
                break
            spent += t
            print(f"{net:10s} K={k:3d}: {t:8.2f} s per shard, {t / k:7.3f} s per model ({n} images, 1 epoch)",
                  flush=True)
            if t / k < best:
                best_k, best = k, t / k
            elif t / k > 1.05 * best or spent > args.budget_s:
                break
            if spent > args.budget_s:
                break
        mph = models_per_hour(best, n, n_test)
        if args.tiny and net == "resnet18":  # bf16 on CPU is emulated and slow; the small net covers the path
            head.append(f"{net} {mph:.3g} models/GPU-hour at K={best_k}")
            continue
        fast = shard_seconds(ds, net, best_k, device, batch, bf16=True, channels_last=True) / best_k
        print(f"{net:10s} K={best_k:3d} with bf16 + channels-last: {fast:7.3f} s per model", flush=True)
        head.append(f"{net} {mph:.3g} models/GPU-hour at K={best_k} "
                    f"(bf16 + channels-last {models_per_hour(fast, n, n_test):.3g})")
    g = torch.Generator().manual_seed(0)
    fake = Dataset(name="cifar100", x_train=torch.randint(0, 256, (pgd_n, 3, 32, 32), dtype=torch.uint8, generator=g),
                   y_train=torch.randint(0, 100, (pgd_n,), generator=g),
                   x_test=torch.zeros(1, 3, 32, 32, dtype=torch.uint8), y_test=torch.zeros(1, dtype=torch.int64),
                   num_classes=100, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pgd_batch = 4 if args.tiny else 128
    t = epoch_seconds(fake, "resnet18", device, batch_size=pgd_batch)
    full = t / -(-pgd_n // pgd_batch) * -(-PAPER_TRAIN // 128) * (1 if not args.tiny else 128 / pgd_batch)
    print(f"PGD-AT (PGD-10), ResNet-18, CIFAR-100-shaped: {t:.2f} s for {pgd_n} images", flush=True)
    print(f"estimator (160 epochs, 70% of 50,000): {'; '.join(head)}; "
          f"PGD-AT ResNet-18 CIFAR-100: {full:.0f} s per 50,000-image epoch (extrapolated), {device}")


if __name__ == "__main__":
    main()
