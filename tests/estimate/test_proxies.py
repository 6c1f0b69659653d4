"""Free proxies logged during training (memadv.estimate.proxy_log) and their aggregation
(memadv.estimate.proxies): they change no model, they equal an independent plain-loop reference,
they survive the shard round trip, and runs without them still aggregate."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from memadv.cli.main import main
from memadv.data import load_dataset
from memadv.files.tables import read_meta, read_table, write_table
from memadv.estimate import checkpoints
from memadv.estimate.aggregate import aggregate
from memadv.estimate.config import EstimateConfig
from memadv.estimate.proxies import PROXIES, correlation, noise_ceiling
from memadv.estimate.proxy_log import PROXY_COLUMNS, ProxyLog, proxy_columns, read_proxy_rows
from memadv.estimate.run import estimate
from memadv.estimate.seeds import subset_mask
from memadv.estimate.shards import ShardTask, dataset_for, write_or_check_spec
from memadv.estimate.train import train_models
from memadv.errors import SchemaError
from memadv.layout import RunLayout
from test_packed import train_one_by_one  # tests/estimate is on sys.path (pytest's rootdir-less import)

TINY = dict(dataset="digits", models=8, models_per_shard=4, epochs=3, batch_size=128, full_models=0)


def reference(cfg, ds, m):
    """Model m trained by test_packed's plain loop, keeping each epoch's per-example training loss
    and correctness, and the proxies derived from them in the most literal way."""
    n = ds.x_train.shape[0]
    losses, correct = np.zeros((cfg.epochs, n)), np.zeros((cfg.epochs, n), bool)

    def keep(epoch, ids, logits):
        losses[epoch, ids.numpy()] = F.cross_entropy(logits, ds.y_train[ids], reduction="none").numpy()
        correct[epoch, ids.numpy()] = (logits.argmax(1) == ds.y_train[ids]).numpy()

    net = train_one_by_one(cfg, ds, m, on_batch=keep)
    mask = subset_mask(cfg.seed, m, n, cfg.subset_ratio)
    forgetting = sum((correct[e - 1] & ~correct[e]).astype(int) for e in range(1, cfg.epochs))
    # first epoch from which every later epoch is correct: count the trailing run of correct epochs
    trailing = np.array([next((k for k in range(cfg.epochs) if not correct[cfg.epochs - 1 - k, i]), cfg.epochs)
                         for i in range(n)])
    with torch.no_grad():
        held = F.cross_entropy(net(ds.x_train.double() / 255), ds.y_train, reduction="none").numpy()
    return mask, {"cum_loss": losses.sum(0), "correct_epochs": correct.sum(0), "forgetting": forgetting,
                  "first_learned": cfg.epochs - trailing}, held


@pytest.mark.parametrize("packing,augment", [("packed", False), ("one-by-one", False), ("packed", True)])
def test_proxies_equal_a_plain_loop(packing, augment):
    ds = load_dataset("digits")
    cfg = EstimateConfig(dataset="digits", epochs=4, batch_size=64, seed=2, packing=packing, lr=0.1, augment=augment)
    ids = [3, 0]
    result = train_models(cfg, ds, ids, dtype=torch.float64)
    for k, m in enumerate(ids):
        mask, ref, held = reference(cfg, ds, m)
        assert np.allclose(result.proxies["cum_loss"][k][mask], ref["cum_loss"][mask], rtol=1e-6, atol=1e-8)
        for name in ("correct_epochs", "forgetting", "first_learned"):
            assert np.array_equal(result.proxies[name][k][mask], ref[name][mask]), name
        assert np.allclose(result.train_loss[k][~mask], held[~mask], rtol=1e-5, atol=1e-6)
        # the run is long enough for every proxy to vary (else the comparison above proves little)
        assert ref["forgetting"][mask].max() >= 1 and len(np.unique(ref["first_learned"][mask])) >= 3


@pytest.mark.parametrize("packing", ["packed", "one-by-one"])
def test_logging_changes_no_model(packing):
    """Same seed with and without proxies: bit-identical parameters, correctness and losses."""
    ds = load_dataset("digits")
    cfg = EstimateConfig(dataset="digits", epochs=2, batch_size=64, seed=5, packing=packing)
    on = train_models(cfg, ds, [1, 4])
    off = train_models(dataclasses.replace(cfg, proxies=False), ds, [1, 4])
    assert off.proxies is None and on.proxies is not None
    for a, b in zip(on.packed.state_dict().values(), off.packed.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(on.train_correct, off.train_correct) and np.array_equal(on.test_correct, off.test_correct)
    assert np.array_equal(on.final_loss, off.final_loss)


def test_one_epoch_cum_loss_is_the_epoch_mean_loss():
    """With one epoch in one batch, mean over the subset of cum_loss = the model's last-epoch mean loss."""
    ds = load_dataset("digits")
    n_in = int(subset_mask(0, 0, ds.x_train.shape[0], 0.7).sum())
    cfg = EstimateConfig(dataset="digits", epochs=1, batch_size=n_in)
    r = train_models(cfg, ds, [0, 1])
    got = np.array([r.proxies["cum_loss"][k][r.masks[k]].mean() for k in range(2)])
    assert np.allclose(got, r.final_loss, rtol=1e-5)


