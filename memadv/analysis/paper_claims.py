"""The paper's claims C1-C6, each decided from effects with 95% CIs over paired seeds.

Every claim gets one of the verdicts of :mod:`memadv.analysis.verdicts` — supported / contradicted
/ inconclusive — or "not decided" when its runs are missing or its premise fails. Rules (the exact
tests, margins and sources; ``docs/report.md`` repeats them):

* **Fit premise** (Section 3.1 reads Fig. 1 as "the models memorize all clean atypical samples and
  most adversarial ones": ≈ 100% clean and ≈ 80% PGD-20 accuracy on D_atyp at the end). C1 and C2
  are about what memorizing D_atyp does, so they are decided only when the Section 3.1 PGD-AT runs
  fit D_atyp: mean over seeds at the last epoch of train-atypical clean >= 95% and PGD-20 >= 80%.
  Otherwise both read "not decided (premise fails)", with the numbers.
* C1: the premise itself (its two means and their CIs).
* C2, as a counterfactual: the Section 3.2 PGD-AT runs at the largest and smallest p evaluate their
  last weights on all of D'_atyp (``atypical_test.parquet``); p = max minus p = min, paired by seed:
  clean > 0 and PGD-20 < 5 points (the paper: robustness "keeps constant around 10%"). The
  within-run reading (last 20% minus first 20% of the epochs of the Section 3.1 run on D'_atyp,
  same tests) is shown beside it and decides only where those rows are missing.
* C3: Section 3.2 PGD-AT, last epoch, D'_typ: accuracy at the smallest p minus at the largest p,
  paired by seed, > 0 for clean and for PGD-20.
* C3-P, C3's poisoning control: PGD-AT on D_typ + the low poisoning-score half of D_atyp minus on
  D_typ + the high half (equal sizes, ranked under the Section 3.1 PGD-AT model of the same seed),
  last epoch, all of D'_typ, paired by seed: > 0 for clean and for PGD-20.
* C3-R, C3's random-addition control (where the estimate left training images out, --per-class):
  PGD-AT on D_typ + as many unused training images of each class as D_atyp has, minus the Section
  3.2 run at the largest p (D_typ + D_atyp), last epoch, all of D'_typ, paired by seed: > 0 for
  clean and for PGD-20.
* C4: Section 3.2 ERM, clean: largest p minus smallest p > -1 point (non-inferiority), on every
  test image outside D'_atyp (``atypical_test.parquet``; unlike D'_typ, which keeps only images ERM
  gets >= 80% right, it has headroom); D'_typ is shown beside it and decides only where those rows
  are missing.
* C5: Section 3.2 PGD-AT, last epoch: separation 1 - S at the smallest p minus at the largest p > 0.
* C6, one row per BAT setting (no "some row qualifies" rule): BAT minus PGD-AT, both at their last
  epoch (matched selection: neither is chosen on the test set), on all test images: clean > 0 and
  PGD-20 > -1 point. The paper's protocol (PGD-AT at its test-selected best PGD-20 epoch) is shown
  beside it, labelled, and decides nothing.

Accuracies come from ``final.parquet`` (the full test set at the last checkpoint) where the run has
one, else from the last row of ``metrics.parquet`` (whose per-epoch evaluation may be a subsample:
the numbers say which). Each part also states how many paired seeds would give 80% power against a
1-point (0.01 for the cosine measure) true difference (:func:`verdicts.seeds_for_power`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from memadv.analysis import verdicts as v
from memadv.analysis.sec31 import early_late
from memadv.bat.runs import OUTSIDE_ATYPICAL

FIT_CLEAN = 95.0        # premise: train-atypical clean accuracy (%) at the end (paper Sec. 3.1, Fig. 1: ≈ 100%)
FIT_ADV = 80.0          # premise: train-atypical PGD-20 accuracy (%) at the end (paper Sec. 3.1, Fig. 1: ≈ 80%)
C2_ADV_MAX_RISE = 5.0   # C2: D'_atyp PGD-20 rises by less than this many points ("keeps constant")
C4_MARGIN = -1.0        # C4: ERM typical-test clean accuracy may not drop by more than 1 point
C6_ADV_MARGIN = -1.0    # C6: BAT's PGD-20 accuracy within 1 point of PGD-AT's (or better)
POWER_DELTA_PTS = 1.0   # seed planning: the true difference (points) a comparison should detect
POWER_DELTA_COS = 0.01  # seed planning for the cosine separation


@dataclass
class Claim:
    id: str
    section: str
    text: str
    verdict: str
    numbers: str
    effects: list[dict[str, Any]] = field(default_factory=list)


PerSeed = dict[int, float]


def _part(effect: v.Effect, rule: Callable[[v.Effect, float], str], margin: float, sign: str,
          delta: float = POWER_DELTA_PTS, fmt: str = "{:+.1f}") -> tuple[str, str, dict[str, Any]]:
    verdict = rule(effect, margin)
    need = v.seeds_for_power(effect.sd, delta)
    plan = f"; {need if need is not None and need <= v.MAX_SEEDS_PLANNED else '> 1000'} paired seeds for 80% " \
           f"power at {delta:g}" if need is not None else ""
    text = f"{effect.text(fmt)}, needs {sign} {margin:g} -> {verdict}{plan}"
    return verdict, text, {"what": effect.what, "estimate": effect.estimate, "ci95": [effect.lo, effect.hi],
                           "seeds": list(effect.seeds), "test": f"{sign} {margin:g}", "verdict": verdict,
                           "seeds_for_80pct_power": need}


def _claim(cid: str, section: str, text: str, parts: list[tuple[str, str, dict[str, Any]]], prefix: str = "",
           verdict: str | None = None) -> Claim:
    return Claim(cid, section, text, verdict or v.combine(p[0] for p in parts),
                 prefix + "; ".join(p[1] for p in parts), [p[2] for p in parts])


def _missing(cid: str, section: str, text: str, why: str) -> Claim:
    return Claim(cid, section, text, f"{v.NOT_DECIDED} (missing runs or measurements)", why)


# --------------------------------------------------------------------------- Section 3.1

def _last(df: pd.DataFrame, col: str) -> float:
    return 100.0 * float(df[col].iloc[-1]) if col in df and len(df) else math.nan


def fit_premise(pgd: Mapping[int, pd.DataFrame]) -> tuple[bool, v.Effect, v.Effect]:
    """(holds, clean, PGD-20) of the fit premise: train-atypical accuracy (%) at the last epoch of
    each seed's Section 3.1 PGD-AT run; holds when both means reach FIT_CLEAN / FIT_ADV."""
    clean = v.mean_effect({s: _last(m, "train/atypical/clean") for s, m in pgd.items()},
                          "PGD-AT train-atypical clean, last epoch", unit="%")
    adv = v.mean_effect({s: _last(m, "train/atypical/adv") for s, m in pgd.items()},
                        "PGD-AT train-atypical PGD-20, last epoch", unit="%")
    holds = bool(math.isfinite(clean.estimate) and math.isfinite(adv.estimate)
                 and clean.estimate >= FIT_CLEAN and adv.estimate >= FIT_ADV)
    return holds, clean, adv


