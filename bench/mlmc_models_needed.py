"""Multi-level Monte Carlo for Eq. 1: can cheap, early-stopped models stand in for most full ones?

Unbiased by construction (Giles 2008): with A_f a model's correctness on example i at the end of
training and A_c its correctness after the first e of E epochs (the same recipe stopped early: the
same init, subset, order and learning rates up to epoch e),

    mem_i = [P(A_c | in) - P(A_c | out)] + [P(A_f - A_c | in) - P(A_f - A_c | out)],

the first term from N0 *cheap* models trained only e epochs (cost e/E each), the second from N1 full
models (cost 1; their epoch-e correctness comes from one extra prediction pass). Each term is a
difference of means with per-model variance v = s_in^2 / r + s_out^2 / (1 - r) (r: the subset ratio),
so at a budget of C full-model units, with a share phi of it on cheap models,

    SE^2 = v_c (e/E) / (phi C) + v_d / ((1 - phi) C)      against plain Eq. 1's   v_f / C.

This script trains ``--models`` digits models with the estimator's own recipe (memadv.estimate.train,
packed, seeds from (run seed, model)), records every model's correctness on every training example
at the end of each epoch in ``--levels`` (a prediction pass between epochs: it draws no random
number and leaves train mode to the next epoch, so the models are the estimator's), and prints, per
coarse epoch e and for the best global phi, the models (in full-model units) needed for 95% of
D_atyp (mem > 0.15) and of D_typ (mem < 0.02) decided by a 95% z-interval, projected with SE ~ 1/sqrt(C)
as in bench/adjust_models_needed.py — plain vs MLMC, side by side on the same models. The variances
are estimated on half of the models and the projection evaluated on the other half (reference sets
and mem from all models), so the chosen phi is not fitted to the noise it is scored on.

    python bench/mlmc_models_needed.py [--models 1000] [--levels 2,4,6,12]

The last line is the headline.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

import memadv.estimate.train as T
from memadv.data.registry import load_dataset
from memadv.estimate.config import EstimateConfig
from memadv.scores.equations import memorization

Z = 1.959964
ATYP, TYP = 0.15, 0.02
TARGET = 0.95


def train_with_levels(cfg: EstimateConfig, models: int, per_shard: int, levels: list[int]
                      ) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray], np.ndarray]:
    """masks (M, n), final correctness (M, n), {epoch: correctness after that epoch (M, n)}, y."""
    ds = load_dataset(cfg.dataset)
    records: dict[int, list[np.ndarray]] = {e: [] for e in levels}
    original = T._train_epoch

    def recording(cfg_, group, opt, epoch, gens, subsets, x_dev, y_dev, model_ids, device, dtype, log):
        out = original(cfg_, group, opt, epoch, gens, subsets, x_dev, y_dev, model_ids, device, dtype, log)
        if epoch + 1 in records:
            module = group.module if group.packed else [group.module]
            records[epoch + 1].append(T.predict_correct(module, ds.x_train, ds.y_train, device, dtype))
        return out

    T._train_epoch = recording
    masks, final = [], []
    try:
        for start in range(0, models, per_shard):
            tm = T.train_models(cfg, ds, range(start, min(start + per_shard, models)))
            masks.append(tm.masks)
            final.append(tm.train_correct)
    finally:
        T._train_epoch = original
    return (np.concatenate(masks), np.concatenate(final), {e: np.concatenate(v) for e, v in records.items()},
            ds.y_train.numpy())


def per_model_variance(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """v_i = s_in^2 / r_i + s_out^2 / (1 - r_i): SE^2 of a difference of means is v_i / M."""
    m = masks.shape[0]
    n_in = masks.sum(0)
    n_out = m - n_in
    x = values.astype(np.float64)
    mean_in = (x * masks).sum(0) / np.maximum(n_in, 1)
    mean_out = (x * ~masks).sum(0) / np.maximum(n_out, 1)
    var_in = ((x - mean_in) ** 2 * masks).sum(0) / np.maximum(n_in - 1, 1)
    var_out = ((x - mean_out) ** 2 * ~masks).sum(0) / np.maximum(n_out - 1, 1)
    return var_in / (n_in / m) + var_out / (n_out / m)


def needed(v: np.ndarray, ref: np.ndarray, atyp: np.ndarray, typ: np.ndarray) -> tuple[float, float]:
    """95th percentile of the budget (full-model units) each example of D_atyp / D_typ needs."""
    need_a = v[atyp] * (Z / (ref[atyp] - ATYP)) ** 2
    need_t = v[typ] * (Z / (TYP - ref[typ])) ** 2
    return float(np.quantile(need_a, TARGET)), float(np.quantile(need_t, TARGET))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=1000)
    p.add_argument("--per-shard", type=int, default=100)
    p.add_argument("--levels", default="2,4,6,12", help="coarse epochs (of the digits recipe's 25)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = EstimateConfig(dataset="digits", models=args.models, full_models=0, proxies=False)
    levels = sorted(int(e) for e in args.levels.split(","))
    t0 = time.perf_counter()
    masks, final, coarse, y = train_with_levels(cfg, args.models, args.per_shard, levels)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {args.threads} threads; digits: {len(y)} "
          f"training examples, {args.models} models x {cfg.epochs} epochs ({cfg.net}, lr {cfg.lr}, x0.1 at "
          f"{cfg.lr_milestones}) trained in {time.perf_counter() - t0:.0f} s, correctness recorded after epochs "
          f"{levels}")
    ref = memorization(masks, final, y)["mem"].to_numpy()
    atyp, typ = ref > ATYP, ref < TYP
    print(f"reference (plain, all models): |D_atyp| = {atyp.sum()}, |D_typ| = {typ.sum()}")
    fit, score = np.arange(args.models) % 2 == 0, np.arange(args.models) % 2 == 1
    v_f = {h: per_model_variance(masks[s], final[s]) for h, s in (("fit", fit), ("score", score))}
    plain_a, plain_t = needed(v_f["score"], ref, atyp, typ)
    plain = max(plain_a, plain_t)
    print(f"plain Eq. 1: models for 95% decided (projected): D_atyp {plain_a:,.0f}, D_typ {plain_t:,.0f}")
    best = (0.0, None, None)
    for e in levels:
        kappa = e / cfg.epochs
        agree = float((coarse[e] == final).mean())
        v_c = {h: per_model_variance(masks[s], coarse[e][s]) for h, s in (("fit", fit), ("score", score))}
        v_d = {h: per_model_variance(masks[s], final[s].astype(np.int8) - coarse[e][s].astype(np.int8))
               for h, s in (("fit", fit), ("score", score))}
        # phi chosen on the fit half, scored on the other
        phis = np.linspace(0.05, 0.95, 19)

        def cost(h: str, phi: float) -> float:
            return max(needed(v_c[h] * kappa / phi + v_d[h] / (1 - phi), ref, atyp, typ))
        phi = float(phis[np.argmin([cost("fit", f) for f in phis])])
        mlmc = cost("score", phi)
        v_mlmc = v_c["score"] * kappa / phi + v_d["score"] / (1 - phi)
        mlmc_a, mlmc_t = needed(v_mlmc, ref, atyp, typ)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_ratio = np.median((v_mlmc / v_f["score"])[atyp & (v_f["score"] > 0)])
        d_atyp = np.median(v_d["score"][atyp] / np.maximum(v_f["score"][atyp], 1e-12))
        print(f"coarse = epoch {e} (cost {kappa:.2f}): correctness agrees with the final model on {agree:.1%} of "
              f"(model, example); median v_d / v_f on D_atyp {d_atyp:.2f}; best phi {phi:.2f} -> MLMC needs "
              f"D_atyp {mlmc_a:,.0f}, D_typ {mlmc_t:,.0f}: {mlmc:,.0f} ({plain / mlmc:.2f}x the plain estimate's "
              f"speed); median SE^2 ratio MLMC / plain at equal budget on D_atyp {var_ratio:.2f}")
        if plain / mlmc > best[0]:
            best = (plain / mlmc, e, phi)
    ratio, e, phi = best
    print(f"HEADLINE digits: models (full-model units) for 95% of D_atyp and D_typ decided, plain vs the best MLMC "
          f"(coarse epoch {e}, {phi:.0%} of the budget on cheap models): {plain:,.0f} vs {plain / ratio:,.0f} "
          + (f"({ratio:.2f}x fewer)" if ratio >= 1 else f"({1 / ratio:.2f}x more: no coarse level helps)"))


if __name__ == "__main__":
    main()
