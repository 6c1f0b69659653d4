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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv import __version__
from memadv.config import check_range, config_to_dict, option
from memadv.data.atomic import atomic_dir, write_text_atomic
from memadv.data.dataset import Dataset
from memadv.data.erm_accuracy import ERM_MODEL_CHOICES, describe_erm_accuracy, use_erm_accuracy
from memadv.data.error_control import CONTROL_METHODS, ErrorControl, decide
from memadv.data.noise_floor import noise_report
from memadv.data.significance import above, below, infl_lower_bound, newcombe
from memadv.data.split_labels import (LABELS_FILE, check_all_pairs, decided_table, labels_frame, none_labels,
                                      planned_looks, render_labels, test_rules, train_rule)
from memadv.data.scores import Scores, check_fingerprint
from memadv.data.tables import markdown_table, read_table, write_table
from memadv.errors import (ConfigError, DatasetError, FingerprintMismatchError, IncompleteRunError, SchemaError,
                           UnknownChoiceError)
from memadv.paper_thresholds import INFL_ATYPICAL, INFL_TYPICAL, MEM_ATYPICAL, MEM_TYPICAL, MIN_TEST_ACC

SPLIT_COLUMNS = ["split", "idx", "label", "set"]
SET_KEYS = ("train/atypical", "train/typical", "test/atypical", "test/typical")
PAIRS_CHOICES = ("same-class", "any-class")
SPLITS_FILE = "splits.parquet"


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
    allow_partial: bool = option(False, "accept scores aggregated from an unfinished estimate", cli=False)
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
    also project the models each rule needs (:func:`memadv.data.split_labels.decided_table`)."""
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
                       decided=decided_table(rules, decisions, ctrl, int(meta.get("n_models") or 0), project, cfg.looks),
                       paper_sizes={k: int(v.size) for k, v in paper.sets.items()} if paper else None)


def _cross_class_threshold(meta: dict[str, Any]) -> float | None:
    for d in (meta, meta.get("spec") if isinstance(meta.get("spec"), dict) else {}):
        v = d.get("cross_class_threshold")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


# ---------------------------------------------------------------------------------------------
# writing (atomically: memadv.data.atomic)

def split_meta(scores: Scores, cfg: SplitConfig, result: SplitResult, source: str) -> dict[str, Any]:
    m = scores.meta
    keep = ("dataset", "fingerprint_train", "fingerprint_test", "n_train", "n_test", "num_classes")
    return {**{k: m[k] for k in keep if k in m},
            "thresholds": config_to_dict(cfg),
            "source_scores": {"path": source, "source": m.get("source"), "se_known": scores.se_known,
                              "complete": m.get("complete", True), "n_models": m.get("n_models"),
                              # which models the min-test-acc rule used (full-data or subset models)
                              "test_acc_source": m.get("test_acc_source", "subset"),
                              "n_full_models": m.get("n_full_models")},
            "sizes": {k: int(v.size) for k, v in result.sets.items()},
            # with error control, the sizes the paper's reading of the same scores gives (None without)
            "error_control": result.control, "paper_sizes": result.paper_sizes,
            "memadv_version": __version__}


def render_summary(result: SplitResult, meta: dict[str, Any], title: str) -> str:
    th = meta["thresholds"]
    src = meta["source_scores"]
    out = [f"# Splits of {title}", "",
           f"Dataset `{meta.get('dataset')}`, scores `{src['path']}` (source {src['source']}, "
           f"{src['n_models']} models, standard errors {'known' if src['se_known'] else 'unknown'}"
           f"{'' if src['complete'] else ', UNFINISHED estimate'}).", "",
           f"Thresholds: mem atypical > {th['mem_atypical']}, mem typical < {th['mem_typical']}, "
           f"infl atypical > {th['infl_atypical']}, infl typical > {th['infl_typical']} excludes, "
           f"min test accuracy {th['min_test_acc']}, pairs {th['pairs']}, significance "
           f"{th['significance'] if th['significance'] is not None else 'off'}, error control {result.control}"
           f"{'' if th.get('looks', 1) == 1 else ' (alpha spent over ' + str(th['looks']) + ' planned looks)'}.", "",
           "## Sets", ""]
    out += markdown_table(["set", "size"], [[k, v.size] for k, v in result.sets.items()], align="lr")
    out += ["", "## Rules", ""]
    out += markdown_table(["set", "rule", "considered", "removed", "kept"],
                          [[r["set"], r["rule"], r["considered"], r["removed"], "" if r["kept"] is None else r["kept"]]
                           for r in result.rules], align="llrrr")
    out += ["", "## Noise floor", "",
            "Median standard error of the estimates each rule compares (over those with a non-zero SE; the share "
            "with SE 0, where all models agree, is listed), threshold / SE, and for the test rules the median "
            "number of atypical training examples (non-zero SE) a test example is compared with on average and the "
            "expected share of test examples for which noise alone would cross the threshold if all their true "
            "influences were zero.", ""]

    def f(x: Any, spec: str = ".3g") -> str:
        return "" if x is None else format(x, spec)
    out += markdown_table(["rule", "threshold", "median SE", "threshold / SE", "share SE = 0", "comparisons",
                           "share crossed by noise", "note"],
                          [[r["rule"], r["threshold"], f(r["se"]), f(r["ratio"], ".2f"), f(r["zero_se"], ".1%"),
                            f(r["comparisons"], ".3g"), f(r["p_noise"], ".3f"), r["note"]] for r in result.noise],
                          align="lrrrrrrl")
    out += ["", "## Size per class", ""]
    pc = result.per_class
    out += markdown_table(["class", *SET_KEYS], [[c, *(int(pc.loc[k, c]) for k in SET_KEYS)] for c in pc.columns],
                          align="l" + "r" * len(SET_KEYS))
    if result.labels is not None:
        out += [""] + render_labels(result.labels, result.decided, result.control, result.paper_sizes,
                                    {k: int(v.size) for k, v in result.sets.items()})
    if result.warnings:
        out += ["", "## Warnings", ""] + [f"* {w}" for w in result.warnings]
    out += ["", "## Files", "",
            "`splits.parquet` (columns split, idx, label, set; thresholds and fingerprints in its metadata), "
            "`train_atypical.csv`, `train_typical.csv`, `test_atypical.csv`, `test_typical.csv` (columns idx, label), "
            f"`{LABELS_FILE}` (every example's label per rule: columns split, rule, idx, label, decision, estimate, "
            "lo, hi, p_value).",
            ""]
    return "\n".join(out)


def write_splits(out_dir: str | Path, result: SplitResult, meta: dict[str, Any], title: str,
                 paths: pd.DataFrame | None = None) -> Path:
    """Write the split folder all at once; returns ``out_dir``. ``paths`` (columns split, idx, path:
    a user's own data set, memadv.data.own_images.read_example_paths) adds each example's relative
    path beside its id, in the parquet file and the CSVs."""
    out_dir = Path(out_dir)
    summary = render_summary(result, meta, title)
    rows = result.rows if paths is None else result.rows.merge(paths, on=["split", "idx"], how="left")
    with atomic_dir(out_dir, "splits") as tmp:
        write_table(tmp / SPLITS_FILE, rows, meta)
        for key in SET_KEYS:
            split, kind = key.split("/")
            part = rows[(rows["split"] == split) & (rows["set"] == kind)]
            text = part[["idx", "label"] + (["path"] if paths is not None else [])].to_csv(index=False)
            write_text_atomic(tmp / f"{split}_{kind}.csv", text)
        if result.labels is not None:
            write_table(tmp / LABELS_FILE, result.labels, meta)
        write_text_atomic(tmp / "summary.md", summary)
    return out_dir


def make_splits(path: str | Path, cfg: SplitConfig, out: str | Path | None = None) -> tuple[SplitResult, Path]:
    """The whole ``memadv splits`` stage: read the scores of ``path`` (a run or its ``scores/``),
    compute the sets and write them to ``out`` (default ``RUN/splits``); returns (result, folder)."""
    from memadv.data.scores import read_scores, scores_dir_of
    scores = use_erm_accuracy(read_scores(path), path, cfg.erm_models)  # ERM on all of D (Sec. 3.2)
    run_dir = Path(path).resolve()
    if run_dir.name == "scores":
        run_dir = run_dir.parent
    # a sequential estimate (--until-decided) spent alpha over its planned looks: so do its splits
    cfg = dataclasses.replace(cfg, looks=max(cfg.looks, planned_looks(run_dir, scores.meta.get("n_models"))))
    result = compute_splits(scores, cfg)
    describe_erm_accuracy(result, scores.meta)  # the rule names its models
    out_dir = Path(out) if out is not None else run_dir / "splits"
    meta = split_meta(scores, cfg, result, str(scores_dir_of(path)))
    from memadv.data.own_images import read_example_paths
    from memadv.layout import RunLayout
    return result, write_splits(out_dir, result, meta, title=f"run `{run_dir.name}`",
                                paths=read_example_paths(RunLayout(run_dir).example_paths))


# ---------------------------------------------------------------------------------------------
# reading

def splits_file_of(path: str | Path) -> Path:
    """Accept a run directory, its ``splits/`` folder or the parquet file itself."""
    p = Path(path)
    for cand in (p, p / SPLITS_FILE, p / "splits" / SPLITS_FILE):
        if cand.is_file():
            return cand
    raise SchemaError(f"no split file at {str(p)!r}: expected a run directory holding splits/{SPLITS_FILE}, a splits "
                      f"folder or the parquet file; run `memadv splits RUN` first")


def read_splits(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of a split file (checked against the schema) and its metadata."""
    f = splits_file_of(path)
    df, meta = read_table(f, required=SPLIT_COLUMNS)
    bad_split = set(df["split"].unique()) - {"train", "test"}
    bad_set = set(df["set"].unique()) - {"atypical", "typical"}
    if bad_split or bad_set:
        raise SchemaError(f"{f} has unknown values in column split {sorted(bad_split)} or set {sorted(bad_set)}")
    for col in ("idx", "label"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise SchemaError(f"{f}: column {col} must hold integers, got {df[col].dtype}")
    if (df["idx"] < 0).any():
        raise SchemaError(f"{f}: negative example ids")
    return df, meta


def read_split_sets(path: str | Path, dataset: Dataset | None = None) -> dict[str, np.ndarray]:
    """Sorted int64 ids of the four sets, keyed "train/atypical", "train/typical", "test/atypical", "test/typical".

    ``path`` is a run directory, a splits folder or the parquet file. Without ``dataset``: the
    canonical ids of the file. With ``dataset``: positions in that copy of the data set (what
    indexes its images; the ids themselves for a full data set, other positions for a reduced
    ``--per-class`` copy); a split file made for another dataset raises FingerprintMismatchError
    and ids the dataset lacks raise SchemaError.
    """
    df, meta = read_splits(path)
    where = str(splits_file_of(path))
    if dataset is not None:
        if meta.get("dataset") is not None and meta["dataset"] != dataset.name:
            raise FingerprintMismatchError(f"{where} was made for dataset {meta['dataset']!r}, not for "
                                           f"{dataset.name!r}; use the dataset it was made for")
        check_fingerprint(meta, dataset, what=where)
    out: dict[str, np.ndarray] = {}
    for key in SET_KEYS:
        split, kind = key.split("/")
        part = df[(df["split"] == split) & (df["set"] == kind)]
        ids = part["idx"].to_numpy(np.int64)
        if dataset is not None and ids.size:
            labels = dataset.labels(split).numpy()
            try:
                ids = dataset.positions(split, ids)
            except DatasetError as e:
                raise SchemaError(f"{where}: {key}: {e}") from None
            lab = part["label"].to_numpy(np.int64)
            known = lab >= 0
            if (labels[ids[known]] != lab[known]).any():
                raise FingerprintMismatchError(f"{where}: labels of {key} disagree with {dataset.name!r} as loaded; "
                                               f"the split file was made for another copy of the dataset")
        out[key] = np.sort(ids).astype(np.int64)
    return out