def _premise_text(clean: v.Effect, adv: v.Effect) -> str:
    return (f"fit premise (clean >= {FIT_CLEAN:g}% and PGD-20 >= {FIT_ADV:g}% on D_atyp): "
            f"{clean.text('{:.1f}')}; {adv.text('{:.1f}')}")


C1_TEXT = ("adversarial training fits (memorizes) the atypical training set: train-atypical clean ≈ 100% and "
           "PGD-20 ≈ 80% at the end")
C2_TEXT = ("memorizing atypical examples helps their clean test accuracy but not their robustness: adversarial "
           "training with D_atyp (Section 3.2, p = 100%) raises D'_atyp clean accuracy over training without it "
           "(p = 0%), and does not raise its PGD-20 accuracy")
def claim_c1(pgd: Mapping[int, pd.DataFrame] | None) -> Claim:
    if not pgd or not all("train/atypical/clean" in m for m in pgd.values()):
        return _missing("C1", "3.1", C1_TEXT, "no Section 3.1 PGD-AT run with train/atypical metrics")
    holds, clean, adv = fit_premise(pgd)
    verdict = v.SUPPORTED if holds else f"{v.NOT_DECIDED} (premise fails: the network does not fit D_atyp)"
    return Claim("C1", "3.1", C1_TEXT, verdict, _premise_text(clean, adv))


