"""Models needed to decide the atypical and typical training sets: plain Eq. 1 against the
regression-adjusted estimate (memadv.estimate.adjust), side by side on the same models.

Reads the shards of a finished estimate (``--run``; e.g. ``memadv estimate --dataset digits --out RUN``)
and takes the plain estimate on *all* its models as the reference: D_atyp = {mem > 0.15},
D_typ = {mem < 0.02} (paper Sec. 3.1/3.2 thresholds). An example is *decided* at M models when the
95% z-interval (estimate +- 1.96 SE) of its estimate from those M models lies wholly on its side of
the threshold.

Two measurements of "models for 95% of D_atyp and of D_typ decided":

* measured: the first M models (M on a grid), both estimators on the same models; the smallest grid M
  at which both sets are >= 95% decided ("> M_total" when never);
* projected: SE ~ 1/sqrt(M), so example i needs M_i = M_total (1.96 SE_i / |mem_i - t|)^2 models
  (SE_i of that estimator on all M_total models; mem_i and t: the reference and its set's
  threshold); the 95th percentile of M_i in each set, the larger of the two.

Also printed: the SE ratio plain / adjusted at equal M (median over each set, and over every
example whose plain SE is not 0). The last line is the headline.

    python bench/adjust_models_needed.py --run RUN [--grid 100,200,...] [--adjust neighbours] [--k 8]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from memadv.estimate.adjust import adjusted_memorization, nearest_same_class
from memadv.estimate.aggregate import load_shards
from memadv.scores.equations import memorization
from memadv.estimate.shards import config_from_spec, dataset_for

Z = 1.959964
ATYP, TYP = 0.15, 0.02
TARGET = 0.95


def decided(mem: np.ndarray, se: np.ndarray, atyp: np.ndarray, typ: np.ndarray) -> tuple[float, float]:
    """Fractions of D_atyp and D_typ decided by the 95% z-interval."""
    with np.errstate(invalid="ignore"):
        a = (mem[atyp] - Z * se[atyp]) > ATYP
        t = (mem[typ] + Z * se[typ]) < TYP
    return float(a.mean()), float(t.mean())


def projected(se: np.ndarray, ref: np.ndarray, atyp: np.ndarray, typ: np.ndarray, m: int) -> tuple[float, float]:
    """95th percentile of the models each example of D_atyp / D_typ needs, SE ~ 1/sqrt(M)."""
    need_a = m * (Z * se[atyp] / (ref[atyp] - ATYP)) ** 2
    need_t = m * (Z * se[typ] / (TYP - ref[typ])) ** 2
    return float(np.quantile(need_a, TARGET)), float(np.quantile(need_t, TARGET))


def estimators(adjust: str, k: int, y: np.ndarray, x: np.ndarray):
    """name -> f(masks, correct) -> (mem, se)."""
    def plain(mk, c):
        df = memorization(mk, c, y)
        return df["mem"].to_numpy(), df["mem_se"].to_numpy()
    cov = nearest_same_class(x, y, k) if adjust == "neighbours" else adjust

    def adjusted(mk, c):
        df = adjusted_memorization(mk, c, cov, y=y, k=k)
        return df["mem_adj"].to_numpy(), df["mem_adj_se"].to_numpy()
    return {"plain": plain, f"adjusted ({adjust}, K={k})": adjusted}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a finished estimate run folder")
    p.add_argument("--grid", default=None, help="comma-separated model counts (default: 10 steps up to all)")
    p.add_argument("--adjust", default="influencers", choices=("neighbours", "influencers"))
    p.add_argument("--k", type=int, default=4, help="covariates per example")
    args = p.parse_args()
    spec, sh, missing = load_shards(args.run, allow_partial=True)
    cfg = config_from_spec(spec)
    ds = dataset_for(cfg, spec)
    y = ds.y_train.numpy()
    x = ds.x_train.numpy().reshape(len(y), -1)
    masks, correct = sh["mask"], sh["train_correct"]
    m_tot = masks.shape[0]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {cfg.dataset}: {len(y)} training examples, "
          f"{m_tot} models ({len(missing)} shards missing)")
    ref = memorization(masks, correct, y)["mem"].to_numpy()
    atyp, typ = ref > ATYP, ref < TYP
    print(f"reference (plain, all {m_tot} models): |D_atyp| = {atyp.sum()}, |D_typ| = {typ.sum()}")
    grid = ([int(g) for g in args.grid.split(",")] if args.grid else
            sorted({int(round(m_tot * f / 10)) for f in range(1, 11)}))
    ests = estimators(args.adjust, args.k, y, x)
    first: dict[str, int | None] = {name: None for name in ests}
    full: dict[str, np.ndarray] = {}
    for m in grid:
        row = [f"M={m:5d}"]
        for name, fn in ests.items():
            t0 = time.perf_counter()
            mem, se = fn(masks[:m], correct[:m])
            sec = time.perf_counter() - t0
            fa, ft = decided(mem, se, atyp, typ)
            if first[name] is None and fa >= TARGET and ft >= TARGET:
                first[name] = m
            if m == m_tot:
                full[name] = se
            row.append(f"{name}: D_atyp {fa:6.1%} D_typ {ft:6.1%} decided ({sec:.1f} s)")
        print("  ".join(row), flush=True)
    names = list(ests)
    if m_tot not in grid:
        for name in names:
            full[name] = ests[name](masks, correct)[1]
    se_p, se_a = full[names[0]], full[names[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = se_p / se_a
    for label, sel in (("D_atyp", atyp), ("D_typ", typ), ("SE_plain > 0", se_p > 0)):
        r = ratio[sel & np.isfinite(ratio)]
        print(f"SE plain / adjusted at M={m_tot}, {label}: median {np.median(r):.3f}, "
              f"mean of SE^2 ratio {np.mean(r ** 2):.3f} ({len(r)} examples)")
    proj = {name: projected(full[name], ref, atyp, typ, m_tot) for name in names}
    for name in names:
        a, t = proj[name]
        print(f"projected models for 95% decided, {name}: D_atyp {a:,.0f}, D_typ {t:,.0f}")
    need = {name: max(proj[name]) for name in names}
    meas = {name: (str(first[name]) if first[name] is not None else f"> {m_tot}") for name in names}
    print(f"HEADLINE {cfg.dataset}: models for 95% of D_atyp and D_typ decided, plain vs adjusted: projected "
          f"{need[names[0]]:,.0f} vs {need[names[1]]:,.0f} ({need[names[0]] / need[names[1]]:.2f}x fewer); "
          f"measured on the grid {meas[names[0]]} vs {meas[names[1]]}")


if __name__ == "__main__":
    main()
