"""Split definitions (paper Secs. 3.1-3.2) against a hand-built score table whose answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from memadv.cli.main import main
from memadv.files.atomic import OUTPUT_MARKER
from memadv.data.dataset import Dataset
from memadv.scores.schema import Scores, dataset_meta, write_scores
from memadv.splits.rules import SET_KEYS, SplitConfig, compute_splits
from memadv.splits.files import read_split_sets, read_splits, splits_file_of
from memadv.files.tables import write_table
from memadv.errors import ConfigError, FingerprintMismatchError, IncompleteRunError, SchemaError

TR_LABELS = [0, 0, 0, 0, 1, 1, 1, 1]
TE_LABELS = [0, 0, 0, 1, 1, 1]
MEM = [0.5, 0.16, 0.15, 0.01, 0.3, 0.02, -0.1, np.nan]
MEM_SE = [0.1, 0.001, 0.05, 0.001, 0.1, 0.001, 0.07, np.nan]
P_CORRECT = [0.9, 0.9, 0.5, 0.95, 0.8, np.nan]
# (train, test, infl, se)
PAIRS = [(0, 0, 0.2, 0.01),   # same class, atypical i: test 0 atypical, not typical
         (1, 1, 0.03, 0.01),  # same class, atypical i: test 1 not typical (0.03 > 0.02), not atypical
         (2, 1, 0.9, 0.01),   # train 2 is not atypical (0.15 is not > 0.15): ignored
         (4, 3, 0.01, 0.01),  # below both thresholds
         (4, 4, 0.02, 0.01),  # exactly 0.02 is not > 0.02
         (0, 3, 0.5, 0.01),   # cross class: counts only with any-class
         (4, 2, 0.16, 0.01)]  # cross class: counts only with any-class


def make_dataset(name: str = "toy", tr_labels=TR_LABELS, te_labels=TE_LABELS) -> Dataset:
    g = torch.Generator().manual_seed(0)
    ntr, nte = len(tr_labels), len(te_labels)
    return Dataset(name=name, x_train=torch.randint(0, 256, (ntr, 1, 4, 4), dtype=torch.uint8, generator=g),
                   y_train=torch.tensor(tr_labels, dtype=torch.int64),
                   x_test=torch.randint(0, 256, (nte, 1, 4, 4), dtype=torch.uint8, generator=g),
                   y_test=torch.tensor(te_labels, dtype=torch.int64), num_classes=2, mean=(0.5,), std=(0.25,))


def make_scores(ds: Dataset, **meta_over) -> Scores:
    n = len(MEM)
    mem = pd.DataFrame({"idx": np.arange(n, dtype=np.int64), "label": np.array(TR_LABELS, np.int64),
                        "mem": MEM, "mem_se": MEM_SE, "p_in": 0.45 + np.array(MEM), "p_out": 0.45, "n_in": 10,
                        "n_out": 10})
    tr = np.array([p[0] for p in PAIRS], np.int64)
    te = np.array([p[1] for p in PAIRS], np.int64)
    infl = pd.DataFrame({"train_idx": tr, "test_idx": te, "train_label": np.array(TR_LABELS)[tr],
                         "test_label": np.array(TE_LABELS)[te], "infl": [p[2] for p in PAIRS],
                         "infl_se": [p[3] for p in PAIRS]})
    ta = pd.DataFrame({"idx": np.arange(len(TE_LABELS), dtype=np.int64), "label": np.array(TE_LABELS, np.int64),
                       "p_correct": P_CORRECT, "n_models": 20})
    meta = {**dataset_meta(ds), "n_models": 20, "source": "memadv", "se_known": True, "complete": True,
            "infl_keep": "all", "infl_min_abs_same": 0.0, "infl_min_abs_cross": 0.0, **meta_over}
    return Scores(mem=mem, infl=infl, test_acc=ta, meta=meta)


def make_run(tmp_path, name="run", **meta_over):
    ds = make_dataset()
    run = tmp_path / name
    write_scores(run / "scores", make_scores(ds, **meta_over))
    return run, ds


def sets_of(cfg: SplitConfig, **meta_over) -> dict[str, list[int]]:
    res = compute_splits(make_scores(make_dataset(), **meta_over), cfg)
    return {k: v.tolist() for k, v in res.sets.items()}


def test_paper_definitions_same_class_default():
    assert SplitConfig().pairs == "same-class"
    s = sets_of(SplitConfig())
    assert s == {"train/atypical": [0, 1, 4], "train/typical": [3, 6],
                 "test/atypical": [0], "test/typical": [3, 4]}


def test_any_class_pairs():
    s = sets_of(SplitConfig(pairs="any-class"))
    assert s["test/atypical"] == [0, 2, 3]
    assert s["test/typical"] == [4]
    assert s["train/atypical"] == [0, 1, 4]
    # Pairs the folder does not store cannot answer a definition: refused, not silently incomplete.
    kept = make_scores(make_dataset(), infl_keep="same-class", infl_min_abs_cross=0.15)
    with pytest.raises(SchemaError, match="cannot answer --pairs any-class at infl > 0.02.*--keep threshold"):
        compute_splits(kept, SplitConfig(pairs="any-class"))
    assert compute_splits(kept, SplitConfig()).sets["test/atypical"].tolist() == [0]
    legacy = make_scores(make_dataset(), cross_class_threshold=0.15)   # written before the keep rule existed
    for key in ("infl_keep", "infl_min_abs_same", "infl_min_abs_cross"):
        del legacy.meta[key]
    with pytest.raises(SchemaError, match="cannot answer"):
        compute_splits(legacy, SplitConfig(pairs="any-class"))
    assert compute_splits(legacy, SplitConfig(pairs="any-class", infl_typical=0.15, infl_atypical=0.2)).sets
    thr = make_scores(make_dataset(), infl_keep="threshold", infl_min_abs_same=0.05, infl_min_abs_cross=0.05)
    with pytest.raises(SchemaError, match="cannot answer --pairs same-class at infl > 0.02"):
        compute_splits(thr, SplitConfig())


def test_accuracy_rule_and_switch_off():
    # test 2 (p=0.5) and test 5 (p unknown) are removed by the accuracy rule; 0.8 itself is not < 0.8
    assert sets_of(SplitConfig(min_test_acc=0.0))["test/typical"] == [2, 3, 4, 5]
    assert sets_of(SplitConfig(min_test_acc=0.96))["test/typical"] == []
    assert sets_of(SplitConfig(min_test_acc=0.81))["test/typical"] == [3]


def _wilson(p, n, z):
    # Wilson (1927) score interval, written out independently of memadv.splits.rules.
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return c - h, c + h


def test_significance_uses_newcombe_wilson_intervals():
    z = 2.0
    s = sets_of(SplitConfig(significance=z))
    p_in, p_out = 0.45 + np.array(MEM), 0.45
    l1, u1 = _wilson(p_in, 10, z)
    l2, u2 = _wilson(p_out, 10, z)
    lo = p_in - p_out - np.sqrt((p_in - l1) ** 2 + (u2 - p_out) ** 2)
    hi = p_in - p_out + np.sqrt((u1 - p_in) ** 2 + (p_out - l2) ** 2)
    assert s["train/atypical"] == np.flatnonzero(lo > 0.15).tolist()
    assert s["train/typical"] == np.flatnonzero(hi < 0.02).tolist()
    assert s["train/atypical"] != sets_of(SplitConfig())["train/atypical"]  # the interval matters here


def test_significance_does_not_collapse_when_all_models_agree():
    """17 models that all get every example right: the plug-in SE is 0, but 17 models cannot show
    mem < 0.02 or infl > 0.15 with any confidence (issue 10 item 10)."""
    ds = make_dataset()
    sc = make_scores(ds)
    n_in, n_out = 12, 5
    sc.mem = sc.mem.assign(mem=0.0, mem_se=0.0, p_in=1.0, p_out=1.0, n_in=n_in, n_out=n_out)
    sc.mem.loc[0, ["mem", "p_out"]] = [1.0, 0.0]   # the one atypical example: in -> right, out -> wrong
    sc.infl = sc.infl.assign(infl=np.where(sc.infl["train_idx"] == 0, 0.2, sc.infl["infl"]), infl_se=0.0)
    sc.test_acc = sc.test_acc.assign(p_correct=1.0, n_models=n_in + n_out)
    plain = compute_splits(sc, SplitConfig())
    assert plain.sets["train/typical"].size == 7 and plain.sets["test/atypical"].tolist() == [0]
    sig = compute_splits(sc, SplitConfig(significance=2.0))
    assert sig.sets["train/typical"].size == 0          # x + 2*SE < 0.02 would have kept all 7
    assert sig.sets["train/atypical"].tolist() == [0]   # mem = 1 on 12 vs 5 models is significant
    assert sig.sets["test/atypical"].size == 0          # p_out = 0.8 from 5 models: lower bound < 0.15


def test_significance_needs_standard_errors():
    with pytest.raises(ConfigError, match="standard errors"):
        sets_of(SplitConfig(significance=2.0), se_known=False, source="feldman-zhang")


def test_rule_counts_and_noise_report():
    res = compute_splits(make_scores(make_dataset()), SplitConfig())
    typ_rules = [r for r in res.rules if r["set"] == "test/typical"]
    assert [r["removed"] for r in typ_rules] == [2, 2, 0]  # infl removes 0,1; accuracy removes 2,5; none both
    assert typ_rules[-1]["kept"] == 2
    assert res.per_class.loc["train/atypical"].tolist() == [2, 1]
    assert res.per_class.loc["test/typical"].tolist() == [0, 2]
    infl_typ = [r for r in res.noise if r["rule"].startswith("infl > typical")][0]
    assert infl_typ["se"] == pytest.approx(0.01) and infl_typ["ratio"] == pytest.approx(2.0)
    mem_typ = [r for r in res.noise if r["rule"] == "mem < typical"][0]
    assert mem_typ["note"] == "within 2 SE of zero"  # median mem SE 0.05 vs threshold 0.02
    assert any("within 2 standard errors" in w for w in res.warnings)
    assert any("unknown for 1 of 6" in w for w in res.warnings)
    unknown = compute_splits(make_scores(make_dataset(), se_known=False), SplitConfig())
    assert all(r["se"] is None for r in unknown.noise)
    assert any("no standard errors" in w for w in unknown.warnings)


def test_scores_without_influences_warn():
    sc = make_scores(make_dataset())
    sc.infl = sc.infl.iloc[:0]
    res = compute_splits(sc, SplitConfig())
    assert res.sets["test/atypical"].size == 0 and res.sets["test/typical"].tolist() == [0, 1, 3, 4]
    assert any("no influence estimates" in w for w in res.warnings)


def test_config_validation():
    with pytest.raises(ConfigError, match="--mem-atypical"):
        SplitConfig(mem_atypical=1.5)
    with pytest.raises(ConfigError, match="--min-test-acc"):
        SplitConfig(min_test_acc=-0.1)
    with pytest.raises(ConfigError, match="below"):
        SplitConfig(mem_typical=0.15)
    with pytest.raises(ConfigError, match="below"):
        SplitConfig(infl_typical=0.2, infl_atypical=0.1)
    with pytest.raises(ConfigError, match="--significance"):
        SplitConfig(significance=0.0)


def test_partial_scores_refused_in_library():
    with pytest.raises(IncompleteRunError):
        compute_splits(make_scores(make_dataset(), complete=False), SplitConfig())
    res = compute_splits(make_scores(make_dataset(), complete=False), SplitConfig(allow_partial=True))
    assert any("unfinished" in w for w in res.warnings)


def test_cli_writes_files_and_round_trips(tmp_path, capsys):
    run, ds = make_run(tmp_path)
    assert main(["splits", str(run)]) == 0
    out = capsys.readouterr()
    assert "train/atypical" in out.out and "noise floor" in out.out
    d = run / "splits"
    names = sorted(p.name for p in d.iterdir() if p.name != OUTPUT_MARKER)
    assert names == ["labels.parquet", "splits.parquet", "summary.md", "test_atypical.csv", "test_typical.csv",
                     "train_atypical.csv", "train_typical.csv"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    expected = {"train/atypical": [0, 1, 4], "train/typical": [3, 6], "test/atypical": [0], "test/typical": [3, 4]}
    for where in (run, d, d / "splits.parquet"):
        sets = read_split_sets(where, ds)
        assert {k: v.tolist() for k, v in sets.items()} == expected
        assert all(v.dtype == np.int64 for v in sets.values())
    df, meta = read_splits(run)
    assert list(df.columns) == ["split", "idx", "label", "set"]
    assert df["idx"].dtype == np.int64 and df["label"].dtype == np.int64
    for _, row in df.iterrows():
        labels = ds.y_train if row["split"] == "train" else ds.y_test
        assert int(labels[row["idx"]]) == row["label"]
    assert meta["fingerprint_train"] == ds.fingerprint("train")
    assert meta["fingerprint_test"] == ds.fingerprint("test")
    assert meta["dataset"] == "toy" and meta["thresholds"]["mem_atypical"] == 0.15
    assert meta["thresholds"]["pairs"] == "same-class"
    csv = pd.read_csv(d / "train_atypical.csv")
    assert csv["idx"].tolist() == [0, 1, 4] and csv["label"].tolist() == [0, 0, 1]
    summary = (d / "summary.md").read_text()
    assert "Noise floor" in summary and "| train/atypical | 3 |" in summary
    # re-running with other options replaces the folder
    assert main(["splits", str(run), "--pairs", "any-class", "--significance", "1"]) == 0
    assert read_splits(run)[1]["thresholds"]["pairs"] == "any-class"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_split_file_refused_for_other_dataset(tmp_path):
    run, ds = make_run(tmp_path)
    assert main(["splits", str(run)]) == 0
    other_labels = make_dataset(tr_labels=[1, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(FingerprintMismatchError):
        read_split_sets(run, other_labels)
    with pytest.raises(FingerprintMismatchError, match="toy"):
        read_split_sets(run, make_dataset(name="other"))
    # a split file without fingerprints naming ids the dataset lacks
    df, meta = read_splits(run)
    meta = {k: v for k, v in meta.items() if not k.startswith("fingerprint")}
    df.loc[len(df)] = ["test", 99, 0, "typical"]
    write_table(tmp_path / "bad.parquet", df, meta)
    with pytest.raises(SchemaError, match="99"):
        read_split_sets(tmp_path / "bad.parquet", ds)
    with pytest.raises(SchemaError, match="memadv splits"):
        splits_file_of(tmp_path / "nowhere")


def _no_output(run):
    return not (run / "splits").exists() and not [p for p in run.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("argv, match", [
    (["--mem-atypical", "1.5"], "--mem-atypical must be in"),
    (["--infl-typical", "-0.1"], "--infl-typical must be in"),
    (["--mem-typical", "0.2"], "--mem-typical (0.2) must be below"),
    (["--infl-typical", "0.15"], "--infl-typical (0.15) must be below"),
    (["--significance", "-1"], "--significance must be in"),
])
def test_cli_bad_thresholds(tmp_path, capsys, argv, match):
    run, _ = make_run(tmp_path)
    assert main(["splits", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memadv: error:") and match in err[0]
    assert _no_output(run)


def test_cli_partial_scores(tmp_path, capsys):
    run, _ = make_run(tmp_path, complete=False)
    assert main(["splits", str(run)]) == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert _no_output(run)
    assert main(["splits", str(run), "--allow-partial"]) == 0
    assert read_splits(run)[1]["source_scores"]["complete"] is False


def test_cli_run_without_scores(tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    assert main(["splits", str(run)]) == 2
    assert "no scores" in capsys.readouterr().err
    assert _no_output(run)
    assert main(["splits", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()


def test_cli_toml_config(tmp_path):
    run, ds = make_run(tmp_path)
    cfg = tmp_path / "s.toml"
    cfg.write_text('[splits]\npairs = "any-class"\nmin_test_acc = 0.0\n')
    assert main(["splits", str(run), "--config", str(cfg), "--min-test-acc", "0.5"]) == 0
    th = read_splits(run)[1]["thresholds"]
    assert th["pairs"] == "any-class" and th["min_test_acc"] == 0.5


def test_help_mentions_paper_default(capsys):
    with pytest.raises(SystemExit):
        main(["splits", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "same-class is the paper's definition of a high- influence pair (Sec. 2.1) and the default" in text \
        or "same-class is the paper's definition" in text
    assert "--allow-partial" in text and "--significance" in text


def test_set_keys_order():
    assert SET_KEYS == ("train/atypical", "train/typical", "test/atypical", "test/typical")
    assert [f.name for f in dataclasses.fields(SplitConfig)][:5] == [
        "mem_atypical", "mem_typical", "infl_atypical", "infl_typical", "min_test_acc"]