def _atyp_test(kind: str) -> Callable[[Any], float]:
    attack = "clean" if kind == "clean" else "pgd"
    return lambda r: final_accuracy(getattr(r, "atypical_test", None), "last", "test/atypical", attack)


def claim_c2(pgd: Mapping[int, pd.DataFrame] | None, runs: list[Any] | None = None) -> Claim:
    """C2, decided as a counterfactual where the Section 3.2 PGD-AT runs at the smallest and largest p
    evaluated all of D'_atyp (``atypical_test.parquet``): paired over seeds, p = max minus p = min,
    clean > 0 and PGD-20 < ``C2_ADV_MAX_RISE``. The within-run reading (last minus first 20% of the
    epochs of the Section 3.1 run) is shown beside it, and decides only where the counterfactual is
    missing. Either way "not decided" when the fit premise (C1) fails: C2 is a claim about memorizing."""
    ps = _ps(runs or [], "pgd")
    counterfactual: list[tuple[str, str, dict[str, Any]]] = []
    if len(ps) >= 2:
        lo, hi = ps[0], ps[-1]
        for kind, name, rule, margin, sign in (("clean", "clean", v.above, 0.0, ">"),
                                               ("adv", "PGD-20", v.below, C2_ADV_MAX_RISE, "<")):
            eff = v.paired_effect(_arm(runs, "pgd", lo, _atyp_test(kind)), _arm(runs, "pgd", hi, _atyp_test(kind)),
                                  f"PGD-AT D'_atyp {name}, p = {hi}% minus p = {lo}% (Section 3.2, last epoch)")
            if eff.seeds:
                counterfactual.append(_part(eff, rule, margin, sign))
    within: list[tuple[str, str, dict[str, Any]]] = []
    n: float = math.nan
    if pgd and all("test/atypical/clean" in m for m in pgd.values()):
        rise_clean: PerSeed = {}
        rise_adv: PerSeed = {}
        for s, m in pgd.items():
            ce, cl = early_late(m, "test/atypical/clean")
            ae, al = early_late(m, "test/atypical/adv")
            rise_clean[s], rise_adv[s] = 100.0 * (cl - ce), 100.0 * (al - ae)
        first = next(iter(pgd.values()))
        n = float(first["test/atypical/n"].iloc[-1]) if "test/atypical/n" in first else math.nan
        within = [_part(v.mean_effect(rise_clean, "D'_atyp clean, last 20% minus first 20% of epochs"), v.above,
                        0.0, ">"),
                  _part(v.mean_effect(rise_adv, "D'_atyp PGD-20, last 20% minus first 20% of epochs"), v.below,
                        C2_ADV_MAX_RISE, "<")]
    if not counterfactual and not within:
        return _missing("C2", "3.1", C2_TEXT, "no Section 3.2 PGD-AT runs with atypical_test.parquet at two values "
                                              "of p and no Section 3.1 PGD-AT run with test/atypical metrics")
    deciding = counterfactual or within
    prefix = f"n(D'_atyp) = {int(n) if math.isfinite(n) else '?'}; "
    if counterfactual:
        prefix += "counterfactual (deciding): "
    shown = "; within-run reading (Section 3.1, not deciding): " + "; ".join(p[1] for p in within) \
        if counterfactual and within else ""
    if pgd and all("train/atypical/clean" in m for m in pgd.values()):
        holds, clean, adv = fit_premise(pgd)
        if not holds:
            c = _claim("C2", "3.1", C2_TEXT, deciding, prefix, f"{v.NOT_DECIDED} (premise fails: the network does "
                                                             f"not fit D_atyp)")
            c.numbers = _premise_text(clean, adv) + "; " + c.numbers + shown
            return c
    c = _claim("C2", "3.1", C2_TEXT, deciding, prefix)
    c.numbers += shown
    return c


