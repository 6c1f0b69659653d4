"""Regression-adjusted memorization (memadv.estimate.adjust): the design-centred covariates, no bias
against a known truth on synthetic-longtail's structure, calibrated SEs, a smaller variance, and the
aggregation option end to end on a real (tiny) run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from memadv.cli.main import main
from memadv.config import build_config
from memadv.data import load_dataset
from memadv.scores.schema import read_scores
from memadv.estimate.adjust import AdjustConfig, adjusted_memorization, design_centred, nearest_same_class
from memadv.scores.equations import memorization
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.estimate.seeds import subset_mask
from memadv.errors import ConfigError, UnknownChoiceError

HI, LO, FREQ = 0.97, 0.10, 0.90   # P(correct): seen (itself or a sibling), unseen rare, frequent


def test_design_centring_matches_fixed_size_draws():
    """memadv's fixed-size subsets: E[s_j | s_i] = (k - s_i) / (n - 1), so x~ has mean 0 in each group
    (an overall-mean centring would be off by 1 / (n - 1) between the groups: visible at n = 12)."""
    n, m = 12, 20000
    masks = np.stack([subset_mask(0, i, n, 0.7) for i in range(m)])
    cols = np.array([[1, 2, 3]])
    x = design_centred(masks, cols, np.array([0]))[:, 0, :]            # (M, 3)
    s = masks[:, 0]
    se = x.std() / np.sqrt(min(s.sum(), (~s).sum()))
    for g in (True, False):
        assert np.abs(x[s == g].mean(0)).max() < 4 * se
    naive = masks[:, 1:4] - masks[:, 1:4].mean()
    gap = naive[s].mean() - naive[~s].mean()
    assert gap < -8 * se and abs(gap + 1 / (n - 1)) < 4 * se          # the shift the design centring removes


def _longtail_truth():
    """Synthetic-longtail's rare sub-populations as an ideal memorizer sees them: a rare example is right
    with P HI when it or a sibling is in the subset, else LO; frequent ones with FREQ regardless. The
    truth of Eq. 1 under fixed-size subsets (k of n): P(no sibling in | i out) is hypergeometric."""
    ds = load_dataset("synthetic-longtail")
    gt = ds.ground_truth
    y = ds.y_train.numpy()
    n = len(y)
    k = int(round(0.7 * n))
    rare, sp = gt["rare_train"], gt["train_subpop"]
    sib = [np.flatnonzero((sp == sp[i]) & (np.arange(n) != i)) if rare[i] else np.zeros(0, np.int64)
           for i in range(n)]
    none_in = np.array([np.prod([(n - 1 - k - t) / (n - 1 - t) for t in range(len(s))]) for s in sib])
    truth = np.where(rare, HI - (HI * (1 - none_in) + LO * none_in), 0.0)
    return ds, y, k, rare, sib, truth


def _simulate(rng, m, n, k, rare, sib):
    masks = np.zeros((m, n), bool)
    for row in masks:
        row[rng.permutation(n)[:k]] = True
    seen = masks.copy()
    for i in np.flatnonzero(rare):
        if len(sib[i]):
            seen[:, i] |= masks[:, sib[i]].any(1)
    p = np.where(rare, np.where(seen, HI, LO), FREQ)
    return masks, rng.random((m, n)) < p


@pytest.mark.parametrize("covariates", ["neighbours", "influencers"])
def test_unbiased_and_calibrated_on_synthetic_longtail(covariates):
    ds, y, k, rare, sib, truth = _longtail_truth()
    n = len(y)
    cov = nearest_same_class(ds.x_train.numpy(), y, 2) if covariates == "neighbours" else "influencers"
    rng = np.random.default_rng(7)
    reps, m = 24, 150
    plain, adj, adj_se = [], [], []
    for _ in range(reps):
        masks, correct = _simulate(rng, m, n, k, rare, sib)
        plain.append(memorization(masks, correct, y)["mem"].to_numpy())
        a = adjusted_memorization(masks, correct, cov, y=y, k=2)
        adj.append(a["mem_adj"].to_numpy())
        adj_se.append(a["mem_adj_se"].to_numpy())
    plain, adj, adj_se = np.array(plain), np.array(adj), np.array(adj_se)
    for sel in (rare, ~rare):
        err = adj[:, sel] - truth[sel]
        per_rep = err.mean(1)                                       # replicate means are independent
        assert abs(per_rep.mean()) < 4 * per_rep.std(ddof=1) / np.sqrt(reps) + 1e-4, per_rep.mean()
        coverage = np.mean(np.abs(err) <= 1.96 * adj_se[:, sel])
        assert 0.90 <= coverage <= 0.98, coverage
    # fewer models for the same SE on the examples the neighbours' bits explain
    var_ratio = plain[:, rare].var(0).mean() / adj[:, rare].var(0).mean()
    print(f"{covariates}: variance plain / adjusted on rare examples {var_ratio:.2f}")
    assert var_ratio > 1.2, var_ratio


def test_options_refuse_bad_values(tmp_path):
    with pytest.raises(UnknownChoiceError, match="influencers"):
        AdjustConfig(mem_adjust="cuped")
    with pytest.raises(ConfigError):
        AdjustConfig(adjust_covariates=0)
    toml = tmp_path / "a.toml"
    toml.write_text('[aggregate]\nmem_adjust = "neighbours"\nadjust_covariates = 3\n')
    cfg = build_config(AdjustConfig, {}, toml, section="aggregate")
    assert (cfg.mem_adjust, cfg.adjust_covariates) == ("neighbours", 3)


def test_aggregate_writes_adjusted_columns(tmp_path, capsys):
    run = tmp_path / "run"
    estimate(EstimateConfig(dataset="digits", models=20, models_per_shard=10, epochs=1, batch_size=256,
                            full_models=0), run, progress=False, scheduler="sync")
    plain = read_scores(run)
    assert "mem_adj" not in plain.mem and plain.meta["mem_adjust"] == "none"
    copy = tmp_path / "copy"
    shutil.copytree(run / "estimate", copy / "estimate")
    assert main(["aggregate", str(copy), "--mem-adjust", "influencers", "--adjust-covariates", "2"]) == 0
    assert "--mem-adjust influencers" in capsys.readouterr().out
    adj = read_scores(copy)
    assert adj.meta["mem_adjust"] == "influencers" and adj.meta["mem_adjust_covariates"] == 2
    np.testing.assert_array_equal(adj.mem["mem"], plain.mem["mem"])      # the plain columns are untouched
    defined = np.isfinite(adj.mem["mem_adj"].to_numpy())
    assert defined.mean() > 0.9
    assert (adj.mem["mem_adj_se"].to_numpy()[defined] >= 0).all()
    with pytest.raises(SystemExit):
        main(["aggregate", str(copy), "--mem-adjust", "cuped"])
    assert "invalid choice: 'cuped'" in capsys.readouterr().err


def test_nearest_same_class_excludes_self_even_with_a_duplicate():
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 5)), rng.integers(0, 3, 300)
    x[5], y[7] = x[7], y[5]                                           # 5 and 7: identical, same class
    nb = nearest_same_class(x, y, 4)
    assert (nb != np.arange(300)[:, None]).all() and nb[5, 0] == 7 and nb[7, 0] == 5
    for i in range(300):
        others = np.flatnonzero((y == y[i]) & (np.arange(300) != i))
        brute = others[np.argsort(((x[others] - x[i]) ** 2).sum(1))[:4]]
        assert set(nb[i]) == set(brute)
