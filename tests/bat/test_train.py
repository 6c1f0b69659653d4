"""The training loop on digits: BAT(0, 0) == PGD-AT, exact resume after a kill, NaN loss, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import memadv.bat.train as T
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.train import train
from memadv.bat.train_config import TrainConfig
from memadv.cli.main import main
from memadv.data import load_dataset
from memadv.scores.schema import MEM_COLUMNS, INFL_COLUMNS, TEST_ACC_COLUMNS, Scores, dataset_meta, write_scores
from memadv.files.tables import write_table

torch.set_num_threads(1)  # tiny MLPs: threads only contend on a shared machine

FAST = dict(epochs=2, progress=False, final_attacks=["clean", "fgsm", "pgd", "cw"], eval_batch_size=512)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def write_run_inputs(root: Path, ds, *, meta_override: dict | None = None, bad_split_id: bool = False) -> Path:
    """root/scores (mem in [0, 1], ~30 % atypical) and root/splits/splits.parquet; returns root/scores."""
    n = ds.x_train.shape[0]
    rng = np.random.default_rng(0)
    mem = np.where(rng.random(n) < 0.3, rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.01, n))
    labels = ds.y_train.numpy()
    df = pd.DataFrame({"idx": np.arange(n), "label": labels, "mem": mem, "mem_se": 0.01, "p_in": 0.9,
                       "p_out": 0.9 - mem, "n_in": 10, "n_out": 5})[MEM_COLUMNS]
    meta = {**dataset_meta(ds), "source": "test", **(meta_override or {})}
    write_scores(root / "scores", Scores(mem=df, infl=pd.DataFrame(columns=INFL_COLUMNS),
                                         test_acc=pd.DataFrame(columns=TEST_ACC_COLUMNS), meta=meta))
    te = np.arange(ds.x_test.shape[0])
    rows = [("train", i, labels[i], "atypical" if mem[i] > 0.15 else "typical") for i in range(n)]
    rows += [("test", int(i), int(ds.y_test[i]), "atypical" if i % 3 == 0 else "typical") for i in te]
    if bad_split_id:
        rows.append(("test", 10**6, -1, "typical"))
    sp = pd.DataFrame(rows, columns=["split", "idx", "label", "set"]).astype({"idx": "int64", "label": "int64"})
    write_table(root / "splits" / "splits.parquet", sp, {"dataset": ds.name})
    return root / "scores"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["model"]


def _metrics(run_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(run_dir / "metrics.parquet")
    return df.drop(columns=["time_s", "eval_time_s"])


def test_bat_with_zero_alpha_beta_trains_exactly_like_pgd_at(tmp_path, digits):
    scores = write_run_inputs(tmp_path, digits)
    pgd = train(TrainConfig(method="pgd", scores=str(scores), **FAST), tmp_path / "out", ObjectiveConfig(),
                dataset=digits)
    bat = train(TrainConfig(method="bat", scores=str(scores), **FAST), tmp_path / "out",
                ObjectiveConfig(alpha=0.0, beta=0.0), dataset=digits)
    assert pgd.name == "pgd-seed0" and bat.name == "bat-alpha0-beta0-seed0"
    wp, wb = _weights(pgd), _weights(bat)
    assert wp.keys() == wb.keys()
    for k in wp:
        assert torch.equal(wp[k], wb[k]), k
    mp, mb = _metrics(pgd), _metrics(bat)
    shared = ["epoch", "lr", "loss"] + [c for c in mp.columns if c.startswith(("train/", "test/"))]
    pd.testing.assert_frame_equal(mp[shared], mb[shared])
    # and BAT with alpha, beta > 0 does train differently
    bat2 = train(TrainConfig(method="bat", scores=str(scores), **FAST), tmp_path / "out",
                 ObjectiveConfig(alpha=2.0, beta=0.2), dataset=digits)
    assert not torch.equal(_weights(bat2)["head.weight"], wp["head.weight"])


def test_outputs_subsets_and_best_checkpoints(tmp_path, digits):
    scores = write_run_inputs(tmp_path, digits)
    run = train(TrainConfig(method="bat", scores=str(scores), eval_every=1, **{**FAST, "epochs": 3}),
                tmp_path / "out", ObjectiveConfig(alpha=1.0, beta=0.2), dataset=digits)
    m = pd.read_parquet(run / "metrics.parquet")
    assert list(m["epoch"]) == [1, 2, 3]
    for split in ("train", "test"):
        for s in ("all", "typical", "atypical"):
            assert {f"{split}/{s}/clean", f"{split}/{s}/adv", f"{split}/{s}/n"} <= set(m.columns)
    assert m["test/atypical/n"].iloc[0] == len(range(0, digits.x_test.shape[0], 3))
    for split in ("train", "test"):  # typical + atypical partition the split here: accuracies must add up
        for kind in ("clean", "adv"):
            parts = sum(m[f"{split}/{s}/{kind}"] * m[f"{split}/{s}/n"] for s in ("typical", "atypical"))
            np.testing.assert_allclose(m[f"{split}/all/{kind}"] * m[f"{split}/all/n"], parts, atol=1e-6)
    conf = json.loads((run / "config.json").read_text())
    assert conf["train"]["splits"].endswith("splits.parquet")  # found beside --scores
    assert conf["objective"]["eps"] == pytest.approx(64 / 255)
    env = conf["environment"]  # the machine and software that trained it: std over seeds is run-to-run variation
    assert len(env) == 1 and env[0]["torch"] == torch.__version__ and env[0]["torch_threads"] == 1
    assert env[0]["device"] == "cpu" and env[0]["cpu"] and env[0]["usable_cpus"] >= 1
    for kind in ("adv", "clean"):
        ck = torch.load(run / f"best_{kind}.pt", map_location="cpu", weights_only=False)
        assert ck["epoch"] == int(m["epoch"].iloc[int(np.argmax(m[f"test/all/{kind}"].to_numpy()))])
    final = pd.read_parquet(run / "final.parquet")
    assert set(final["checkpoint"]) == {"last", "best_adv", "best_clean"}
    assert set(final["attack"]) == {"clean", "fgsm", "pgd", "cw"}
    last = final[(final["checkpoint"] == "last") & (final["subset"] == "test/all")].set_index("attack")["acc"]
    assert last["clean"] == pytest.approx(m["test/all/clean"].iloc[-1])  # same weights, same evaluation
    assert last["pgd"] == pytest.approx(m["test/all/adv"].iloc[-1])
    assert last["pgd"] <= last["fgsm"] + 0.05


class Killed(Exception):
    pass


def test_resume_after_kill_ends_with_identical_metrics(tmp_path, digits, monkeypatch):
    scores = write_run_inputs(tmp_path, digits)
    cfg = TrainConfig(method="bat", scores=str(scores), crop_pad=1, **{**FAST, "epochs": 3})  # augmentation on
    ocfg = ObjectiveConfig(alpha=1.0, beta=0.2)
    ref = train(cfg, tmp_path / "ref", ocfg, dataset=digits)

    real = T.train_one_epoch

    def dying(model, objective, optimizer, images, labels, cfg_, epoch, gen, device, **kw):
        if epoch == 3:  # die in the middle of the third epoch, after some optimizer steps
            loss = objective.loss
            calls = {"n": 0}

            def loss_then_die(*a, **k):
                calls["n"] += 1
                if calls["n"] == 5:
                    raise Killed()
                return loss(*a, **k)
            objective.loss = loss_then_die
        return real(model, objective, optimizer, images, labels, cfg_, epoch, gen, device, **kw)

    monkeypatch.setattr(T, "train_one_epoch", dying)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "resumed", ocfg, dataset=digits)
    run = tmp_path / "resumed" / ref.name
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 2
    assert list(pd.read_parquet(run / "metrics.parquet")["epoch"]) == [1, 2]
    assert not (run / "final.parquet").exists()
    monkeypatch.setattr(T, "train_one_epoch", real)
    assert train(cfg, tmp_path / "resumed", ocfg, dataset=digits) == run
    pd.testing.assert_frame_equal(_metrics(ref), _metrics(run))
    pd.testing.assert_frame_equal(pd.read_parquet(ref / "final.parquet"), pd.read_parquet(run / "final.parquet"))
    for k, v in _weights(ref).items():
        assert torch.equal(v, _weights(run)[k]), k
    # a finished run re-run with the same command returns at once; another config is refused
    assert train(cfg, tmp_path / "resumed", ocfg, dataset=digits) == run
    with pytest.raises(T.ConfigError, match="another configuration"):
        train(TrainConfig(method="bat", scores=str(scores), name=run.name, **{**FAST, "epochs": 4}),
              tmp_path / "resumed", ocfg, dataset=digits)


def test_nan_loss_stops_with_epoch_and_batch_named(tmp_path, monkeypatch, capsys):
    real = T.build_objective

    def poisoned(method, ocfg, mem=None):
        obj = real(method, ocfg, mem=mem)
        state = {"epoch": 0, "batch": 0}
        set_epoch, loss = obj.set_epoch, obj.loss

        def se(epoch, total):
            state["epoch"], state["batch"] = epoch + 1, 0
            set_epoch(epoch, total)

        def nan_loss(*a, **k):
            state["batch"] += 1
            value, stats = loss(*a, **k)
            return (value * float("nan") if (state["epoch"], state["batch"]) == (2, 3) else value), stats
        obj.set_epoch, obj.loss = se, nan_loss
        return obj

    monkeypatch.setattr(T, "build_objective", poisoned)
    out = tmp_path / "out"
    rc = main(["train", "--method", "pgd", "--epochs", "3", "--out", str(out), "--progress", "false",
               "--final-attacks", "clean"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("memadv: error: loss became nan at epoch 2, batch 3")
    assert "last.pt (epoch 1)" in err
    ck = torch.load(out / "pgd-seed0" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 1
    assert not (out / "pgd-seed0" / "final.parquet").exists()


@pytest.mark.parametrize("args, message", [
    (["--method", "madry"], "unknown method 'madry'"),
    (["--method", "bat", "--alpha", "-1"], "--alpha must be in"),
    (["--method", "bat", "--beta", "-0.1"], "--beta must be in"),
    (["--method", "bat", "--tau", "0"], "--tau must be in"),
    (["--method", "bat", "--sigma", "1.5"], "--sigma must be in"),
    (["--eps", "1.5"], "--eps must be in"),
    (["--eps", "-0.01"], "--eps must be in"),
    (["--lr", "0"], "--lr must be in"),
    (["--net", "vgg"], "unknown net 'vgg'"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
    (["--method", "bat"], "needs memorization scores"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, message):
    rc = main(["train", *args, "--out", str(tmp_path / "out"), "--progress", "false"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_scores_of_another_dataset_and_bad_split_ids_exit_2(tmp_path, capsys, digits):
    other = write_run_inputs(tmp_path / "other", digits, meta_override={"dataset": "cifar10",
                                                                         "fingerprint_train": "0123456789abcdef"})
    rc = main(["train", "--method", "bat", "--scores", str(other), "--out", str(tmp_path / "out"),
               "--progress", "false"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "made for dataset 'cifar10'" in err
    bad = write_run_inputs(tmp_path / "bad", digits, bad_split_id=True)
    rc = main(["train", "--method", "pgd", "--scores", str(bad), "--out", str(tmp_path / "out"),
               "--progress", "false"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "1000000" in err
    assert not (tmp_path / "out").exists()


def test_config_toml_sections_and_typos(tmp_path, capsys, digits):
    scores = write_run_inputs(tmp_path, digits)
    conf = tmp_path / "bat.toml"
    conf.write_text(f'method = "bat"\nepochs = 1\nscores = "{scores}"\nfinal_attacks = ["clean"]\n'
                    f'[objective]\nalpha = 2.0\nbeta = 0.1\n')
    out = tmp_path / "out"
    # the command line wins over the file
    assert main(["train", "--config", str(conf), "--beta", "0.3", "--out", str(out), "--progress", "false"]) == 0
    run = out / "bat-alpha2-beta0.3-seed0"
    assert json.loads((run / "config.json").read_text())["objective"]["alpha"] == 2.0
    conf.write_text('method = "bat"\n[objective]\nalfa = 2.0\n')
    capsys.readouterr()
    assert main(["train", "--config", str(conf), "--out", str(out)]) == 2
    assert "unknown key 'alfa' in table [objective]" in capsys.readouterr().err


def test_eval_subsample_is_one_draw_for_every_seed(tmp_path, digits):
    """--eval-max / --final-max draw the same test images for every training seed, so that paired
    comparisons over seeds see the same images (the draw used to follow the training seed)."""
    scores = write_run_inputs(tmp_path, digits)
    n_atyp = []
    for seed in (0, 1):
        run = train(TrainConfig(method="pgd", scores=str(scores), seed=seed, eval_max=40, final_max=40,
                                **{**FAST, "epochs": 1, "final_attacks": ["clean"]}),
                    tmp_path / "out", ObjectiveConfig(), dataset=digits)
        m = pd.read_parquet(run / "metrics.parquet")
        final = pd.read_parquet(run / "final.parquet")
        n_atyp.append((int(m["test/atypical/n"].iloc[0]), int(m["train/atypical/n"].iloc[0]),
                       int(final.loc[final["subset"] == "test/atypical", "n"].iloc[0])))
    assert n_atyp[0] == n_atyp[1]