def test_proxy_log_counts_by_hand():
    log = ProxyLog(1, 3, torch.device("cpu"))
    ids = torch.tensor([[0, 1, 2]])
    # example 0: right, wrong, right -> 1 forgetting, learned from epoch 2; 1: never right; 2: always right
    for epoch, c in enumerate(([1, 0, 1], [0, 0, 1], [1, 0, 1])):
        log.record(slice(None), ids, torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([c], dtype=torch.bool))
        log.end_epoch(epoch, slice(None))
    a = log.arrays()
    assert a["forgetting"].tolist() == [[1, 0, 0]] and a["first_learned"].tolist() == [[2, 3, 0]]
    assert a["correct_epochs"].tolist() == [[2, 0, 3]] and a["cum_loss"].tolist() == [[3.0, 6.0, 1.5]]


def test_shard_columns_round_trip_and_refuse_a_wrong_length():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 50)) < 0.7
    arrays = {"cum_loss": rng.random((3, 50)) * 40, "correct_epochs": rng.integers(0, 9, (3, 50)),
              "forgetting": rng.integers(0, 4, (3, 50)), "first_learned": rng.integers(0, 9, (3, 50))}
    held = rng.random((3, 50)) * 5
    cols = proxy_columns(arrays, held, masks)
    assert len(cols["cum_loss"][0]) == 2 * masks[0].sum() and len(cols["heldout_loss"][0]) == 2 * (~masks[0]).sum()
    back = read_proxy_rows(cols, masks, "x")
    assert np.allclose(back["cum_loss"][masks], arrays["cum_loss"][masks], rtol=1e-3)
    assert np.isnan(back["cum_loss"][~masks]).all() and np.isnan(back["heldout_loss"][masks]).all()
    assert np.array_equal(back["forgetting"][masks], arrays["forgetting"][masks])
    assert np.allclose(back["heldout_loss"][~masks], held[~masks], rtol=1e-3)
    cols["forgetting"][1] = cols["forgetting"][1][:-2]
    with pytest.raises(SchemaError, match="forgetting of model row 1"):
        read_proxy_rows(cols, masks, "x")


def test_correlation_and_noise_ceiling():
    rng = np.random.default_rng(1)
    a = rng.random(500)
    b = a + rng.normal(0, 0.3, 500)
    b[3] = np.nan
    for method, ref in (("pearson", scipy.stats.pearsonr), ("spearman", scipy.stats.spearmanr)):
        c = correlation(a, b, method)
        ok = np.isfinite(b)
        assert math.isclose(c["r"], ref(a[ok], b[ok])[0], rel_tol=1e-9) and c["n"] == 499
        assert c["lo"] < c["r"] < c["hi"] and c["hi"] - c["lo"] < 0.2
    ceil = noise_ceiling(a, b, models=10)["pearson"]
    r = scipy.stats.pearsonr(a[ok], b[ok])[0]
    assert math.isclose(ceil["rel"], 2 * r / (1 + r)) and math.isclose(ceil["ceiling"], math.sqrt(2 * r / (1 + r)))


