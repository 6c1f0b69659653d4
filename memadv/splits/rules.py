"""Atypical / typical split files (paper Sections 3.1 and 3.2), computed from score files.

Definitions (thresholds are :class:`SplitConfig` options; defaults are the paper's)::

    D_atyp  = {i in D  : mem(i) > 0.15}                                   (Sec. 3.1)
    D_typ   = {i in D  : mem(i) < 0.02}                                   (Sec. 3.2)
    D'_atyp = {j in D' : infl(i, j) > 0.15 for some i in D_atyp}          (Sec. 3.1)
    D'_typ  = D' - {j : infl(i, j) > 0.02 for some i in D_atyp}
                 - {j : P(F(x'_j) = y'_j) < 0.8}                          (Sec. 3.2)

The influence conditions use same-class pairs only by default (the paper calls (i, j) a
high-influence pair only when both share a class, Sec. 2.1); ``pairs="any-class"`` uses every
pair stored in ``infl.parquet``. Each reading needs the pairs with infl > the lowest influence
threshold (``infl_typical``); a score folder whose stored pairs (its ``--keep`` rule, in the
metadata) do not include them all is refused with a one-line SchemaError. With ``significance=z``
every memorization and influence condition compares a z-level confidence interval of the
difference p_in - p_out with the threshold: "x > t" becomes "lower bound > t" and "x < t"
becomes "upper bound < t". The interval is Newcombe's hybrid score interval for a difference of
two proportions (Newcombe 1998, Statistics in Medicine 17:873, method 10), built from the Wilson
score intervals of p_in and p_out; unlike x -/+ z*SE it does not collapse to a point when every
model agrees (p = 0 or 1). The accuracy rule is never shifted. NaN estimates compare false, so an example with an undefined estimate is in no set; a test
example with unknown accuracy is not typical while the accuracy rule is active (``min_test_acc > 0``).

Output folder ``splits/`` (written all at once: a temporary folder renamed into place):

* ``splits.parquet``: one row per example and set, columns ``split`` ("train"/"test"), ``idx``
  (int64), ``label`` (int64), ``set`` ("atypical"/"typical"); metadata: thresholds, dataset,
  fingerprints, source scores, set sizes.
* ``train_atypical.csv``, ``train_typical.csv``, ``test_atypical.csv``, ``test_typical.csv``:
  columns ``idx,label``, one row per example, sorted by id.
* ``summary.md``: set sizes, sizes per class, examples each rule removed, noise-floor report, warnings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memadv.config import check_range, option
from memadv.splits.erm_accuracy import ERM_MODEL_CHOICES
from memadv.splits.error_control import CONTROL_METHODS, ErrorControl, decide
from memadv.splits.noise_floor import noise_report
from memadv.splits.significance import above, below, infl_lower_bound, newcombe
from memadv.splits.labels import check_all_pairs, decided_table, labels_frame, none_labels, test_rules, train_rule
from memadv.scores.schema import Scores
from memadv.errors import ConfigError, IncompleteRunError, SchemaError, UnknownChoiceError
from memadv.paper_thresholds import INFL_ATYPICAL, INFL_TYPICAL, MEM_ATYPICAL, MEM_TYPICAL, MIN_TEST_ACC

SPLIT_COLUMNS = ["split", "idx", "label", "set"]
SET_KEYS = ("train/atypical", "train/typical", "test/atypical", "test/typical")
PAIRS_CHOICES = ("same-class", "any-class")


@dataclass
class SplitConfig:
    mem_atypical: float = option(MEM_ATYPICAL, "training example is atypical when mem > this", unit="probability difference",
                                 source="paper Sec. 3.1")
    mem_typical: float = option(MEM_TYPICAL, "training example is typical when mem < this", unit="probability difference",
                                source="paper Sec. 3.2")
    infl_atypical: float = option(INFL_ATYPICAL, "test example is atypical when infl(i, j) > this for some atypical training "
                                        "example i", unit="probability difference", source="paper Sec. 3.1")
    infl_typical: float = option(INFL_TYPICAL, "test example is NOT typical when infl(i, j) > this for some atypical training "
                                       "example i", unit="probability difference", source="paper Sec. 3.2")
    min_test_acc: float = option(MIN_TEST_ACC, "test example is NOT typical when the ERM models' success rate on it is below "
                                      "this; 0 switches the rule off", unit="probability", source="paper Sec. 3.2")
    pairs: str = option("same-class", "which (train, test) pairs the influence conditions use: same-class is the "
                                      "paper's definition of a high-influence pair (Sec. 2.1) and the default; "
                                      "any-class also uses the cross-class pairs stored in infl.parquet",
                        choices=PAIRS_CHOICES)
    significance: float | None = option(None, "z: every mem/infl condition becomes 'lower bound of the z-level "
                                              "Newcombe-Wilson interval above the threshold' (and 'upper bound "
                                              "below' for mem < typical); unset: compare the estimates themselves "
                                              "as the paper does",
                                        unit="standard errors")
    error_control: str = option("none", "label every example atypical / typical / in between / undecided with the "
                                        "error controlled over all examples: fdr:A (Benjamini-Hochberg), fdr-by:A "
                                        "(Benjamini-Yekutieli, any dependence), fwer:A (Holm) at level A; the sets "
                                        "are then the decided labels; none: compare the estimates as the paper does",
                                source="docs/splits.md, 'Error control'")
    looks: int = option(1, "planned looks of a sequential estimate (estimate --until-decided): each spends "
                           "alpha / looks; read from the run", cli=False)
    allow_partial: bool = option(False, "accept scores aggregated from an unfinished estimate (missing shards); "
                                        "refused by default", switch=True)
    # the paper's typical-test rule reads "ERM trained on D": the full-data models (memadv.estimate.full_models)
    erm_models: str = option("full", "models whose test correctness the --min-test-acc rule uses: full = the "
                                     "estimate's full-data ERM models (paper Sec. 3.2 'ERM trained on D'; falls back "
                                     "to subset, with a warning, when the run has none), subset = the 70%-subset "
                                     "models", choices=("full", "subset"), source="paper Sec. 3.2")

    def __post_init__(self) -> None:
        for name in ("mem_atypical", "mem_typical", "infl_atypical", "infl_typical", "min_test_acc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number, got {value!r}")
            check_range(name, float(value), 0.0, 1.0)
        if self.pairs not in PAIRS_CHOICES:
            raise UnknownChoiceError("pairs", self.pairs, PAIRS_CHOICES)
        if self.erm_models not in ERM_MODEL_CHOICES:
            raise UnknownChoiceError("erm models", self.erm_models, ERM_MODEL_CHOICES)
        if self.mem_typical >= self.mem_atypical:
            raise ConfigError(f"--mem-typical ({self.mem_typical}) must be below --mem-atypical ({self.mem_atypical})")
        if self.infl_typical >= self.infl_atypical:
            raise ConfigError(f"--infl-typical ({self.infl_typical}) must be below --infl-atypical "
                              f"({self.infl_atypical})")
        if self.significance is not None:
            check_range("significance", float(self.significance), 0.0, 10.0, lo_open=True)
        self.control()  # refuses a malformed --error-control
        check_range("looks", self.looks, 1)
        if self.significance is not None and self.control().active:
            raise ConfigError(f"--significance and --error-control {self.error_control} are two readings of the same "
                              f"intervals; choose one (--error-control {'|'.join(CONTROL_METHODS)})")

    def control(self) -> ErrorControl:
        """The error control of the labels, with alpha spent over the planned looks."""
        return ErrorControl.parse(self.error_control).per_look(self.looks)


@dataclass
class SplitResult:
    """Everything ``memadv splits`` computes: the sets, the rule counts, the noise report, warnings."""
    rows: pd.DataFrame                       # SPLIT_COLUMNS
    sets: dict[str, np.ndarray]              # SET_KEYS -> sorted int64 ids
    per_class: pd.DataFrame                  # index: SET_KEYS, columns: class labels
    rules: list[dict[str, Any]]              # set, rule, considered, removed, kept
    noise: list[dict[str, Any]]              # rule, threshold, se, ratio, comparisons, p_noise, zero_se, note
    warnings: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    labels: pd.DataFrame | None = None       # split_labels.LABEL_COLUMNS: every example's label per rule
    decided: list[dict[str, Any]] = field(default_factory=list)  # per rule: share decided, models projected
    control: str = "none"
    paper_sizes: dict[str, int] | None = None  # with error control: the set sizes of the paper's reading


# ---------------------------------------------------------------------------------------------
# definitions

def infl_coverage(meta: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """(same-class, cross-class) |infl| from which a score folder stores pairs (0: all, None: none), and its
    keep rule in words. Files older than the keep rule: memadv's held every same-class pair and the cross-class
    ones above ``cross_class_threshold``; Feldman & Zhang's infl matrix holds same-class pairs only."""
    if "infl_min_abs_same" in meta:
        return meta.get("infl_min_abs_same"), meta.get("infl_min_abs_cross"), f"--keep {meta.get('infl_keep')}"
    if meta.get("source") == "feldman-zhang":
        return 0.0, None, "a Feldman & Zhang same-class matrix"
    return 0.0, _cross_class_threshold(meta), "same-class pairs and cross-class pairs above cross_class_threshold"