# --------------------------------------------------------------------------- Section 3.2

C3_TEXT = "in adversarial training, more atypical training examples lower typical-test clean and PGD-20 accuracy"
C4_TEXT = "in ERM, more atypical training examples do not lower typical-test accuracy"
C5_TEXT = ("(Table 1) with more atypical examples the penultimate representations of different classes get less "
           "separated (adversarial training)")


def final_accuracy(final: pd.DataFrame | None, checkpoint: str, subset: str, attack: str) -> float:
    """Accuracy (%) of ``final.parquet`` for one checkpoint, subset and attack; NaN when absent."""
    if final is None:
        return math.nan
    hit = final[(final["checkpoint"] == checkpoint) & (final["subset"] == subset) & (final["attack"] == attack)]
    return 100.0 * float(hit["acc"].iloc[0]) if len(hit) else math.nan


def last_accuracy(metrics: pd.DataFrame, final: pd.DataFrame | None, subset: str, kind: str) -> tuple[float, str]:
    """(accuracy %, source) at the last epoch: ``final.parquet`` (full evaluation) where present,
    else the last ``metrics.parquet`` row (``kind`` clean/adv: the per-epoch evaluation)."""
    acc = final_accuracy(final, "last", subset, "clean" if kind == "clean" else "pgd")
    if math.isfinite(acc):
        return acc, "final"
    return _last(metrics, f"{subset}/{kind}"), "metrics"


def _arm(runs: list[Any], method: str, p: int, value: Callable[[Any], float]) -> PerSeed:
    return {int(r.seed): value(r) for r in runs if r.method == method and int(r.p) == p}


def _ps(runs: list[Any], method: str) -> list[int]:
    return sorted({int(r.p) for r in runs if r.method == method})


def _acc(kind: str) -> Callable[[Any], float]:
    return lambda r: last_accuracy(r.metrics, getattr(r, "final", None), "test/all", kind)[0]


def _source_note(runs: list[Any], what: str = "D'_typ") -> str:
    full = all(getattr(r, "final", None) is not None for r in runs)
    return f"all of {what} (final.parquet)" if full else f"{what} of the last per-epoch evaluation (metrics.parquet)"


def claim_c3(runs: list[Any] | None) -> Claim:
    ps = _ps(runs or [], "pgd")
    if len(ps) < 2:
        return _missing("C3", "3.2", C3_TEXT, "no Section 3.2 PGD-AT runs at two values of p")
    lo, hi = ps[0], ps[-1]
    parts = [_part(v.paired_effect(_arm(runs, "pgd", hi, _acc(k)), _arm(runs, "pgd", lo, _acc(k)),
                                   f"PGD-AT D'_typ {name}, p = {lo}% minus p = {hi}%"), v.above, 0.0, ">")
             for k, name in (("clean", "clean"), ("adv", "PGD-20"))]
    return _claim("C3", "3.2", C3_TEXT, parts, f"last epoch, {_source_note(runs)}; ")


C3P_TEXT = ("(C3's control) the atypical examples that poison (high Eq. 4 score) lower typical-test accuracy more "
            "than the same number that do not")


def claim_c3_poisoning(controls: list[Any] | None) -> Claim:
    """C3's poisoning control (:mod:`memadv.analysis.poisoning_control`): PGD-AT on D_typ + the low
    poisoning-score half of D_atyp minus on D_typ + the high half, last epoch, all of D'_typ, paired by
    seed; > 0 for clean and for PGD-20 supports poisoning as what lowers the typical-test accuracy."""
    runs = controls or []

    def arm(half: str, attack: str) -> PerSeed:
        return {int(r.seed): final_accuracy(r.final, "last", "test/all", attack) for r in runs if r.half == half}

    if not arm("high", "clean") or not arm("low", "clean"):
        return _missing("C3-P", "3.2", C3P_TEXT, "no poisoning control runs (the pipeline's `sec32 controls` stage)")
    parts = [_part(v.paired_effect(arm("high", attack), arm("low", attack),
                                   f"PGD-AT D'_typ {name}, D_typ + low half minus D_typ + high half of D_atyp"),
                   v.above, 0.0, ">")
             for attack, name in (("clean", "clean"), ("pgd", "PGD-20"))]
    return _claim("C3-P", "3.2", C3P_TEXT, parts, "last epoch, all of D'_typ (final.parquet); ")