@pytest.fixture(scope="module")
def run_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("proxies")
    on, off = base / "on", base / "off"
    estimate(EstimateConfig(**TINY), on, progress=False, scheduler="sync")
    estimate(EstimateConfig(**TINY, proxies=False), off, progress=False, scheduler="sync")
    return on, off


def test_run_writes_proxies_and_the_same_mem(run_pair):
    on, off = run_pair
    mem_on, meta = read_table(on / "scores" / "mem.parquet")
    mem_off, _ = read_table(off / "scores" / "mem.parquet")
    pd.testing.assert_frame_equal(mem_on, mem_off)  # the estimate is bit-identical
    prox, pmeta = read_table(on / "scores" / "proxies.parquet")
    assert pmeta["kind"] == "proxy" and meta["proxies"]["n_models"] == TINY["models"]
    assert list(prox["idx"]) == list(mem_on["idx"]) and set(PROXIES) <= set(prox.columns)
    assert (prox["n_in"] == mem_on["n_in"]).all() and (prox["n_out"] == mem_on["n_out"]).all()
    assert set(meta["proxies"]["agreement"]) == set(PROXIES)
    assert not (off / "scores" / "proxies.parquet").exists()
    assert "missing" in read_meta(off / "scores" / "mem.parquet")["proxies"]


def test_old_shards_aggregate_without_proxies(run_pair, tmp_path, capsys):
    """Shards written before proxies existed: aggregate drops the stale proxies.parquet and says so;
    a run where only some shards have them aggregates proxies from those and lists the others."""
    on, _ = run_pair
    run = tmp_path / "r"
    shutil.copytree(on, run)
    path = RunLayout(run).shard(0)
    df, meta = read_table(path)
    write_table(path, df.drop(columns=PROXY_COLUMNS), meta)
    scores = aggregate(run)
    assert scores.meta["proxies"]["shards_without"] == [0]
    assert scores.meta["proxies"]["n_models"] == TINY["models"] - TINY["models_per_shard"]
    for s in range(1, TINY["models"] // TINY["models_per_shard"]):
        df, meta = read_table(RunLayout(run).shard(s))
        write_table(RunLayout(run).shard(s), df.drop(columns=PROXY_COLUMNS), meta)
    assert main(["aggregate", str(run)]) == 0
    assert "proxies: none" in capsys.readouterr().out
    assert not (run / "scores" / "proxies.parquet").exists()


def test_checkpoint_without_proxies_resumes_without_them(tmp_path, monkeypatch):
    """A shard interrupted by code that logged no proxies (its checkpoint has none) finishes without
    proxy columns: the epochs before the checkpoint were not logged, so no partial values are written."""
    cfg = EstimateConfig(**{**TINY, "models": 2, "models_per_shard": 2})
    write_or_check_spec(tmp_path, cfg, dataset_for(cfg))
    original = checkpoints.ShardCheckpoint.save

    class Stop(BaseException):
        pass

    def save_old_style(self, state, done, total):
        original(self, {k: v for k, v in state.items() if k != "proxies"}, done, total)
        raise Stop

    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", save_old_style)
    with pytest.raises(Stop):
        ShardTask(tmp_path, runtime=cfg.runtime())(0)
    monkeypatch.setattr(checkpoints.ShardCheckpoint, "save", original)
    ShardTask(tmp_path, runtime=cfg.runtime())(0)
    df, meta = read_table(RunLayout(tmp_path).shard(0))
    assert not set(PROXY_COLUMNS) & set(df.columns) and meta["proxies_epochs"] is None
