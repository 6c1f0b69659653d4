"""Import/export of the released Feldman & Zhang layouts: small files with exactly the released keys,
plus the real high-influence-pair files in ../shared/reference-data/feldman-zhang/ when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import memadv.cli.import_fz as cli_import
from memadv.cli.main import main
from memadv.data.dataset import Dataset, fingerprint_labels
import memadv.interop.fz as fz
from memadv.interop.fz import import_fz, read_fz
from memadv.interop.fz_export import EXPORT_MARKER, export_fz, scores_to_fz
from memadv.scores.schema import Scores, read_scores, write_scores
from memadv.splits.rules import SplitConfig, compute_splits
from memadv.files.tables import read_table
from memadv.errors import FingerprintMismatchError, SchemaError

# the project's shared/ folder sits beside the clone (../shared)
REF = Path(__file__).resolve().parents[3] / "shared" / "reference-data" / "feldman-zhang"
REF_DIR = REF if (REF / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz").is_file() else None

TR_LABELS = np.array([0, 1, 0, 1, 2, 2], np.int64)
TT_LABELS = np.array([1, 0, 2, 0], np.int64)


def matrix_arrays() -> dict[str, np.ndarray]:
    """A 3-class file in the cifar100_infl_matrix.npz layout; class-0 ids deliberately not sorted."""
    return {"tr_mem": np.array([0.9, 0.0, 0.5, 1.0, 0.16, -0.01]), "tr_labels": TR_LABELS, "tt_labels": TT_LABELS,
            "infl_matrix_class0": np.array([[0.3, 0.01], [0.02, 0.6]]), "tr_classidx_0": np.array([2, 0]),
            "tt_classidx_0": np.array([1, 3]),
            "infl_matrix_class1": np.array([[0.05], [0.7]]), "tr_classidx_1": np.array([1, 3]),
            "tt_classidx_1": np.array([0]),
            "infl_matrix_class2": np.array([[0.2], [0.0]]), "tr_classidx_2": np.array([4, 5]),
            "tt_classidx_2": np.array([2])}


def save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def toy_dataset(name: str = "cifar100", tr=TR_LABELS, tt=TT_LABELS) -> Dataset:
    return Dataset(name=name, x_train=torch.zeros((len(tr), 3, 2, 2), dtype=torch.uint8),
                   y_train=torch.as_tensor(tr, dtype=torch.int64), x_test=torch.zeros((len(tt), 3, 2, 2), dtype=torch.uint8),
                   y_test=torch.as_tensor(tt, dtype=torch.int64), num_classes=3, mean=(0.5,) * 3, std=(0.2,) * 3)


@pytest.fixture
def toy_release(monkeypatch):
    """The toy files below stand for released whole-set files: give their data sets the toy sizes
    (a file of another size than its --dataset is refused as a wrong --dataset)."""
    for name, sizes in (("cifar100", (6, 4)), ("cifar10", (6, 4)), ("imagenet", (3, 2))):
        monkeypatch.setitem(fz.KNOWN_SIZES, name, sizes)


def pair_dict(infl: pd.DataFrame) -> dict[tuple[int, int], float]:
    return {(int(a), int(b)): float(v) for a, b, v in zip(infl["train_idx"], infl["test_idx"], infl["infl"])}


def test_import_matrix(tmp_path, toy_release):
    f = save(tmp_path / "cifar100_infl_matrix.npz", matrix_arrays())
    target = import_fz(f, tmp_path / "run", "cifar100")
    s = read_scores(target)
    assert s.meta["source"] == "feldman-zhang" and s.meta["se_known"] is False and s.meta["complete"] is True
    assert s.meta["fingerprint_train"] == fingerprint_labels("cifar100", "train", TR_LABELS)
    assert s.meta["fingerprint_test"] == fingerprint_labels("cifar100", "test", TT_LABELS)
    assert s.mem["idx"].tolist() == list(range(6)) and s.mem["label"].tolist() == TR_LABELS.tolist()
    assert s.mem["mem"].tolist() == [0.9, 0.0, 0.5, 1.0, 0.16, -0.01]
    assert s.mem["mem_se"].isna().all() and s.infl["infl_se"].isna().all() and s.test_acc["p_correct"].isna().all()
    pairs = pair_dict(s.infl)
    assert len(pairs) == 4 + 2 + 2
    assert pairs[(2, 1)] == 0.3 and pairs[(2, 3)] == 0.01 and pairs[(0, 1)] == 0.02 and pairs[(0, 3)] == 0.6
    assert pairs[(3, 0)] == 0.7 and pairs[(4, 2)] == 0.2
    assert (s.infl["train_label"] == s.infl["test_label"]).all()
    assert s.test_acc["label"].tolist() == TT_LABELS.tolist()


def test_import_export_import_round_trip(tmp_path, toy_release):
    f = save(tmp_path / "in.npz", matrix_arrays())
    a, _ = read_fz(f, "cifar100")
    out = tmp_path / "exported.npz"
    assert export_fz(a, out) == 0
    with np.load(out) as z:
        keys = set(z.files)
    assert keys == set(matrix_arrays()) | {EXPORT_MARKER}  # the released layout plus the marker that lets an export be replaced
    b, _ = read_fz(out, "cifar100")
    pd.testing.assert_frame_equal(a.mem, b.mem)
    pd.testing.assert_frame_equal(a.test_acc, b.test_acc)
    key = ["train_idx", "test_idx"]
    pd.testing.assert_frame_equal(a.infl.sort_values(key).reset_index(drop=True),
                                  b.infl.sort_values(key).reset_index(drop=True))
    assert {k: a.meta[k] for k in ("fingerprint_train", "fingerprint_test")} == \
        {k: b.meta[k] for k in ("fingerprint_train", "fingerprint_test")}


def test_cli_export_of_memadv_scores(tmp_path, toy_release, capsys):
    ds = toy_dataset("toy")
    mem = pd.DataFrame({"idx": np.arange(6), "label": TR_LABELS, "mem": np.linspace(0, 1, 6), "mem_se": 0.01,
                        "p_in": 1.0, "p_out": 0.5, "n_in": 7, "n_out": 3})
    # class 0 has pairs (0|2) x (1|3); leave out (2, 3) and add a cross-class pair (1, 1)
    infl = pd.DataFrame({"train_idx": [0, 0, 2, 1, 3, 4, 5, 1], "test_idx": [1, 3, 1, 0, 0, 2, 2, 1],
                         "infl": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9], "infl_se": 0.01})
    infl["train_label"] = TR_LABELS[infl["train_idx"]]
    infl["test_label"] = TT_LABELS[infl["test_idx"]]
    ta = pd.DataFrame({"idx": np.arange(4), "label": TT_LABELS, "p_correct": 0.9, "n_models": 10})
    meta = {"dataset": "toy", "fingerprint_train": ds.fingerprint("train"), "fingerprint_test": ds.fingerprint("test"),
            "n_models": 10, "source": "memadv", "se_known": True, "complete": True, "num_classes": 3}
    write_scores(tmp_path / "run" / "scores", Scores(mem=mem, infl=infl, test_acc=ta, meta=meta))
    out = tmp_path / "toy_infl_matrix.npz"
    assert main(["export-fz", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert "1 same-class pairs are missing" in capsys.readouterr().err
    with np.load(out) as z:
        assert z["tr_classidx_0"].tolist() == [0, 2] and z["tt_classidx_0"].tolist() == [1, 3]
        m = z["infl_matrix_class0"]
        assert m[0].tolist() == [0.1, 0.2] and m[1, 0] == 0.3 and np.isnan(m[1, 1])
        assert z["tr_mem"].tolist() == np.linspace(0, 1, 6).tolist()
    back, _ = read_fz(out, "cifar10")
    assert pair_dict(back.infl)[(3, 0)] == 0.5 and (1, 1) not in pair_dict(back.infl)
    # partial scores are refused unless asked
    meta["complete"] = False
    write_scores(tmp_path / "part" / "scores", Scores(mem=mem, infl=infl, test_acc=ta, meta=meta))
    assert main(["export-fz", str(tmp_path / "part"), "--out", str(tmp_path / "p.npz")]) == 2
    assert not (tmp_path / "p.npz").exists()
    assert main(["export-fz", str(tmp_path / "part"), "--out", str(tmp_path / "p.npz"), "--allow-partial"]) == 0


def test_import_pairs_small_and_splits_refused(tmp_path):
    arrays = {"tr_idx": np.array([5, 7, 5]), "tt_idx": np.array([1, 2, 3]), "infl": np.array([0.2, 0.3, 0.16]),
              "mem": np.array([0.4, 0.9, 0.4])}
    f = save(tmp_path / "cifar100_high_infl_pairs_infl0.15_mem0.25.npz", arrays)
    s, _ = read_fz(f, "cifar100")
    assert s.mem["idx"].tolist() == [5, 7] and s.mem["mem"].tolist() == [0.4, 0.9]
    assert s.meta["coverage"] == "high-influence-pairs"
    assert s.meta["fz_min_infl"] == 0.15 and s.meta["fz_min_mem"] == 0.25
    assert "fingerprint_train" not in s.meta and (s.mem["label"] == -1).all()
    assert len(s.infl) == 3
    with pytest.raises(SchemaError, match="high-influence-pairs"):
        compute_splits(s, SplitConfig())
    bad = dict(arrays, mem=np.array([0.4, 0.9, 0.5]))
    with pytest.raises(SchemaError, match="different mem"):
        read_fz(save(tmp_path / "b.npz", bad), "cifar100")
    with pytest.raises(SchemaError, match="outside"):
        read_fz(save(tmp_path / "c.npz", dict(arrays, tt_idx=np.array([1, 2, 10000]))), "cifar100")


def test_import_pairs_with_dataset_gets_labels(tmp_path):
    ds = toy_dataset()
    arrays = {"tr_idx": np.array([0, 3]), "tt_idx": np.array([1, 0]), "infl": np.array([0.2, 0.3]),
              "mem": np.array([0.4, 0.9])}
    s, _ = read_fz(save(tmp_path / "p.npz", arrays), "cifar100", ds)
    assert s.mem["label"].tolist() == [0, 1] and s.infl["test_label"].tolist() == [0, 1]
    assert s.meta["fingerprint_train"] == ds.fingerprint("train")
    with pytest.raises(SchemaError, match="outside"):
        read_fz(save(tmp_path / "q.npz", dict(arrays, tr_idx=np.array([0, 6]))), "cifar100", ds)


def test_import_imagenet_index(tmp_path, toy_release):
    arrays = {"tr_filenames": np.array(["n01/a.JPEG", "n02/b.JPEG", "n01/c.JPEG"]), "tr_labels": np.array([0, 1, 0]),
              "tt_filenames": np.array([b"val_1.JPEG", b"val_2.JPEG"]), "tt_labels": np.array([1, 0]),
              "tr_mem": np.array([0.1, 0.7, 0.0])}
    target = import_fz(save(tmp_path / "imagenet_index.npz", arrays), tmp_path / "run", "imagenet")
    s = read_scores(target)
    assert s.mem["mem"].tolist() == [0.1, 0.7, 0.0] and len(s.infl) == 0
    files, _ = read_table(target / "filenames.parquet")
    assert files["filename"].tolist() == ["n01/a.JPEG", "n02/b.JPEG", "n01/c.JPEG", "val_1.JPEG", "val_2.JPEG"]
    assert s.meta["fingerprint_train"] == fingerprint_labels("imagenet", "train", [0, 1, 0])


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.pop("tt_classidx_1"), "lacks keys \\['tt_classidx_1'\\]"),
    (lambda a: a.pop("tr_mem"), "lacks keys \\['tr_mem'\\]"),
    (lambda a: a.__setitem__("infl_matrix_class2", np.zeros((2, 2))), "shape"),
    (lambda a: a.__setitem__("tr_mem", np.zeros(5)), "tr_mem has 5 entries"),
    (lambda a: a.__setitem__("tr_classidx_0", np.array([2, 1])), "label is not 0"),
    (lambda a: a.__setitem__("tr_labels", np.zeros(6)), "integers"),
    (lambda a: a.__setitem__("infl_matrix_class3", np.zeros((0, 0))), "class 3"),
    (lambda a: a.__setitem__("infl_matrix_class0", np.full((2, 2), 3.0)), "\\[-1, 1\\]"),
])
def test_cli_refuses_bad_matrix(tmp_path, capsys, mutate, match):
    arrays = matrix_arrays()
    mutate(arrays)
    f = save(tmp_path / "bad.npz", arrays)
    out = tmp_path / "run"
    assert main(["import-fz", str(f), "--dataset", "cifar100", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memadv: error:")
    assert pd.Series(err).str.contains(match).any(), err
    assert not out.exists()


def test_cli_refuses_labels_disagreeing_with_data_root(tmp_path, toy_release, capsys, monkeypatch):
    f = save(tmp_path / "m.npz", matrix_arrays())
    wrong = toy_dataset(tr=np.array([0, 1, 0, 1, 2, 1]))
    with pytest.raises(FingerprintMismatchError, match="first: id 5, file 2, dataset 1"):
        read_fz(f, "cifar100", wrong)
    with pytest.raises(FingerprintMismatchError, match="4 test labels"):
        read_fz(f, "cifar100", toy_dataset(tt=np.array([1, 0, 2, 0, 1])))
    monkeypatch.setattr(cli_import, "load_dataset", lambda name, data_root=None: wrong)
    out = tmp_path / "run"
    assert main(["import-fz", str(f), "--dataset", "cifar100", "--data-root", str(tmp_path), "--out", str(out)]) == 2
    assert "disagree" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(cli_import, "load_dataset", lambda name, data_root=None: toy_dataset())
    assert main(["import-fz", str(f), "--dataset", "cifar100", "--data-root", str(tmp_path), "--out", str(out)]) == 0
    assert read_scores(out, toy_dataset()).meta["source"] == "feldman-zhang"
    # importing again over existing scores needs --overwrite
    assert main(["import-fz", str(f), "--dataset", "cifar100", "--out", str(out)]) == 2
    assert main(["import-fz", str(f), "--dataset", "cifar100", "--out", str(out), "--overwrite"]) == 0


def test_imported_scores_are_labelled_by_their_estimates(tmp_path, toy_release, capsys):
    """Imported files carry estimates without counts: labels.parquet reads the estimate itself (the
    paper's reading), and no share decided or models projected is claimed."""
    target = import_fz(save(tmp_path / "cifar100_infl_matrix.npz", matrix_arrays()), tmp_path / "run", "cifar100")
    res = compute_splits(read_scores(target), SplitConfig(min_test_acc=0.0))
    train = res.labels[res.labels["rule"] == "train-mem"].sort_values("idx")
    assert train["estimate"].tolist() == [0.9, 0.0, 0.5, 1.0, 0.16, -0.01]
    assert train["decision"].tolist() == ["atypical", "typical", "atypical", "atypical", "atypical", "typical"]
    test = res.labels[res.labels["rule"] == "test-atypical"].sort_values("idx")
    assert test["decision"].tolist() == ["atypical", "atypical", "atypical", "atypical"]  # infl 0.7, 0.3, 0.2, 0.6
    assert res.decided == []
    assert main(["status", str(tmp_path / "run")]) == 0  # an imported run: its scores, nothing to decide
    out = capsys.readouterr().out
    assert "written, without an estimate (source feldman-zhang)" in out and "carry no counts" in out


def test_a_whole_set_file_of_another_size_is_a_wrong_dataset(tmp_path, capsys):
    f = save(tmp_path / "cifar100_infl_matrix.npz", matrix_arrays())  # 6 training, 4 test examples
    with pytest.raises(SchemaError, match="6 training and 4 test examples, but cifar100 has 50,000 and 10,000"):
        read_fz(f, "cifar100")
    assert main(["import-fz", str(f), "--dataset", "digits", "--out", str(tmp_path / "run")]) == 2
    assert "is --dataset right?" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_refuses_non_npz_and_unknown_layout(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(SchemaError, match="not a readable .npz file: not a zip archive of .npy files$"):
        read_fz(junk, "cifar100")  # not numpy's advice to unpickle it
    with pytest.raises(SchemaError, match="no released"):
        read_fz(save(tmp_path / "x.npz", {"foo": np.zeros(3)}), "cifar100")
    with pytest.raises(SchemaError, match="does not exist"):
        read_fz(tmp_path / "missing.npz", "cifar100")


def test_export_needs_whole_sets():
    mem = pd.DataFrame({"idx": [0, 2], "label": [0, 0], "mem": [0.1, 0.2]})
    ta = pd.DataFrame({"idx": [0], "label": [0], "p_correct": [1.0], "n_models": [1]})
    with pytest.raises(SchemaError, match="whole training set"):
        scores_to_fz(Scores(mem=mem, infl=pd.DataFrame(), test_acc=ta))
    with pytest.raises(SchemaError, match="whole test set"):
        scores_to_fz(Scores(mem=mem.iloc[:1], infl=pd.DataFrame(), test_acc=ta.iloc[:0]))


@pytest.mark.skipif(REF_DIR is None, reason="reference data ../shared/reference-data/feldman-zhang not present")
@pytest.mark.parametrize("name, dataset, rows, n_train_ids", [
    ("cifar100_high_infl_pairs_infl0.15_mem0.25.npz", "cifar100", 1015, 964),
    ("imagenet_high_infl_pairs_infl0.15_mem0.25.npz", "imagenet", 1641, None),
])
def test_real_released_pairs_files(tmp_path, name, dataset, rows, n_train_ids):
    out = tmp_path / "run"
    assert main(["import-fz", str(REF_DIR / name), "--dataset", dataset, "--out", str(out)]) == 0
    s = read_scores(out)
    with np.load(REF_DIR / name) as z:
        tr, tt, infl, mem = z["tr_idx"], z["tt_idx"], z["infl"], z["mem"]
    assert len(s.infl) == rows
    assert s.infl["train_idx"].tolist() == tr.tolist() and s.infl["test_idx"].tolist() == tt.tolist()
    assert np.array_equal(s.infl["infl"].to_numpy(), infl)
    if n_train_ids is not None:
        assert len(s.mem) == n_train_ids
    lookup = dict(zip(s.mem["idx"], s.mem["mem"]))
    assert np.array_equal(np.array([lookup[i] for i in tr]), mem)
    assert s.meta["source"] == "feldman-zhang" and s.meta["se_known"] is False
    assert (s.infl["infl"] >= 0.15).all() and (s.mem["mem"] >= 0.25).all()