C3R_TEXT = ("(C3's control) adding D_atyp lowers typical-test accuracy more than adding as many ordinary training "
            "images of the same classes")


def claim_c3_random(controls: list[Any] | None, runs: list[Any] | None) -> Claim:
    """C3's random-addition control: PGD-AT on D_typ + a class-matched random draw of unused training
    images minus the Section 3.2 PGD-AT run at the largest p (D_typ + D_atyp), last epoch, all of
    D'_typ, paired by seed: > 0 for clean and for PGD-20 supports "the atypical examples harm, not
    just more examples". Not decided where the estimate used the whole training set (no arm)."""
    rand = [r for r in controls or [] if r.half == "random"]
    ps = _ps(runs or [], "pgd")
    if not rand or not ps:
        return _missing("C3-R", "3.2", C3R_TEXT, "no random-addition control runs (they need training images the "
                        "estimate left out: --per-class) or no Section 3.2 PGD-AT runs")
    hi = ps[-1]
    parts = []
    for attack, kind, name in (("clean", "clean", "clean"), ("pgd", "adv", "PGD-20")):
        arm = {int(r.seed): final_accuracy(r.final, "last", "test/all", attack) for r in rand}
        parts.append(_part(v.paired_effect(_arm(runs, "pgd", hi, _acc(kind)), arm,
                                           f"PGD-AT D'_typ {name}, D_typ + random unused images minus D_typ + "
                                           f"D_atyp (p = {hi}%)"), v.above, 0.0, ">"))
    return _claim("C3-R", "3.2", C3R_TEXT, parts, f"last epoch, {_source_note(runs)}; ")


def _outside_atypical(r: Any) -> float:
    return final_accuracy(getattr(r, "atypical_test", None), "last", OUTSIDE_ATYPICAL, "clean")


def claim_c4(runs: list[Any] | None) -> Claim:
    """C4 (non-inferiority, ERM clean, p = max minus p = min > ``C4_MARGIN``), decided on every test
    image outside D'_atyp where the Section 3.2 ERM runs evaluated it (``atypical_test.parquet``):
    that set keeps the images ERM gets wrong, so accuracy can drop; D'_typ (ERM >= 80% by
    construction, ~100% here) is shown beside it and decides only where those rows are missing."""
    ps = _ps(runs or [], "erm")
    if len(ps) < 2:
        return _missing("C4", "3.2", C4_TEXT, "no Section 3.2 ERM runs at two values of p")
    lo, hi = ps[0], ps[-1]
    typ = _part(v.paired_effect(_arm(runs, "erm", lo, _acc("clean")), _arm(runs, "erm", hi, _acc("clean")),
                                f"ERM D'_typ clean, p = {hi}% minus p = {lo}%"), v.above, C4_MARGIN, ">")
    wide = v.paired_effect(_arm(runs, "erm", lo, _outside_atypical), _arm(runs, "erm", hi, _outside_atypical),
                           f"ERM clean on every test image outside D'_atyp, p = {hi}% minus p = {lo}%")
    if not wide.seeds:
        return _claim("C4", "3.2", C4_TEXT, [typ], f"last epoch, {_source_note(runs)}; ")
    c = _claim("C4", "3.2", C4_TEXT, [_part(wide, v.above, C4_MARGIN, ">")],
               "last epoch, final evaluation; deciding (a set with headroom): ")
    c.numbers += f"; the paper's set, not deciding ({_source_note(runs)}; ERM >= 80% by construction): {typ[1]}"
    return c


