"""The estimator recovers the planted structure of synthetic-longtail (defaults of both)."""

import numpy as np
from sklearn.metrics import roc_auc_score

from memadv.data import load_dataset
from memadv.data.synthetic_longtail import expected_influence


def test_synthetic_longtail_ground_truth(synthetic_run):
    _, scores = synthetic_run
    ds = load_dataset("synthetic-longtail")
    gt = ds.ground_truth
    r = scores.meta["spec"]["subset_ratio"]
    assert scores.meta["n_models"] == 2000

    mem = scores.mem["mem"].to_numpy()
    assert np.isfinite(mem).all()
    auc = roc_auc_score(gt["rare_train"], mem)
    assert auc >= 0.95, auc

    same = scores.infl[scores.infl["train_label"] == scores.infl["test_label"]]
    found = {tuple(p) for p in same.loc[same["infl"] >= 0.15, ["train_idx", "test_idx"]].to_numpy()}
    planted = {(int(i), int(j)) for i, j, k in gt["rare_pairs"] if expected_influence(k, r) >= 0.15}
    tp = len(found & planted)
    precision, recall = tp / max(len(found), 1), tp / len(planted)
    print(f"synthetic-longtail: mem ROC-AUC {auc:.4f}; high-influence pairs: {len(found)} found, "
          f"{len(planted)} planted, precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9
