"""Packed = separate: K models trained packed equal the same K models trained one by one.

The one-by-one reference below is a plain training loop over an ordinary ``nn.Module``, written
independently of ``memadv.estimate.train``; it shares only the seed derivation (the contract that
model m depends on (run seed, m) alone). Both run in float64: then the only difference is the
summation order inside batched vs. single matmuls/convolutions (~1e-16 relative per operation),
which after the steps below stays far below the 1e-8 tolerance on logits, while any real
difference (wrong subset, order, augmentation, init, shared gradient or optimizer state) changes
logits by >1e-3 — the test also checks that the packed models differ from each other by that much.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memadv.data import load_dataset
from memadv.data.augment import random_crop_flip
from memadv.estimate.config import EstimateConfig
from memadv.estimate.seeds import model_seed, subset_mask
from memadv.estimate.train import build_models, lr_at, train_models


def train_one_by_one(cfg, dataset, m, on_batch=None):
    """Model m in a plain loop; ``on_batch(epoch, ids, logits)`` sees each minibatch's training logits."""
    (net,) = build_models(cfg, dataset, [m])
    net = net.double()
    mask = subset_mask(cfg.seed, m, dataset.x_train.shape[0], cfg.subset_ratio)
    subset = torch.from_numpy(np.flatnonzero(mask))
    gen = torch.Generator().manual_seed(model_seed(cfg.seed, m, "order"))
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for epoch in range(cfg.epochs):
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch, cfg)
        net.train()
        perm = subset[torch.randperm(len(subset), generator=gen)]
        for ids in perm.split(cfg.batch_size):
            x = dataset.x_train[ids]
            if cfg.augment:
                x = random_crop_flip(x, gen)
            logits = net(x.double() / 255)
            if on_batch is not None:
                on_batch(epoch, ids, logits.detach())
            loss = F.cross_entropy(logits, dataset.y_train[ids])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@pytest.mark.parametrize("packing", ["packed", "one-by-one"])
@pytest.mark.parametrize("net,augment,epochs,batch_size", [("mlp", False, 2, 64), ("mlp", True, 1, 64),
                                                           ("cnn", True, 1, 256), ("trades-cnn", True, 1, 256)])
def test_packed_equals_one_by_one(net, augment, epochs, batch_size, packing):
    ds = load_dataset("digits")
    cfg = EstimateConfig(dataset="digits", net=net, epochs=epochs, batch_size=batch_size, augment=augment, seed=3,
                         packing=packing)
    ids = [5, 0, 11]
    result = train_models(cfg, ds, ids, dtype=torch.float64)
    x_test = ds.x_test.double() / 255
    with torch.no_grad():
        packed_logits = result.packed(x_test, shared_input=True)
    for k, m in enumerate(ids):
        ref = train_one_by_one(cfg, ds, m)
        with torch.no_grad():
            ref_logits = ref(x_test)
        assert (packed_logits[k] - ref_logits).abs().max().item() < 1e-8
        assert np.array_equal(result.test_correct[k], (ref_logits.argmax(1) == ds.y_test).numpy())
        assert np.array_equal(result.masks[k], subset_mask(cfg.seed, m, ds.x_train.shape[0], cfg.subset_ratio))
    assert (packed_logits[0] - packed_logits[1]).abs().max().item() > 1e-3


def test_epoch_draws_equal_plain_augmentation():
    """The step's per-epoch draws + batched on-device crop/flip equal random_crop_flip batch by batch."""
    from memadv.data.augment import apply_crop_flip
    from memadv.estimate.train import CROP_PAD, draw_epoch

    ds = load_dataset("digits")
    subset = torch.arange(100)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    draws = draw_epoch(g1, subset, 32, augment=True)
    perm = subset[torch.randperm(100, generator=g2)]
    assert torch.equal(draws.ids, perm)
    for start, ids in zip(range(0, 100, 32), perm.split(32)):
        sl = slice(start, start + 32)
        ref = random_crop_flip(ds.x_train[ids], g2, pad=CROP_PAD)
        assert torch.equal(apply_crop_flip(ds.x_train[ids], draws.shifts[sl], draws.flips[sl], CROP_PAD), ref)


def test_non_finite_loss_fails_the_shard():
    """Issue 10 item 7: a diverging estimate used to write NaN models and normal-looking scores."""
    from memadv.errors import NonFiniteLossError

    ds = load_dataset("digits")
    for packing in ("packed", "one-by-one"):
        cfg = EstimateConfig(dataset="digits", net="mlp", epochs=2, lr=1e30, packing=packing)
        with pytest.raises(NonFiniteLossError, match="NaN or infinite in epoch 0"):
            train_models(cfg, ds, [0, 1])


@pytest.mark.parametrize("field", ["lr", "momentum", "weight_decay", "subset_ratio"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_settings_refused(field, value):
    from memadv.errors import ConfigError

    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} must be"):
        EstimateConfig(dataset="digits", **{field: value})


def test_bf16_packed_equals_one_by_one_within_tolerance():
    """bf16 autocast (a CUDA option, runnable on CPU): packed and one-by-one agree within the
    stated tolerance — >= 95% identical test predictions, final losses within 0.05 — since bf16's
    8-bit mantissa makes summation-order differences visible (float32/float64 agree to 1e-8)."""
    ds = load_dataset("digits")
    results = [train_models(EstimateConfig(dataset="digits", net="mlp", epochs=2, bf16=True, packing=p), ds, [0, 1])
               for p in ("packed", "one-by-one")]
    agree = (results[0].test_correct == results[1].test_correct).mean()
    assert agree >= 0.95
    assert np.abs(results[0].final_loss - results[1].final_loss).max() < 0.05
    assert results[0].test_correct.mean() > 0.8  # the models still learn under bf16