def claim_c5(runs: list[Any] | None, reading: dict[str, Any] | None = None) -> Claim:
    ps = _ps(runs or [], "pgd")
    if len(ps) < 2:
        return _missing("C5", "3.2", C5_TEXT, "no Section 3.2 PGD-AT runs at two values of p")
    if not all("cos_dist" in r.metrics for r in runs if r.method == "pgd"):
        return _missing("C5", "3.2", C5_TEXT, "the Section 3.2 runs have no cosine measurements (metrics.parquet "
                        "lacks cos_dist: runs made before memadv recorded it; delete RUN/sec32/train and re-run)")
    lo, hi = ps[0], ps[-1]

    def sep(r: Any) -> float:
        return float(r.metrics["cos_dist"].dropna().iloc[-1]) if r.metrics["cos_dist"].notna().any() else math.nan

    eff = v.paired_effect(_arm(runs, "pgd", hi, sep), _arm(runs, "pgd", lo, sep),
                          f"PGD-AT separation 1 - S, p = {lo}% minus p = {hi}%", unit="")
    extra = ""
    if reading:
        extra = (f"; the paper's Table 1 (0.66, 0.62, 0.59) matches the '{reading['reading']}' reading here "
                 f"(decided by {reading['decided_by']})")
    c = _claim("C5", "3.2", C5_TEXT, [_part(eff, v.above, 0.0, ">", POWER_DELTA_COS, "{:+.3f}")], "last epoch; ")
    c.numbers += extra
    return c


# --------------------------------------------------------------------------- Table 2

C6_TEXT = ("(Table 2) BAT has higher overall clean accuracy than PGD-AT with PGD-20 accuracy within 1 point "
           "(both at their last epoch, all test images)")


def claim_c6(runs: list[Any] | None, label: Callable[[Any], str]) -> list[Claim]:
    """One claim per BAT setting (group of runs differing only by seed) against PGD-AT.

    ``runs``: :class:`memadv.analysis.bat_tables.Run` objects; ``label``: their row label."""
    runs = runs or []
    pgd = [r for r in runs if r.method == "pgd"]
    groups: dict[str, list[Any]] = {}
    for r in runs:
        if r.method == "bat":
            groups.setdefault(r.group, []).append(r)
    if not pgd or not groups:
        return [_missing("C6", "5", C6_TEXT, "Table 2 lacks PGD-AT or BAT runs")]

    def per_seed(rs: list[Any], kind: str) -> PerSeed:
        return {r.seed: last_accuracy(r.metrics, r.final, "test/all", kind)[0] for r in rs}

    def best_adv(rs: list[Any], col: str) -> PerSeed:
        out = {}
        for r in rs:
            m = r.metrics
            i = m["test/all/adv"].idxmax() if m["test/all/adv"].notna().any() else None
            out[r.seed] = 100.0 * float(m.loc[i, col]) if i is not None else math.nan
        return out

    claims = []
    for g, rs in sorted(groups.items()):
        parts = [_part(v.paired_effect(per_seed(pgd, "clean"), per_seed(rs, "clean"),
                                       "clean, BAT minus PGD-AT (last vs last)"), v.above, 0.0, ">"),
                 _part(v.paired_effect(per_seed(pgd, "adv"), per_seed(rs, "adv"),
                                       "PGD-20, BAT minus PGD-AT (last vs last)"), v.above, C6_ADV_MARGIN, ">")]
        paper = [v.paired_effect(best_adv(pgd, f"test/all/{k}"), per_seed(rs, k),
                                 f"{name}, BAT (last) minus PGD-AT (best PGD-20 epoch, test-selected)")
                 for k, name in (("clean", "clean"), ("adv", "PGD-20"))]
        note = ("; paper's protocol, not deciding: " + "; ".join(e.text() for e in paper)
                + f"; {_source_note(rs + pgd, 'the test set')}")
        c = _claim("C6", "5", C6_TEXT.replace("BAT", label(rs[0]), 1), parts)
        c.numbers += note
        claims.append(c)
    return claims
