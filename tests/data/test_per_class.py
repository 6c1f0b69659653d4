"""--per-class / --test-per-class: the first N examples of each class, original ids kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memadv.data.dataset import Dataset, channel_stats
from memadv.data.per_class import first_per_class, first_per_class_ids
from memadv.errors import ConfigError, DatasetError


def make(n_train: int = 40, n_test: int = 17, classes: int = 3, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train, 1, 4, 4), dtype=torch.uint8, generator=g)
    xt = torch.randint(0, 256, (n_test, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n_train,), generator=g)
    yt = torch.randint(0, classes, (n_test,), generator=g)
    mean, std = channel_stats(x)
    return Dataset("toy", x, y, xt, yt, classes, mean, std)


def plain_first_per_class(labels: np.ndarray, n: int) -> list[int]:
    """What a user would write: walk the labels in order and keep while the class count is below n."""
    seen: dict[int, int] = {}
    kept = []
    for i, c in enumerate(labels.tolist()):
        if seen.get(c, 0) < n:
            kept.append(i)
            seen[c] = seen.get(c, 0) + 1
    return kept


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_ids_match_a_plain_loop(n: int) -> None:
    labels = np.random.default_rng(n).integers(0, 4, 60)
    assert first_per_class_ids(labels, n).tolist() == plain_first_per_class(labels, n)


def test_reduced_copy_keeps_original_ids_and_images() -> None:
    ds = make()
    small = first_per_class(ds, 3)
    ids = small.ids("train")
    assert ids.tolist() == plain_first_per_class(ds.y_train.numpy(), 3)
    assert torch.equal(small.x_train, ds.x_train[torch.from_numpy(ids)])
    assert torch.equal(small.y_train, ds.y_train[torch.from_numpy(ids)])
    assert (small.mean, small.std) == channel_stats(small.x_train)
    # the test split is untouched without test_per_class
    assert small.test_ids is None and torch.equal(small.x_test, ds.x_test)
    assert small.fingerprint("test") == ds.fingerprint("test")
    assert small.fingerprint("train") != ds.fingerprint("train")
    # positions: canonical id -> row of the reduced copy, and a refusal for an id it does not hold
    assert small.positions("train", ids[::-1]).tolist() == list(range(len(ids)))[::-1]
    dropped = sorted(set(range(40)) - set(ids.tolist()))[0]
    with pytest.raises(DatasetError, match=f"id {dropped} "):
        small.positions("train", np.array([dropped]))


def test_positions_of_a_full_copy_and_unsorted_ids() -> None:
    ds = make()
    assert ds.positions("test", np.array([[3, 0]])).tolist() == [[3, 0]]
    with pytest.raises(DatasetError, match="id 17 "):
        ds.positions("test", np.array([2, 17]))
    with pytest.raises(ValueError, match="strictly increasing"):
        Dataset("toy", ds.x_train[:2], ds.y_train[:2], ds.x_test, ds.y_test, 3, ds.mean, ds.std,
                train_ids=np.array([5, 1]))


def test_fingerprint_covers_the_choice_not_only_labels() -> None:
    """Two selections with the same label sequence must not share a fingerprint."""
    y = torch.tensor([0, 0, 1, 1])
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    ds = Dataset("toy", x, y, x, y, 2, (0.0,), (1.0,))
    a = first_per_class(ds, 1)                       # ids 0, 2
    b = first_per_class(Dataset("toy", x[[1, 0, 3, 2]], y, x, y, 2, (0.0,), (1.0,)), 1)
    assert a.ids("train").tolist() == [0, 2]
    assert a.y_train.tolist() == [0, 1] and b.y_train.tolist() == [0, 1]
    c = Dataset("toy", a.x_train, a.y_train, x, y, 2, (0.0,), (1.0,), train_ids=np.array([1, 3]))
    assert a.fingerprint("train") != c.fingerprint("train")


def test_composes_nothing_removed_and_bad_counts() -> None:
    ds = make()
    twice = first_per_class(first_per_class(ds, 5, 4), 2, 1)
    once = first_per_class(ds, 2, 1)
    assert np.array_equal(twice.ids("train"), once.ids("train")) and np.array_equal(twice.ids("test"), once.ids("test"))
    assert first_per_class(ds, 1000) is ds and first_per_class(ds, None, None) is ds
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="per-class"):
            first_per_class(ds, bad)


def test_load_dataset_and_estimate_spec_record_per_class(tmp_path) -> None:
    from memadv.data import load_dataset
    from memadv.estimate.config import EstimateConfig
    from memadv.estimate.shards import make_spec

    ds = load_dataset("digits", per_class=20, test_per_class=5)
    assert np.bincount(ds.y_train.numpy()).tolist() == [20] * 10
    assert np.bincount(ds.y_test.numpy()).tolist() == [5] * 10
    cfg = EstimateConfig(dataset="digits", per_class=20, test_per_class=5)
    assert cfg.dataset_options() == {"per_class": 20, "test_per_class": 5}
    spec = make_spec(cfg, ds)
    assert spec["config"]["per_class"] == 20 and spec["n_train"] == 200
    assert "per_class" in EstimateConfig.IDENTITY


def test_estimate_writes_original_ids_and_refuses_another_size(tmp_path) -> None:
    from memadv.data import load_dataset
    from memadv.errors import ConfigError as _ConfigError
    from memadv.estimate.config import EstimateConfig
    from memadv.estimate.run import estimate

    cfg = EstimateConfig(dataset="digits", per_class=8, test_per_class=3, models=4, models_per_shard=4, epochs=2)
    scores = estimate(cfg, tmp_path, progress=False)
    ds = load_dataset("digits", per_class=8, test_per_class=3)
    assert scores.mem["idx"].tolist() == ds.ids("train").tolist()
    assert scores.test_acc["idx"].tolist() == ds.ids("test").tolist()
    assert set(scores.infl["train_idx"]) <= set(ds.ids("train").tolist())
    assert set(scores.infl["test_idx"]) <= set(ds.ids("test").tolist())
    # labels stored with the ids are the original labels at those positions
    full = load_dataset("digits")
    assert np.array_equal(scores.mem["label"].to_numpy(), full.y_train.numpy()[scores.mem["idx"].to_numpy()])
    assert scores.meta["fingerprint_train"] == ds.fingerprint("train") != full.fingerprint("train")
    with pytest.raises(_ConfigError, match="per_class"):
        estimate(EstimateConfig(dataset="digits", per_class=9, test_per_class=3, models=4, models_per_shard=4,
                                epochs=2), tmp_path, progress=False)
