"""Issue 9: full-data ERM models for the typical-test rule (paper Sec. 3.2, 'ERM trained on D')."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from memadv.scores.schema import read_scores
from memadv.splits.rules import SplitConfig
from memadv.splits.files import make_splits, read_split_sets
from memadv.estimate.config import EstimateConfig
from memadv.splits.erm_accuracy import read_full_test_acc, use_erm_accuracy
from memadv.estimate.full_models import FULL_ID_BASE
from memadv.estimate.run import estimate
from memadv.estimate.seeds import model_seed
from memadv.estimate.shards import dataset_for
from memadv.estimate.train import build_models, lr_at

TINY = dict(dataset="digits", models=4, models_per_shard=2, epochs=2, batch_size=256, full_models=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("full") / "run"
    estimate(EstimateConfig(**TINY), d, progress=False, scheduler="sync")
    return d


def test_full_models_equal_a_direct_computation(run):
    """p_correct of test_acc_full.parquet == the share of K plain (unpacked) nets, each trained alone on
    all of D with SGD as the estimate trains, that classify the test example correctly."""
    cfg = EstimateConfig(**TINY)
    ds = dataset_for(cfg)
    full = read_full_test_acc(run)
    assert full is not None and (full["n_models"] == 3).all()
    correct = []
    for j in range(3):
        mid = FULL_ID_BASE + j
        net = build_models(cfg, ds, [mid])[0]
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(model_seed(cfg.seed, mid, "order"))
        n = ds.x_train.shape[0]
        for epoch in range(cfg.epochs):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch, cfg)
            net.train()
            for ids in torch.randperm(n, generator=gen).split(cfg.batch_size):
                loss = torch.nn.functional.cross_entropy(net(ds.x_train[ids].float() / 255.0), ds.y_train[ids])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            correct.append((net(ds.x_test.float() / 255.0).argmax(1) == ds.y_test).numpy())
    direct = np.stack(correct).mean(0)
    got = full.sort_values("idx")["p_correct"].to_numpy()
    # packed and plain training agree up to float summation order: at most a few borderline test examples
    assert np.mean(np.abs(got - direct) > 1e-9) < 0.02
    assert got.mean() == pytest.approx(direct.mean(), abs=0.01)


def test_typical_test_rule_uses_full_models(run, tmp_path):
    full = read_full_test_acc(run).set_index("idx")["p_correct"]
    sub = read_scores(run).test_acc.set_index("idx")["p_correct"]
    res, out = make_splits(run, SplitConfig(), tmp_path / "full")
    typical = read_split_sets(out / "splits.parquet")["test/typical"]
    assert not np.isin(typical, full.index[full < 0.8]).any()            # every excluded-by-accuracy id is gone
    rule = next(r for r in res.rules if str(r["rule"]).startswith("remove P(correct)"))
    assert rule["removed"] == int((full < 0.8).sum()) and "3 full-data ERM models" in rule["rule"]
    res_s, _ = make_splits(run, SplitConfig(erm_models="subset"), tmp_path / "sub")
    rule_s = next(r for r in res_s.rules if str(r["rule"]).startswith("remove P(correct)"))
    assert rule_s["removed"] == int((sub < 0.8).sum()) and "subset models" in rule_s["rule"]


def test_without_full_models_the_rule_falls_back_and_says_so(run):
    scores = read_scores(run)
    s = use_erm_accuracy(scores, run / "nowhere", "full")
    assert s.meta["test_acc_source"] == "subset" and "weaker than ERM" in s.meta["test_acc_warning"]
    pd.testing.assert_frame_equal(s.test_acc, scores.test_acc)
