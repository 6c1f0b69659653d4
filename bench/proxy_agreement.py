"""The proxies' agreement table of docs/estimator.md ("Free proxies") from a finished estimate run.

Two rows per proxy, each with Spearman and Pearson (95% intervals over examples) and the noise
ceiling of the mem it is compared with (split-half reliability, Spearman-Brown corrected, square
root; :mod:`memadv.estimate.proxies`):

* **all M**: proxies of all M models against mem of the same M models (what ``memadv aggregate``
  records in the scores' metadata). Proxy and mem share models, so shared noise can add agreement;
* **first P vs other M - P**: proxies of models 0..P-1 only (a ``--models P`` run, the proxy-only
  mode) against mem of the remaining models: disjoint models, no shared noise.

    python bench/proxy_agreement.py RUN [--proxy-models 16]

The last line is the headline: the best proxy of the disjoint comparison and its Spearman.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from memadv.files.tables import markdown_table
from memadv.estimate.aggregate import load_shards
from memadv.scores.equations import memorization
from memadv.estimate.proxies import PROXIES, aggregate_proxies, agreement, noise_ceiling, proxy_sums
from memadv.estimate.shards import config_from_spec, dataset_for, read_shard
from memadv.layout import RunLayout


def first_models_proxies(run: Path, spec: dict, p: int) -> dict[str, np.ndarray]:
    """Per-example means of each proxy over models 0..p-1 only (read from the first shards)."""
    cfg = config_from_spec(spec)
    sums = None
    for s in range(spec["n_shards"]):
        ids = list(cfg.shard_models(s))
        if ids[0] >= p:
            break
        sh = read_shard(RunLayout(run).shard(s), spec=spec, shard=s, proxies=True)
        rows = np.asarray(ids) < p
        part = proxy_sums({k: v[rows] for k, v in sh["proxies"].items()}, cfg.epochs)
        sums = part if sums is None else {k: (sums[k][0] + a, sums[k][1] + c) for k, (a, c) in part.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {k: np.where(c > 0, a / np.maximum(c, 1), np.nan) for k, (a, c) in sums.items()}


def rows_for(label: str, agree: dict, ceil: dict) -> list[list[str]]:
    def cell(c: dict) -> str:
        return f"{c['r']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}]"
    return [[label, p, cell(agree[p]["spearman"]), cell(agree[p]["pearson"]),
             f"{ceil['spearman']['ceiling']:.3f} / {ceil['pearson']['ceiling']:.3f}"] for p in PROXIES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--proxy-models", type=int, default=16)
    args = ap.parse_args()
    spec, sh, _ = load_shards(args.run)
    y = dataset_for(config_from_spec(spec), spec).y_train.numpy()
    ids, m, p = sh["model_id"], len(sh["model_id"]), args.proxy_models

    def mem_and_ceiling(sel: np.ndarray) -> tuple[np.ndarray, dict]:
        mem = memorization(sh["mask"][sel], sh["train_correct"][sel], y)["mem"].to_numpy()
        halves = [memorization(sh["mask"][sel & (ids % 2 == h)], sh["train_correct"][sel & (ids % 2 == h)], y)
                  ["mem"].to_numpy() for h in (0, 1)]
        return mem, noise_ceiling(*halves, models=int(sel.sum()))

    all_proxies, _ = aggregate_proxies(args.run, spec, range(spec["n_shards"]), y)
    mem_all, ceil_all = mem_and_ceiling(np.ones(m, bool))
    mem_rest, ceil_rest = mem_and_ceiling(ids >= p)
    first = pd.DataFrame(first_models_proxies(args.run, spec, p))
    agree_all, agree_first = agreement(all_proxies, mem_all), agreement(first, mem_rest)
    print(f"{args.run}: {spec['dataset']} {spec['config'].get('per_class') or 'all'} per class, "
          f"{spec['n_train']} training examples, {spec['config']['epochs']} epochs, M = {m} models")
    print("\n".join(markdown_table(["proxies vs mem", "proxy", "Spearman [95% CI]", "Pearson [95% CI]",
                                    "ceiling S / P"],
                                   rows_for(f"all {m} vs all {m}", agree_all, ceil_all)
                                   + rows_for(f"first {p} vs other {m - p}", agree_first, ceil_rest))))
    best = max(PROXIES, key=lambda k: abs(agree_first[k]["spearman"]["r"]))
    print(f"best proxy from {p} models vs mem of the other {m - p}: {best}, Spearman "
          f"{agree_first[best]['spearman']['r']:+.2f} (ceiling {ceil_rest['spearman']['ceiling']:.2f})")


if __name__ == "__main__":
    main()
