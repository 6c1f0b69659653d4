"""Cost of logging the free proxies (memadv.estimate.proxy_log) in the estimator's training.

The user's alternative is training without them (``--proxies false``). For each workload, the
same shard (same seeds, subsets, orders) is trained by ``train_models`` with and without
proxies, side by side, interleaved ``--repeats`` times (alternating which goes first); the minimum
of each counts. Workloads:
a digits shard of the packed MLP (K = 100, the digits default per shard), a Fashion-MNIST
``--per-class 100`` shard (K = 16, its default per shard), both packed, and the CNN on digits with
augmentation, trained one by one on CPU (the path where logging is per model). Fewer epochs than
the defaults (25, 60) keep the bench short; both sides scale alike. The last line is the headline: time with
proxies / time without, per workload.

    python bench/proxy_logging.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch

from memadv.data import load_dataset
from memadv.estimate.config import EstimateConfig
from memadv.estimate.train import train_models

WORKLOADS = {  # name -> (dataset, load options, EstimateConfig overrides, models)
    "digits mlp K=100": ("digits", {}, dict(epochs=5), 100),
    "fashion-mnist/100 mlp K=16": ("fashion-mnist", dict(per_class=100, test_per_class=100), dict(epochs=10), 16),
    "digits cnn K=4 aug": ("digits", {}, dict(net="cnn", epochs=1, augment=True), 4),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    head = []
    for name, (dataset, options, overrides, k) in WORKLOADS.items():
        ds = load_dataset(dataset, **options)
        cfg = EstimateConfig(dataset=dataset, **options, **overrides)
        times = {True: [], False: []}
        for r in range(args.repeats):
            for on in ((False, True) if r % 2 == 0 else (True, False)):  # alternate which side goes first
                t = time.perf_counter()
                train_models(dataclasses.replace(cfg, proxies=on), ds, range(k))
                times[on].append(time.perf_counter() - t)
        off, on = min(times[False]), min(times[True])
        print(f"{name:28s} without {off:7.2f} s  with {on:7.2f} s  ratio {on / off:.3f}")
        head.append(f"{name} x{on / off:.3f}")
    print("proxy logging, time with / without: " + "; ".join(head))


if __name__ == "__main__":
    main()