def _check_coverage(meta: dict[str, Any], cfg: SplitConfig) -> None:
    """Refuse a definition whose influence rules need pairs the score folder does not store."""
    if meta.get("has_infl") is False:
        return  # no influence at all: reported as a warning
    same, cross, how = infl_coverage(meta)
    t = min(cfg.infl_typical, cfg.infl_atypical)
    kinds = [("same-class", same)] + ([("cross-class", cross)] if cfg.pairs == "any-class" else [])
    for kind, k in kinds:
        if k is None or k > t:
            held = "none" if k is None else f"only those with |infl| >= {k}"
            fix = ("--keep same-class" if kind == "same-class" and cfg.pairs == "same-class"
                   else f"--keep threshold --keep-threshold {t}")
            raise SchemaError(f"these scores cannot answer --pairs {cfg.pairs} at infl > {t}: they store {held} of "
                              f"the {kind} pairs ({how}); re-aggregate with `memadv aggregate RUN {fix}`, or raise "
                              f"--infl-typical to at least {k}" + (" or use --pairs same-class"
                                                                    if kind == "cross-class" else ""))


def compute_splits(scores: Scores, cfg: SplitConfig, *, project: bool = True) -> SplitResult:
    """Apply the four set definitions to ``scores``; raises before anything is written. ``project``:
    also project the models each rule needs (:func:`memadv.splits.labels.decided_table`)."""
    meta = scores.meta
    warnings: list[str] = []
    if meta.get("coverage") == "high-influence-pairs":
        raise SchemaError("these scores were imported from a high-influence-pairs file, which holds only pairs above "
                          "its thresholds (no typical examples, no test accuracy); import the full estimate "
                          "(e.g. cifar100_infl_matrix.npz) to make split files")
    if meta.get("complete", True) is False:
        if not cfg.allow_partial:
            raise IncompleteRunError("scores were aggregated from an unfinished estimate (missing shards); finish it "
                                     "with `memadv estimate`, or pass --allow-partial to make splits anyway")
        warnings.append("scores come from an unfinished estimate (--allow-partial): fewer models, more noise")
    z = cfg.significance
    se_known = scores.se_known
    if z is not None and not se_known:
        raise ConfigError(f"--significance needs standard errors, but these scores (source "
                          f"{meta.get('source', '?')!r}) carry none")

    mem = scores.mem
    if mem.empty:
        raise SchemaError("mem.parquet has no rows")
    tr_idx = mem["idx"].to_numpy(np.int64)
    tr_lab = mem["label"].to_numpy(np.int64)
    m = mem["mem"].to_numpy(np.float64)
    m_se = mem["mem_se"].to_numpy(np.float64)
    if len(np.unique(tr_idx)) != len(tr_idx):
        raise SchemaError("mem.parquet has repeated training ids")
    if z:
        m_lo, m_hi = newcombe(mem["p_in"].to_numpy(np.float64), mem["n_in"].to_numpy(np.float64),
                              mem["p_out"].to_numpy(np.float64), mem["n_out"].to_numpy(np.float64), z)
    else:
        m_lo = m_hi = None
    ctrl = cfg.control()
    rules = [train_rule(mem, cfg.mem_typical, cfg.mem_atypical)]
    decisions = [decide(rules[0], ctrl)]
    if ctrl.active:
        if not se_known:
            raise ConfigError(f"--error-control needs the estimates' counts, but these scores (source "
                              f"{meta.get('source', '?')!r}) carry none; use --error-control none")
        check_all_pairs(meta, cfg.pairs)
        atyp, typ = decisions[0].label == "atypical", decisions[0].label == "typical"
    else:
        atyp = above(m, m_lo, cfg.mem_atypical)
        typ = below(m, m_hi, cfg.mem_typical)
    n_undefined = int(np.isnan(m).sum())
    atyp_ids = tr_idx[atyp]

    ta = scores.test_acc
    if ta.empty:
        raise SchemaError("the scores have no test accuracy rows (test_acc.parquet missing or empty); "
                          "the test sets need one row per test example")
    te_idx = ta["idx"].to_numpy(np.int64)
    te_lab = ta["label"].to_numpy(np.int64)
    p_ok = ta["p_correct"].to_numpy(np.float64)

    _check_coverage(meta, cfg)
    infl = scores.infl
    if cfg.pairs == "same-class":
        infl = infl[infl["train_label"].to_numpy(np.int64) == infl["test_label"].to_numpy(np.int64)]
    considered = infl[np.isin(infl["train_idx"].to_numpy(np.int64), atyp_ids)]
    c_train = considered["train_idx"].to_numpy(np.int64)
    c_test = considered["test_idx"].to_numpy(np.int64)
    c_infl = considered["infl"].to_numpy(np.float64)
    c_se = considered["infl_se"].to_numpy(np.float64)
    unknown_test = np.setdiff1d(np.unique(c_test), te_idx)
    if unknown_test.size:
        raise SchemaError(f"infl.parquet names {unknown_test.size} test ids missing from test_acc.parquet "
                          f"(first: {int(unknown_test[0])})")
    c_lo = infl_lower_bound(c_train, c_test, c_infl, mem, ta, z) if z else None
    te_atyp_ids = np.unique(c_test[above(c_infl, c_lo, cfg.infl_atypical)])
    infl_excl = np.isin(te_idx, np.unique(c_test[above(c_infl, c_lo, cfg.infl_typical)]))
    te_atyp = np.isin(te_idx, te_atyp_ids)
    if cfg.min_test_acc > 0:
        acc_unknown = np.isnan(p_ok)
        acc_excl = (p_ok < cfg.min_test_acc) | acc_unknown
    else:
        acc_unknown = np.zeros(len(te_idx), bool)
        acc_excl = np.zeros(len(te_idx), bool)
    te_typ = ~infl_excl & ~acc_excl
    if ctrl.active:  # "for every i" also covers the training examples that may be atypical
        maybe = tr_idx[(decisions[0].label != "typical") & (decisions[0].label != "in between") & ~np.isnan(m)]
        considered = infl[np.isin(infl["train_idx"].to_numpy(np.int64), maybe)]
    witness = np.isin(considered["train_idx"].to_numpy(np.int64), atyp_ids)
    rules += test_rules(considered, witness, mem, ta, cfg.infl_atypical, cfg.infl_typical, acc_excl)
    decisions += [decide(r, ctrl) for r in rules[1:]]
    if ctrl.active:  # the sets are the decided labels
        te_atyp, te_typ = decisions[1].label == "atypical", decisions[2].label == "typical"
        infl_excl = (decisions[2].label == "excluded") & ~acc_excl
    else:
        none_labels(rules, decisions, {"train/atypical": atyp, "train/typical": typ, "test/atypical": te_atyp,
                                       "test/typical": te_typ})

    sets = {"train/atypical": np.sort(tr_idx[atyp]), "train/typical": np.sort(tr_idx[typ]),
            "test/atypical": np.sort(te_idx[te_atyp]), "test/typical": np.sort(te_idx[te_typ])}
    frames = []
    for key, (ids, labs, mask) in {"train/atypical": (tr_idx, tr_lab, atyp), "train/typical": (tr_idx, tr_lab, typ),
                                   "test/atypical": (te_idx, te_lab, te_atyp),
                                   "test/typical": (te_idx, te_lab, te_typ)}.items():
        split, kind = key.split("/")
        order = np.argsort(ids[mask], kind="stable")
        frames.append(pd.DataFrame({"split": split, "idx": ids[mask][order].astype(np.int64),
                                    "label": labs[mask][order].astype(np.int64), "set": kind}))
    rows = pd.concat(frames, ignore_index=True)[SPLIT_COLUMNS]
    all_labels = np.union1d(tr_lab, te_lab)
    per_class = pd.DataFrame(0, index=list(SET_KEYS), columns=all_labels, dtype=np.int64)
    for key in SET_KEYS:
        split, kind = key.split("/")
        labs = rows.loc[(rows["split"] == split) & (rows["set"] == kind), "label"].to_numpy(np.int64)
        u, c = np.unique(labs, return_counts=True)
        per_class.loc[key, u] = c
    per_class.index.name, per_class.columns.name = "set", "class"

    pairs_word = "same-class pairs" if cfg.pairs == "same-class" else "any-class pairs"
    zs = f" (Newcombe-Wilson lower bound, z={z})" if z else (f" (decided, {ctrl})" if ctrl.active else "")
    zb = f" (Newcombe-Wilson upper bound, z={z})" if z else zs
    n_tr, n_te = len(tr_idx), len(te_idx)
    rule_rows = [
        {"set": "train/atypical", "rule": f"keep mem{zs} > {cfg.mem_atypical}", "considered": n_tr,
         "removed": int(n_tr - atyp.sum()), "kept": int(atyp.sum())},
        {"set": "train/typical", "rule": f"keep mem{zb} < {cfg.mem_typical}", "considered": n_tr,
         "removed": int(n_tr - typ.sum()), "kept": int(typ.sum())},
        {"set": "test/atypical", "rule": f"keep infl{zs} > {cfg.infl_atypical} for some i in D_atyp ({pairs_word})",
         "considered": n_te, "removed": int(n_te - te_atyp.sum()), "kept": int(te_atyp.sum())},
        {"set": "test/typical", "rule": f"remove infl{zs} > {cfg.infl_typical} for some i in D_atyp ({pairs_word})",
         "considered": n_te, "removed": int(infl_excl.sum()), "kept": None},
        {"set": "test/typical", "rule": (f"remove P(correct) < {cfg.min_test_acc} (or unknown)" if cfg.min_test_acc > 0
                                         else "accuracy rule off (--min-test-acc 0)"),
         "considered": n_te, "removed": int(acc_excl.sum()), "kept": None},
        {"set": "test/typical", "rule": "removed by both rules", "considered": n_te,
         "removed": int((infl_excl & acc_excl).sum()), "kept": int(te_typ.sum())},
    ]
    if scores.infl.empty:
        warnings.append("the scores hold no influence estimates (infl.parquet missing or empty): D'_atyp is empty and "
                        "the influence rule removes nothing from D'_typ")
    if n_undefined:
        warnings.append(f"{n_undefined} training examples have an undefined mem estimate (NaN) and are in no set")
    if cfg.min_test_acc > 0 and acc_unknown.any():
        what = "all" if acc_unknown.all() else str(int(acc_unknown.sum()))
        warnings.append(f"test accuracy is unknown for {what} of {n_te} test examples, which therefore are not typical"
                        + (" (imported scores carry none); pass --min-test-acc 0 to skip the accuracy rule"
                           if acc_unknown.all() else ""))

    noise, noise_warn = noise_report(cfg, m_se, c_test, c_se, te_idx, se_known)
    warnings.extend(noise_warn)
    for key in SET_KEYS:
        if sets[key].size == 0:
            warnings.append(f"{key} is empty")
    paper = (compute_splits(scores, dataclasses.replace(cfg, error_control="none", looks=1), project=False)
             if ctrl.active else None)
    return SplitResult(rows=rows, sets=sets, per_class=per_class, rules=rule_rows, noise=noise, warnings=warnings,
                       labels=labels_frame(rules, decisions, paper.labels if paper else None), control=str(ctrl),
                       # no counts (imported scores): nothing can be decided or projected
                       decided=decided_table(rules, decisions, ctrl, int(meta.get("n_models") or 0), project,
                                             cfg.looks) if se_known else [],
                       paper_sizes={k: int(v.size) for k, v in paper.sets.items()} if paper else None)


def _cross_class_threshold(meta: dict[str, Any]) -> float | None:
    for d in (meta, meta.get("spec") if isinstance(meta.get("spec"), dict) else {}):
        v = d.get("cross_class_threshold")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


