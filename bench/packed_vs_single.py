"""Packed vs one-by-one ERM training of the estimator's models, measured side by side.

Trains the same K models (same seeds, subsets, orders) once packed (one PackedNets, K at a time)
and once one by one (K=1 each), on the embedded digits set, and prints models per second of both
and their ratio. The last line is the headline figure.

    python bench/packed_vs_single.py [--net mlp] [--models 32] [--epochs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from memadv.data import load_dataset
from memadv.estimate.config import EstimateConfig
from memadv.estimate.train import train_models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="mlp")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    cfg = EstimateConfig(dataset=args.dataset, net=args.net, epochs=args.epochs, device=args.device)
    ids = list(range(args.models))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print(f"dataset {args.dataset}, net {args.net}, {args.models} models x {args.epochs} epochs, "
          f"batch {cfg.batch_size}, subset ratio {cfg.subset_ratio}")

    train_models(cfg, ds, ids[:2])  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    packed = train_models(cfg, ds, ids)
    t_packed = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [train_models(cfg, ds, [m]) for m in ids]
    t_single = time.perf_counter() - t0

    agree = sum((packed.test_correct[k] == s.test_correct[0]).mean() for k, s in enumerate(single)) / len(ids)
    print(f"packed:     {t_packed:8.2f} s  ({args.models / t_packed:7.2f} models/s)")
    print(f"one by one: {t_single:8.2f} s  ({args.models / t_single:7.2f} models/s)")
    print(f"test predictions agreeing between the two: {agree:.4f}")
    print(f"packed training is {t_single / t_packed:.1f}x faster than one by one "
          f"({args.models} {args.net} models on {args.dataset}, {args.device})")


if __name__ == "__main__":
    main()
