"""Seconds per PGD-AT training epoch: digits (MLP), and CIFAR-shaped tensors with ResNet-18.

Runs memadv's own epoch function (``memadv.bat.train.train_one_epoch``, PGD-10 training attack,
the objective of ``--method pgd``) for one epoch on digits, and on ``--cifar-images`` random
3x32x32 images with 100 classes through ResNet-18, from which it extrapolates a 50,000-image
CIFAR epoch (time is linear in the number of batches). The last line is the headline figure.

    python bench/pgd_at_epoch.py [--device cpu|cuda] [--cifar-images 256] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.methods import build_objective
from memadv.bat.train import train_one_epoch
from memadv.bat.train_config import TrainConfig
from memadv.data import load_dataset
from memadv.data.dataset import Dataset
from memadv.nets import build_net


def epoch_seconds(dataset: Dataset, net: str, device: torch.device, batch_size: int | None = None) -> float:
    cfg = TrainConfig(method="pgd", dataset=dataset.name, net=net, batch_size=batch_size, progress=False)
    ocfg = ObjectiveConfig().resolved(dataset.name)
    torch.manual_seed(0)
    model = build_net(net, dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std).to(device)
    objective = build_objective(cfg.method, ocfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_one_epoch(model, objective, opt, dataset.x_train, dataset.y_train, cfg, 1, gen, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cifar-images", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))

    digits = load_dataset("digits")
    epoch_seconds(digits, "mlp", device)  # warm-up
    t_digits = epoch_seconds(digits, "mlp", device)
    print(f"digits, MLP, PGD-10 training attack: {t_digits:.2f} s per epoch ({digits.x_train.shape[0]} images)")

    n = args.cifar_images
    g = torch.Generator().manual_seed(0)
    fake = Dataset(name="cifar100", x_train=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                   y_train=torch.randint(0, 100, (n,), generator=g),
                   x_test=torch.zeros(1, 3, 32, 32, dtype=torch.uint8), y_test=torch.zeros(1, dtype=torch.int64),
                   num_classes=100, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    t_small = epoch_seconds(fake, "resnet18", device, batch_size=128)
    per_batch = t_small / -(-n // 128)
    full = per_batch * -(-50000 // 128)
    print(f"CIFAR-shaped 3x32x32, ResNet-18, PGD-10, batch 128: {per_batch:.2f} s per batch "
          f"({n} images in {t_small:.1f} s)")
    print(f"PGD-AT epoch: digits {t_digits:.2f} s; CIFAR-100/ResNet-18 {full / 60:.1f} min per 50,000-image epoch "
          f"(extrapolated), on {device}")


if __name__ == "__main__":
    main()
