"""Issue 9: validation slice, each method's checkpoint rule, selection labels in every table file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import memadv.bat.train as T
from memadv.analysis.bat_tables import find_runs, table2, table4
from memadv.bat import selection
from memadv.bat.methods import METHOD_REGISTRY
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.train import train
from memadv.bat.train_config import TrainConfig
from memadv.cli.main import main
from memadv.data.registry import load_dataset
from memadv.files.tables import write_table
from memadv.data.validation import read_validation, validation_ids, write_validation
from memadv.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# --------------------------------------------------------------------------- the slice

def test_validation_slice_is_stratified_and_deterministic(digits):
    y = digits.y_train.numpy()
    a = validation_ids(y, 0.1, seed=0)
    assert np.array_equal(a, validation_ids(y, 0.1, seed=0))           # same inputs, same slice
    assert not np.array_equal(a, validation_ids(y, 0.1, seed=1))       # the seed matters
    for c in np.unique(y):
        n_c = int((y == c).sum())
        assert int((y[a] == c).sum()) == round(0.1 * n_c)              # per class, not overall
    assert np.all(np.diff(a) > 0) and validation_ids(y, 0.0).size == 0
    tiny = np.array([0, 0, 1, 1, 1, 2])                                  # class 2 has one example: none held out
    t = validation_ids(tiny, 0.01)
    assert sorted(tiny[t].tolist()) == [0, 1]
    with pytest.raises(ConfigError, match="--val-fraction"):
        validation_ids(y, 1.0)


def test_write_validation_refuses_another_slice(tmp_path, digits):
    y = digits.y_train.numpy()
    ids = validation_ids(y, 0.1)
    write_validation(tmp_path, ids, y, {"run": "x"})
    assert np.array_equal(read_validation(tmp_path), ids)
    write_validation(tmp_path, ids, y, {"run": "x"})                     # same slice: fine
    with pytest.raises(ConfigError, match="another validation slice"):
        write_validation(tmp_path, validation_ids(y, 0.2), y, {"run": "x"})


def test_training_never_sees_the_slice_and_resume_keeps_it(tmp_path, digits, monkeypatch):
    cfg = TrainConfig(method="pgd", dataset="digits", epochs=3, val_fraction=0.1, progress=False, device="cpu")
    ocfg = ObjectiveConfig(steps=2, eval_steps=2)
    ref = train(cfg, tmp_path / "ref", ocfg, dataset=digits)
    val = read_validation(ref)
    assert np.array_equal(val, validation_ids(digits.y_train.numpy(), 0.1, 0))
    m = pd.read_parquet(ref / "metrics.parquet")
    assert (m["train/val/n"] == val.size).all() and (m["train/all/n"] == digits.x_train.shape[0] - val.size).all()
    for kind in ("adv", "clean"):                                        # val-selected checkpoints exist
        ck = T.load_checkpoint(ref / f"best_val_{kind}.pt")
        assert ck["epoch"] == int(m.loc[m[f"train/val/{kind}"].idxmax(), "epoch"])
    assert {"best_val_adv", "best_val_clean"} <= set(pd.read_parquet(ref / "final.parquet")["checkpoint"])

    seen: list[np.ndarray] = []
    real = T.train_one_epoch

    class Killed(Exception):
        pass

    def spy(*a, **kw):
        ids = kw.get("ids")
        seen.append(ids.numpy())
        if a[6] == 2 and len(seen) == 2:                                 # epoch 2 of the first attempt
            raise Killed()
        return real(*a, **kw)

    monkeypatch.setattr(T, "train_one_epoch", spy)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "resumed", ocfg, dataset=digits)
    run = train(cfg, tmp_path / "resumed", ocfg, dataset=digits)         # resumes at epoch 2
    assert all(np.intersect1d(ids, val).size == 0 and ids.size + val.size == digits.x_train.shape[0] for ids in seen)
    assert np.array_equal(read_validation(run), val)
    pd.testing.assert_frame_equal(pd.read_parquet(run / "metrics.parquet").drop(columns=["time_s", "eval_time_s"]),
                                  m.drop(columns=["time_s", "eval_time_s"]))
    # a resume whose slice differs is refused (here: the recorded file was changed behind its back)
    write_table(run / "validation.parquet", pd.DataFrame({"idx": val[1:], "label": np.zeros(val.size - 1, int)}), {})
    (run / "final.parquet").unlink()
    with pytest.raises(ConfigError, match="another validation slice"):
        train(cfg, tmp_path / "resumed", ocfg, dataset=digits)


# --------------------------------------------------------------------------- rules and tables

def test_each_method_gets_its_papers_rule():
    mc = selection.method_checkpoints
    assert mc("pgd", False) == ["best_adv", "best_clean", "last"]
    assert mc("gairat", False) == ["best_adv", "last"]
    for m in ("erm", "trades", "mart", "bat"):
        assert mc(m, False) == ["last"]
    assert mc("gairat", True) == ["best_adv", "best_val_adv", "last"]
    assert mc("pgd", True) == ["best_adv", "best_val_adv", "best_clean", "best_val_clean", "last"]
    assert mc("bat", False, "best_adv") == ["best_adv", "last"]
    assert mc("pgd", False, "last") == ["best_adv", "best_clean", "last"]   # PGD-AT keeps the paper's rows
    for m in METHOD_REGISTRY.values():
        assert m.checkpoint_source and "last" in m.checkpoints


def _run(train_dir: Path, name: str, method: str, rng: np.random.Generator, val: bool, epochs: int = 6) -> Path:
    d = train_dir / name
    d.mkdir(parents=True)
    obj = {"alpha": 1.0, "beta": 0.2, "tau": 1.0, "normalize_features": False, "eps": 0.25,  # BAT: paper's raw form
           "eval_steps": 20, "eval_step_size": 0.0625, "cw_steps": 30, "cw_step_size": 0.0625, "gairat_burn_in": 0.5}
    conf = {"train": {"method": method, "seed": 0, "dataset": "digits", "epochs": epochs,
                      "val_fraction": 0.1 if val else 0.0}, "objective": obj}
    (d / "config.json").write_text(json.dumps(conf))
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e}
        for key in ("train/all", "test/all", "test/typical", "test/atypical") + (("train/val",) if val else ()):
            row[f"{key}/clean"], row[f"{key}/adv"], row[f"{key}/n"] = rng.uniform(0.5, 1), rng.uniform(0, 0.5), 50.0
        rows.append(row)
    write_table(d / "metrics.parquet", pd.DataFrame(rows), {"run": name})
    cks = selection.method_checkpoints(method, val)
    final = [{"checkpoint": ck, "epoch": 1, "subset": "test/all", "attack": a, "acc": rng.uniform(), "n": 50}
             for ck in cks for a in ("clean", "fgsm", "pgd", "cw")]
    write_table(d / "final.parquet", pd.DataFrame(final), {"run": name})
    return d


@pytest.fixture()
def runs_dir(tmp_path):
    rng = np.random.default_rng(3)
    t = tmp_path / "r" / "train"
    _run(t, "pgd-val0.1-seed0", "pgd", rng, val=True)
    _run(t, "gairat-seed0", "gairat", rng, val=False)
    _run(t, "gairat-val0.1-seed0", "gairat", rng, val=True)
    _run(t, "mart-seed0", "mart", rng, val=False)
    _run(t, "bat-alpha1-beta0.2-seed0", "bat", rng, val=False)
    return t


def test_tables_follow_each_rule_and_select_on_the_slice(runs_dir):
    t2 = table2(find_runs(runs_dir)).set_index("method")
    m = pd.read_parquet(runs_dir / "gairat-val0.1-seed0" / "metrics.parquet")
    best_test = m.loc[m["test/all/adv"].idxmax()]
    best_val = m.loc[m["train/val/adv"].idxmax()]
    g = "GAIRAT [gairat-val0.1]"
    assert t2.loc[f"{g} (Best Adv.)", "All Adv."] == pytest.approx(100 * best_test["test/all/adv"])
    assert t2.loc[f"{g} (Best Adv., val.)", "All Adv."] == pytest.approx(100 * best_val["test/all/adv"])
    assert t2.loc[f"{g} (Best Adv., val.)", "epochs"] == str(int(best_val["epoch"]))
    assert t2.loc[f"{g} (Last)", "All Acc."] == pytest.approx(100 * m.iloc[-1]["test/all/clean"])
    assert "GAIRAT [gairat] (Best Adv., val.)" not in t2.index            # no slice, no val row
    assert [i for i in t2.index if i.startswith("MART")] == ["MART (Last)"]
    pgd = [i for i in t2.index if i.startswith("PGD-AT")]
    assert [i.split("(", 1)[1] for i in pgd] == ["Best Adv.)", "Best Adv., val.)", "Best Clean)",
                                                   "Best Clean, val.)", "Last)"]
    t4 = table4(find_runs(runs_dir)).set_index("method")
    f = pd.read_parquet(runs_dir / "gairat-val0.1-seed0" / "final.parquet")
    cw = f[(f["checkpoint"] == "best_val_adv") & (f["attack"] == "cw")]["acc"].iloc[0]
    assert t4.loc[f"{g} (Best Adv., val.)", "CW"] == pytest.approx(100 * cw)


def test_every_table_file_labels_every_row(runs_dir):
    assert main(["figures", "bat", str(runs_dir)]) == 0
    rep = runs_dir.parent / "report"
    for name in ("table2", "table4"):
        csv = pd.read_csv(rep / f"{name}.csv")
        assert csv["selection"].notna().all() and csv["checkpoint"].notna().all()
        assert set(csv["selection"]) <= set(selection.PROTOCOL.values())
        md = (rep / f"{name}.md").read_text()
        rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
        assert len(rows) == len(csv)
        for line, ck in zip(rows, csv["checkpoint"]):
            assert line.split(" | ")[1] == selection.ROW_SUFFIX[ck]
        assert "test-selected" in md and "val-selected" in md
        assert "GAIRAT.py" in md and "raw dot products, no temperature" in md
    assert "CW-inf = PGD-30" in (rep / "table4.md").read_text()
