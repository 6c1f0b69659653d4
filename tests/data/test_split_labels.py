"""``memadv splits --error-control``: three-way labels, the sets they make, labels.parquet, summary.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from memadv.cli.main import main
from memadv.data.dataset import Dataset
from memadv.scores.schema import Scores, dataset_meta, write_scores
from memadv.splits.labels import LABEL_COLUMNS
from memadv.splits.rules import SplitConfig, compute_splits
from memadv.files.tables import read_table
from memadv.errors import ConfigError, SchemaError

N_IN, N_OUT = 1400, 600   # 2,000 models, 70% subsets
# training examples (class, p_in, p_out): atypical, typical, in between, undecided (0.14 straddles 0.15)
TRAIN = [(0, 0.9, 0.3), (0, 1.0, 0.998), (1, 0.58, 0.5), (1, 0.64, 0.5)]
# test examples (class, subset P(correct)); pairs (train 0, test j, infl): only train 0 is atypical
TEST = [(0, 0.7), (0, 1.0), (0, 0.9), (1, 0.95), (1, 0.5)]
# train 3 (undecided: may be atypical) with test 3: infl 0, SE 0.01, not shown below 0.02
PAIRS = [(0, 0, 0.5), (0, 1, 0.0), (0, 2, 0.03), (1, 0, 0.3), (2, 2, 0.2), (3, 3, 0.0)]


def scores(**meta_over) -> Scores:
    g = torch.Generator().manual_seed(0)
    ytr, yte = [t[0] for t in TRAIN], [t[0] for t in TEST]
    ds = Dataset(name="toy", x_train=torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8, generator=g),
                 y_train=torch.tensor(ytr), x_test=torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8, generator=g),
                 y_test=torch.tensor(yte), num_classes=2, mean=(0.5,), std=(0.25,))
    p_in, p_out = np.array([t[1] for t in TRAIN]), np.array([t[2] for t in TRAIN])
    se = np.sqrt(p_in * (1 - p_in) / N_IN + p_out * (1 - p_out) / N_OUT)
    mem = pd.DataFrame({"idx": np.arange(4), "label": ytr, "mem": p_in - p_out, "mem_se": se, "p_in": p_in,
                        "p_out": p_out, "n_in": N_IN, "n_out": N_OUT})
    tr, te, infl = (np.array([p[k] for p in PAIRS]) for k in range(3))
    inf = pd.DataFrame({"train_idx": tr, "test_idx": te, "train_label": np.array(ytr)[tr],
                        "test_label": np.array(yte)[te], "infl": infl, "infl_se": 0.01})
    ta = pd.DataFrame({"idx": np.arange(5), "label": yte, "p_correct": [t[1] for t in TEST], "n_models": 2000})
    meta = {**dataset_meta(ds), "n_models": 2000, "source": "memadv", "se_known": True, "complete": True,
            "infl_keep": "same-class", "infl_min_abs_same": 0.0, "infl_min_abs_cross": None, **meta_over}
    return Scores(mem=mem, infl=inf, test_acc=ta, meta=meta)


def labels_of(res, rule: str) -> list[str]:
    part = res.labels[res.labels["rule"] == rule].sort_values("idx")
    return part["decision"].tolist()


def test_labels_and_sets_under_fdr():
    res = compute_splits(scores(), SplitConfig(error_control="fdr:0.05"))
    assert labels_of(res, "train-mem") == ["atypical", "typical", "in between", "undecided"]
    # test 0: infl 0.5 from the atypical example; test 1: infl 0 with every model right (decided below 0.02);
    # test 2: infl 0.03 (SE 0.015) undecided at 0.02, below 0.15; test 3: its one pair is with train 3, which
    # may be atypical, and infl 0 with P(correct) 0.95 is not shown to be below 0.02 (it is below 0.15);
    # test 4: the accuracy rule (0.5 < 0.8). Pairs of train 1 and 2 (decided not atypical) play no part.
    assert labels_of(res, "test-atypical") == ["atypical", "not atypical", "not atypical", "not atypical",
                                               "not atypical"]
    assert labels_of(res, "test-typical") == ["excluded", "typical", "undecided", "undecided", "excluded"]
    assert {k: v.tolist() for k, v in res.sets.items()} == {"train/atypical": [0], "train/typical": [1],
                                                          "test/atypical": [0], "test/typical": [1]}
    lab = res.labels
    assert list(lab.columns) == LABEL_COLUMNS
    tr = lab[lab["rule"] == "train-mem"].sort_values("idx")
    assert (tr["lo"].iloc[0] > 0.15) and (tr["hi"].iloc[1] < 0.02) and tr["lo"].iloc[3] < 0.15 < tr["hi"].iloc[3]
    # the paper's reading: 0.14 is "in between", test 2 excluded by its estimate 0.03 > 0.02
    paper = compute_splits(scores(), SplitConfig())
    assert labels_of(paper, "train-mem") == ["atypical", "typical", "in between", "in between"]
    assert labels_of(paper, "test-typical") == ["excluded", "typical", "excluded", "typical", "excluded"]
    assert paper.sets["test/typical"].tolist() == [1, 3]  # train 3 (0.14) is not atypical there
    assert res.paper_sizes == {k: int(v.size) for k, v in paper.sets.items()}
    assert res.labels["paper"].tolist() == paper.labels["decision"].tolist()
    dec = {d["rule"]: d for d in res.decided}
    assert dec["train-mem"]["decided"] == pytest.approx(0.75) and dec["test-typical"]["decided"] == pytest.approx(0.6)
    # more models decide 0.14 against 0.15 (0.01 away, SE 0.024) and 0.03 against 0.02: finite projections
    assert dec["train-mem"]["models_90"] > 2000 and dec["test-typical"]["models_90"] > 2000
    assert dec["test-atypical"]["models_90"] == 2000


def test_alpha_is_spent_over_looks_and_fwer_is_stricter():
    many = compute_splits(scores(), SplitConfig(error_control="fdr:0.05", looks=10**12), project=False)
    # alpha 5e-14: 0.08 (SE 0.024) is no longer shown to lie between 0.02 and 0.15
    assert labels_of(many, "train-mem")[2] == "undecided" and many.control == "fdr:5e-14"
    fwer = compute_splits(scores(), SplitConfig(error_control="fwer:0.05"), project=False)
    assert fwer.control == "fwer:0.05"


def test_refusals():
    with pytest.raises(ConfigError, match="choose one"):
        SplitConfig(error_control="fdr:0.05", significance=2.0)
    with pytest.raises(ConfigError):
        SplitConfig(error_control="fdr:2")
    thr = scores(infl_keep="threshold", infl_min_abs_same=0.02, infl_min_abs_cross=0.02)
    with pytest.raises(SchemaError, match="--keep same-class"):
        compute_splits(thr, SplitConfig(error_control="fdr:0.05"))


def test_cli_writes_labels_and_summary(tmp_path, capsys):
    run = tmp_path / "run"
    write_scores(run / "scores", scores())
    assert main(["splits", str(run), "--error-control", "fdr:0.05"]) == 0
    lab, meta = read_table(run / "splits" / "labels.parquet", required=LABEL_COLUMNS)
    assert len(lab) == 4 + 5 + 5 and meta["thresholds"]["error_control"] == "fdr:0.05"
    summary = (run / "splits" / "summary.md").read_text()
    assert "## Labels" in summary and "## Models needed" in summary and "paper's reading" in summary
    out = capsys.readouterr().out
    assert "train-mem" in out and "decided now" in out and "atypical:1" in out
    from memadv.analysis.report import noise_section
    report = noise_section(run)  # the report carries the same table
    assert "**Models needed.**" in report and "| test-typical | fdr:0.05 | 2,000 |" in report
    assert main(["splits", str(run), "--error-control", "bogus"]) == 2
    assert "fdr-by" in capsys.readouterr().err
