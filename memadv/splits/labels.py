"""The split rules as error-controlled labels: which rule, which label, how many models.

Three rules label every example (``labels.parquet`` in the split folder; :mod:`memadv.splits.error_control`
holds the procedures and their sources):

* ``train-mem``: every training example is ``typical`` (mem < --mem-typical), ``in between``,
  ``atypical`` (mem > --mem-atypical) or ``undecided``;
* ``test-atypical``: every test example is ``atypical`` (infl > --infl-atypical for some same-class
  i in D_atyp), ``not atypical`` (below it for every such i) or ``undecided``;
* ``test-typical``: ``typical`` (infl < --infl-typical for every such i and P(correct) >= --min-test-acc),
  ``excluded`` (some infl above it, or the accuracy rule) or ``undecided``.

D_atyp of the test rules is uncertain too: "infl > t for some i" needs a decided atypical i (and a
decided pair), "infl < t for every i" must hold for every i that may be atypical (decided atypical or
undecided; an undefined mem is in no set, as in the paper's reading). The sets of the split files are the decided
labels: ``train/atypical`` = atypical, ``train/typical`` = typical, ``test/atypical`` = atypical,
``test/typical`` = typical. With ``--error-control none`` the labels are the paper's reading (no
``undecided`` but for undefined estimates) and equal the sets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memadv.splits.error_control import UNDECIDED, Decision, ErrorControl, Rule, decide, models_needed
from memadv.splits.significance import pair_proportions
from memadv.files.tables import markdown_table
from memadv.errors import SchemaError
from memadv.layout import RunLayout

LABEL_COLUMNS = ["split", "rule", "idx", "label", "decision", "estimate", "lo", "hi", "p_value", "paper"]
RULE_NAMES = ("train-mem", "test-atypical", "test-typical")
TRAIN_NAMES = ("typical", "in between", "atypical")
# The control the projection uses when the splits themselves use none (the pipeline's default; docs/splits.md).
PROJECTION_CONTROL = "fdr:0.05"
TARGETS = (0.9, 0.95, 0.99)


def read_looks(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``looks.json`` (None without one)."""
    f = RunLayout(run_dir).looks
    return json.loads(f.read_text()) if f.is_file() else None


def planned_looks(run_dir: str | Path, models: int | None) -> int:
    """How many looks the alpha of a run's splits is divided by: the plan's K, plus one when the run
    was extended beyond its last look (a further look); 1 for a run without a plan."""
    rec = read_looks(run_dir)
    if rec is None:
        return 1
    return len(rec["plan"]) + (1 if models is not None and models > max(rec["plan"]) else 0)


def check_all_pairs(meta: dict[str, Any], pairs: str) -> None:
    """Error control needs every pair of an atypical training example ("infl < t for every i" is a
    claim about each of them): refuse scores that keep only some (SchemaError naming the fix)."""
    if meta.get("has_infl") is False or "infl_min_abs_same" not in meta:
        return
    kinds = [("same-class", meta.get("infl_min_abs_same"))]
    if pairs == "any-class":
        kinds.append(("cross-class", meta.get("infl_min_abs_cross")))
    for kind, k in kinds:
        if k != 0:
            fix = "--keep same-class" if kind == "same-class" else "--keep all"
            raise SchemaError(f"--error-control needs every {kind} pair of the atypical training examples (a test "
                              f"example is typical only when all its influences are below the threshold), but these "
                              f"scores keep {'none' if k is None else f'only |infl| >= {k}'}; re-aggregate with "
                              f"`memadv aggregate RUN {fix}` or use --error-control none")


def _point_estimates(point: np.ndarray, p_in: np.ndarray, p_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p_in, p_out) with the rows whose proportions are unknown (imported scores: Feldman & Zhang's
    files carry the estimate only) set to (estimate, 0), so that the paper's reading compares the
    estimate itself; error control refuses such scores before it reads the proportions."""
    unknown = np.isnan(p_in) | np.isnan(p_out)
    return np.where(unknown, point, p_in), np.where(unknown, 0.0, p_out)


def train_rule(mem: pd.DataFrame, t_typ: float, t_atyp: float) -> Rule:
    n = len(mem)
    col = {c: mem[c].to_numpy(np.float64) for c in ("p_in", "n_in", "p_out", "n_out")}
    p_in, p_out = _point_estimates(mem["mem"].to_numpy(np.float64), col["p_in"], col["p_out"])
    return Rule("train-mem", "train", "three-way", mem["idx"].to_numpy(np.int64), mem["label"].to_numpy(np.int64),
                np.arange(n), p_in, col["n_in"], p_out, col["n_out"], (t_typ, t_atyp), TRAIN_NAMES)


def test_rules(considered: pd.DataFrame, witness: np.ndarray, mem: pd.DataFrame, ta: pd.DataFrame, t_atyp: float,
               t_typ: float, acc_excl: np.ndarray) -> tuple[Rule, Rule]:
    """The two test rules over the pairs ``considered`` (infl.parquet rows of the training examples that
    are or may be in D_atyp); ``witness``: those of decided D_atyp members (:class:`Rule`)."""
    c_train = considered["train_idx"].to_numpy(np.int64)
    c_test = considered["test_idx"].to_numpy(np.int64)
    p_in, n_in, p_out, n_out = pair_proportions(c_train, c_test, considered["infl"].to_numpy(np.float64), mem, ta)
    p_in, p_out = _point_estimates(considered["infl"].to_numpy(np.float64), p_in, p_out)
    te_idx, te_lab = ta["idx"].to_numpy(np.int64), ta["label"].to_numpy(np.int64)
    group = pd.Index(te_idx).get_indexer(c_test)
    args = (te_idx, te_lab, group, p_in, n_in, p_out, n_out)
    return (Rule("test-atypical", "test", "exists", *args, (t_atyp,), ("not atypical", "atypical"), witness=witness),
            Rule("test-typical", "test", "exists", *args, (t_typ,), ("typical", "excluded"),
                 fixed=np.where(acc_excl, "excluded", "").astype(object), witness=witness))


def labels_frame(rules: list[Rule], decisions: list[Decision], paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per example and rule (LABEL_COLUMNS): ``label`` is the class, ``decision`` the rule's label,
    ``paper`` the paper's reading (``paper``: the labels frame of the same scores without error control;
    None: the decisions are that reading)."""
    frames = [pd.DataFrame({"split": r.split, "rule": r.name, "idx": r.ids.astype(np.int64),
                            "label": r.classes.astype(np.int64), "decision": d.label.astype(str),
                            "estimate": d.estimate, "lo": d.lo, "hi": d.hi, "p_value": d.p,
                            "paper": d.label.astype(str)})
              for r, d in zip(rules, decisions)]
    if paper is not None:  # same rules, same examples, same order
        return pd.concat(frames, ignore_index=True).assign(paper=paper["decision"].to_numpy())[LABEL_COLUMNS]
    return pd.concat(frames, ignore_index=True)[LABEL_COLUMNS]


