"""Loading a user's ImageFolder tree: memadv's first and cached load vs torchvision, side by side.

The tree: Fashion-MNIST's 70,000 images (read from the Debian copy) written once as PNG files,
``TREE/train/<k>-<class>/<id:05d>.png`` (60,000) and ``TREE/test/<k>-<class>/<id:05d>.png`` (10,000),
if it is not there yet. Then, in one run:

* **torchvision**: ``torchvision.datasets.ImageFolder`` (its default PIL loader) with
  ``transforms.PILToTensor()``, read through a ``DataLoader`` (batch 256, ``--workers`` worker
  processes, default: the usable CPUs) into one uint8 tensor per split: what a user would write to
  hold the tree in memory;
* **memadv first**: ``load_dataset("imagefolder", TREE, cache_dir=...)`` with an empty cache
  (lists the tree, decodes in worker processes, fingerprints, writes the run folder's cache);
* **memadv cached**: the same call again in a fresh state of this process (the in-process memo
  cleared), served from the cache file (still listing and stat-ing the 70,000 files for the key).

Each is timed once (``--repeats`` for more, interleaved; the minimum counts). The files are read
once before timing so both sides see them in the page cache. The pixels of both are compared
(torchvision's RGB planes are equal, so its first plane must equal memadv's grey image).
The last line is the headline: first-load and cached-load speed-ups over torchvision.

    python bench/imagefolder_load.py [--tree /tmp/fmnist-imagefolder] [--workers N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from memadv.cpus import usable_cpus
from memadv.data import own_images
from memadv.data.registry import load_dataset


def write_tree(tree: Path) -> None:
    """Fashion-MNIST as PNG files (once; a marker file says the tree is complete)."""
    if (tree / ".complete").is_file():
        return
    from PIL import Image

    ds = load_dataset("fashion-mnist")
    names = [f"{k}-{n.replace('/', '-')}" for k, n in enumerate(ds.class_names)]
    for split in ("train", "test"):
        x, y = ds.images(split)[:, 0].numpy(), ds.labels(split).numpy()
        for i in range(x.shape[0]):
            d = tree / split / names[int(y[i])]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(d / f"{i:05d}.png")
    (tree / ".complete").write_text("ok\n")


def warm(tree: Path) -> int:
    n = 0
    for dirpath, _, files in os.walk(tree):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                n += len(fh.read())
    return n


def torchvision_load(tree: Path, workers: int) -> dict[str, torch.Tensor]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    out = {}
    for split in ("train", "test"):
        folder = datasets.ImageFolder(str(tree / split), transform=transforms.PILToTensor())
        loader = DataLoader(folder, batch_size=256, num_workers=workers, shuffle=False)
        out[split] = torch.cat([x for x, _ in loader])
    return out


def memadv_load(tree: Path, cache: Path) -> torch.Tensor:
    own_images._MEMO.clear()  # a later stage is a fresh process: only the cache file can serve it
    ds = load_dataset("imagefolder", tree, cache_dir=cache)
    return ds.x_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path("/tmp/fmnist-imagefolder"))
    ap.add_argument("--workers", type=int, default=usable_cpus())
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    write_tree(args.tree)
    print(f"tree {args.tree}: written/checked in {time.perf_counter() - t0:.1f} s; {warm(args.tree) / 1e6:.1f} MB of PNG read "
          f"into the page cache")
    print(f"machine: {platform.processor() or platform.machine()}, {usable_cpus()} usable CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (shared machine); torch {torch.__version__}; torchvision workers {args.workers}")
    times: dict[str, list[float]] = {"torchvision": [], "memadv first": [], "memadv cached": []}
    for _ in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="memadv-bench-cache-"))
        try:
            t = time.perf_counter()
            tv = torchvision_load(args.tree, args.workers)
            times["torchvision"].append(time.perf_counter() - t)
            t = time.perf_counter()
            first = memadv_load(args.tree, cache)
            times["memadv first"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cached = memadv_load(args.tree, cache)
            times["memadv cached"].append(time.perf_counter() - t)
        finally:
            shutil.rmtree(cache)
        # same pixels; torchvision orders a class's files like memadv (sorted), classes alike
        assert torch.equal(first, cached) and torch.equal(tv["train"][:, 0:1], first), "pixels differ"
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:>14}: {v:7.2f} s  ({70000 / v:8.0f} images/s)")
    print(f"70,000 PNG files: memadv first load {best['torchvision'] / best['memadv first']:.2f}x torchvision's speed, "
          f"cached load {best['torchvision'] / best['memadv cached']:.1f}x")


if __name__ == "__main__":
    main()
