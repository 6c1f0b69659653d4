"""``scores/proxies.parquet``: the free proxies of mem logged by every subset model, and how they
agree with mem (definitions in :mod:`memadv.estimate.proxy_log`).

Per training example i, over the models that trained on it (S_i) or held it out (O_i):

* ``cum_loss``      = mean over m in S_i of the sum over epochs of its training loss (Ravikumar et al. 2025);
* ``forgetting``    = mean over m in S_i of its forgetting events, counting an example that model
  never classified correctly in any epoch as ``epochs`` events (Toneva et al. 2019 count it as
  infinitely forgotten; ``epochs`` exceeds every possible count, which is at most epochs / 2);
* ``first_learned`` = mean over m in S_i of the first epoch from which it stays correct (``epochs``:
  not learned by the end);
* ``learning_speed`` = mean over m in S_i of the fraction of epochs its training pass was correct
  (Jiang et al. 2021's cumulative training accuracy);
* ``heldout_loss``  = mean over m in O_i of the trained model's loss on it (no augmentation).

Higher mem goes with higher ``cum_loss``, ``forgetting``, ``first_learned`` and ``heldout_loss``, and
with lower ``learning_speed``. Aggregation streams the shards (one shard's K x n_train arrays at a
time), so memory does not grow with the number of models.

Agreement (:func:`agreement`): Spearman and Pearson correlation of each proxy with mem over the
examples where both are defined, with 95% intervals over examples (Fisher z; Spearman with the
Bonett & Wright 2000 variance, (1 + r^2 / 2) / (n - 3)), beside the noise ceiling: the split-half
reliability of mem — mem from the even-numbered and from the odd-numbered models (two disjoint
halves), correlated, then Spearman-Brown corrected to the full count, rel = 2 r / (1 + r). A proxy
that were mem itself, measured without noise, would correlate with the M-model mem at about
sqrt(rel) (the attenuation bound); ``ceiling`` is that bound.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from memadv.estimate.shards import read_shard
from memadv.layout import RunLayout

PROXIES = ("cum_loss", "forgetting", "first_learned", "learning_speed", "heldout_loss")
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def proxy_sums(proxies: dict[str, np.ndarray], epochs: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-example (sum, count) over one shard's models of each proxy of :data:`PROXIES`, from the
    decoded shard columns (name -> (K, n_train), NaN where undefined)."""
    never = proxies["correct_epochs"] == 0
    per_model = {"cum_loss": proxies["cum_loss"],
                 "forgetting": np.where(never, float(epochs), proxies["forgetting"]),
                 "first_learned": proxies["first_learned"],
                 "learning_speed": proxies["correct_epochs"] / epochs,
                 "heldout_loss": proxies["heldout_loss"]}
    return {k: (np.nansum(v, 0), (~np.isnan(v)).sum(0)) for k, v in per_model.items()}


def aggregate_proxies(run_dir: Path, spec: dict[str, Any], shards: Sequence[int], y_train: np.ndarray
                      ) -> tuple[pd.DataFrame | None, list[int]]:
    """(proxies table or None, shards without proxies) from the finished ``shards`` of a run.

    The table (positions of the data set as loaded, like mem before its canonical ids): ``idx,
    label``, each of :data:`PROXIES`, ``n_in`` / ``n_out`` (models whose proxies cover the example
    in / out of their subset). None when no shard logged proxies; shards without them (written
    before proxies existed, or with ``--proxies false``) are left out and listed.
    """
    n, epochs = int(spec["n_train"]), int(spec["config"]["epochs"])
    total = {k: (np.zeros(n), np.zeros(n, np.int64)) for k in PROXIES}
    without = []
    for s in shards:
        sh = read_shard(RunLayout(run_dir).shard(s), spec=spec, shard=s, proxies=True)
        if sh["proxies"] is None:
            without.append(s)
            continue
        for k, (add, cnt) in proxy_sums(sh["proxies"], epochs).items():
            total[k][0][:] += add
            total[k][1][:] += cnt
    if len(without) == len(shards):
        return None, without
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = {k: np.where(c > 0, s / np.maximum(c, 1), np.nan) for k, (s, c) in total.items()}
    return pd.DataFrame({"idx": np.arange(n, dtype=np.int64), "label": np.asarray(y_train).astype(np.int64), **cols,
                         "n_in": total["cum_loss"][1], "n_out": total["heldout_loss"][1]}), without


def correlation(a: np.ndarray, b: np.ndarray, method: str) -> dict[str, float]:
    """``method`` ("pearson" or "spearman") correlation of a and b over the pairs where both are
    finite, with its 95% interval (Fisher z; see the module docstring) and n."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    r = float(pd.Series(a[ok]).corr(pd.Series(b[ok]), method=method)) if n > 2 else float("nan")
    if n <= 3 or not math.isfinite(r) or abs(r) >= 1:
        return {"r": r, "lo": float("nan"), "hi": float("nan"), "n": n}
    var = (1 + r * r / 2 if method == "spearman" else 1.0) / (n - 3)
    z, half = math.atanh(r), Z95 * math.sqrt(var)
    return {"r": r, "lo": math.tanh(z - half), "hi": math.tanh(z + half), "n": n}


def noise_ceiling(mem_even: np.ndarray, mem_odd: np.ndarray, models: int) -> dict[str, dict[str, float]]:
    """Noise ceiling of mem from two disjoint halves of the ``models`` models (mem of the even and of
    the odd model ids): per method, their correlation ``half``, its Spearman-Brown reliability ``rel``
    = 2 r / (1 + r) for all models, and the ``ceiling`` sqrt(rel) of a proxy's correlation with mem."""
    out = {}
    for method in ("spearman", "pearson"):
        r = correlation(mem_even, mem_odd, method)["r"]
        rel = 2 * r / (1 + r) if r > -1 else float("nan")
        out[method] = {"half": r, "rel": rel, "ceiling": math.sqrt(rel) if rel >= 0 else float("nan"),
                       "models": int(models)}
    return out


def agreement(proxies: pd.DataFrame, mem: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    """proxy -> method -> :func:`correlation` of that proxy column with mem (rows in the same order)."""
    return {p: {m: correlation(proxies[p].to_numpy(np.float64), np.asarray(mem, np.float64), m)
                for m in ("spearman", "pearson")} for p in PROXIES}


def agreement_lines(summary: dict[str, Any], scores_dir: str) -> list[str]:
    """Lines for the terminal from the scores' ``proxies`` metadata: each proxy's Spearman / Pearson
    with mem beside the noise ceiling, or why there are no proxies."""
    if "missing" in summary:
        return [f"proxies: none ({summary['missing']}); proxies.parquet not written"]
    ceil = summary["noise_ceiling"]
    lines = [f"{scores_dir}/proxies.parquet: training-time proxies of mem from {summary['n_models']} models "
             f"(a proxy ranking, not the estimate). Spearman / Pearson with mem of {ceil['spearman']['models']} "
             f"models; noise ceiling {ceil['spearman']['ceiling']:.2f} / {ceil['pearson']['ceiling']:.2f} "
             f"(split-half reliability, Spearman-Brown corrected, square root):"]
    lines += [f"  {p:15s} {by['spearman']['r']:+.2f} / {by['pearson']['r']:+.2f}" for p, by in summary["agreement"].items()]
    return lines