def decided_table(rules: list[Rule], decisions: list[Decision], ctrl: ErrorControl, models: int,
                  project: bool, looks: int = 1) -> list[dict[str, Any]]:
    """Per rule: the share decided now under ``ctrl`` (``decisions``; PROJECTION_CONTROL where ``ctrl`` is
    none) and, with ``project``, the models projected to decide each of TARGETS (:func:`models_needed`)."""
    use = ctrl if ctrl.active else ErrorControl.parse(PROJECTION_CONTROL).per_look(looks)
    out = []
    for r, d in zip(rules, decisions):
        row: dict[str, Any] = {"rule": r.name, "control": str(use), "models": models,
                               "decided": (d if ctrl.active else decide(r, use)).share_decided}
        need = models_needed(r, use, models, TARGETS) if project and models else {}
        for t in TARGETS:
            row[f"models_{round(t * 100)}"] = need.get(t)
        out.append(row)
    return out


def render_labels(labels: pd.DataFrame, decided: list[dict[str, Any]], control: str,
                  paper_sizes: dict[str, int] | None, sizes: dict[str, int]) -> list[str]:
    """The Markdown sections of ``summary.md`` on the labels: counts per label and class, decided share
    and projected models, and the paper's reading beside the controlled sets."""
    out = ["## Labels", "",
           f"Error control `{control}` (docs/splits.md, \"Error control\"). Counts of each rule's labels, in all "
           "and per class.", ""]
    for rule in RULE_NAMES:
        part = labels[labels["rule"] == rule]
        if part.empty:
            continue
        tab = pd.crosstab(part["label"], part["decision"])
        cols = list(tab.columns)
        out += [f"### {rule}", ""]
        out += markdown_table(["class", *cols], [["all", *(int(tab[c].sum()) for c in cols)]]
                              + [[c, *(int(tab.loc[c, k]) for k in cols)] for c in tab.index],
                              align="l" + "r" * len(cols))
        out.append("")
    if paper_sizes is not None:
        out += ["### Sets: controlled and the paper's reading", ""]
        out += markdown_table(["set", "controlled", "paper's reading (estimates)"],
                              [[k, sizes[k], paper_sizes[k]] for k in sizes], align="lrr")
        out.append("")
    if not decided:  # imported scores: no counts to decide or project with
        return out
    out += ["## Models needed", "",
            "Share of each rule's examples decided now and the models projected to decide 90% / 95% / 99% of them, "
            "assuming each example's p_in and p_out stay at their current estimates while the counts grow with the "
            "models (standard errors shrink as 1/sqrt(M)); the test rules keep today's D_atyp; grid of 2^(1/8) steps "
            "(9%), '-' = not within 1024 times the models.", ""]

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:,}"
    out += markdown_table(["rule", "control", "models now", "decided now", *(f"models for {round(t * 100)}%"
                                                                             for t in TARGETS)],
                          [[d["rule"], d["control"], fmt(d["models"]), f"{d['decided']:.1%}",
                            *(fmt(d[f"models_{round(t * 100)}"]) for t in TARGETS)] for d in decided], align="llrrrrr")
    return out + [""]


def none_labels(rules: list[Rule], decisions: list[Decision], masks: dict[str, np.ndarray]) -> None:
    """Without error control the labels are the sets as computed (the paper's reading, or --significance's
    interval reading): set them in place. ``masks``: "train/atypical", "train/typical", "test/atypical",
    "test/typical" (bool over the examples of each split)."""
    tr, ta_, tt = decisions
    tr.label = np.where(masks["train/atypical"], "atypical", np.where(
        masks["train/typical"], "typical", np.where(np.isnan(rules[0].estimate), UNDECIDED, "in between"))
    ).astype(object)
    ta_.label = np.where(masks["test/atypical"], "atypical", "not atypical").astype(object)
    tt.label = np.where(masks["test/typical"], "typical", "excluded").astype(object)
