"""``memadv figures scores``: histogram, example grid and pair grid as valid PNG + PDF files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread

import memadv.analysis.score_figures as sf
from memadv.cli.main import main
from memadv.data.dataset import Dataset
from memadv.scores.schema import Scores, dataset_meta, write_scores

N_TR, N_TE = 40, 12


def toy(channels: int = 3, name: str = "toy") -> Dataset:
    g = torch.Generator().manual_seed(1)
    ytr = torch.arange(N_TR, dtype=torch.int64) % 2
    yte = torch.arange(N_TE, dtype=torch.int64) % 2
    return Dataset(name=name, x_train=torch.randint(0, 256, (N_TR, channels, 8, 8), dtype=torch.uint8, generator=g),
                   y_train=ytr, x_test=torch.randint(0, 256, (N_TE, channels, 8, 8), dtype=torch.uint8, generator=g),
                   y_test=yte, num_classes=2, mean=(0.5,) * channels, std=(0.2,) * channels, class_names=["cat", "dog"])


def make_run(tmp_path, ds: Dataset):
    rng = np.random.default_rng(0)
    ytr, yte = ds.y_train.numpy(), ds.y_test.numpy()
    mem = pd.DataFrame({"idx": np.arange(N_TR), "label": ytr, "mem": np.linspace(-0.05, 1.0, N_TR), "mem_se": 0.02,
                        "p_in": 0.9, "p_out": 0.4, "n_in": 7, "n_out": 3})
    tr, te = np.meshgrid(np.arange(N_TR), np.arange(N_TE), indexing="ij")
    tr, te = tr.ravel(), te.ravel()
    keep = ytr[tr] == yte[te]
    infl = pd.DataFrame({"train_idx": tr[keep], "test_idx": te[keep], "train_label": ytr[tr[keep]],
                         "test_label": yte[te[keep]], "infl": rng.uniform(-0.1, 0.6, keep.sum()), "infl_se": 0.02})
    ta = pd.DataFrame({"idx": np.arange(N_TE), "label": yte, "p_correct": 0.9, "n_models": 10})
    meta = {**dataset_meta(ds), "n_models": 10, "source": "memadv", "se_known": True, "complete": True}
    run = tmp_path / "toyrun"
    write_scores(run / "scores", Scores(mem=mem, infl=infl, test_acc=ta, meta=meta))
    return run


def valid_png(path) -> bool:
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
    img = imread(path)
    return img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


@pytest.mark.parametrize("channels", [3, 1])
def test_cli_makes_all_figures(tmp_path, monkeypatch, capsys, channels):
    ds = toy(channels)
    run = make_run(tmp_path, ds)
    monkeypatch.setattr(sf, "load_dataset", lambda name, data_root=None, **options: ds)
    assert main(["figures", "scores", str(run), "--per-level", "4", "--n-pairs", "6"]) == 0
    out = run / "report" / "scores"
    grids = sorted(p.stem for p in out.glob("mem_examples_class*.png"))
    assert len(grids) == 1
    stems = ["mem_histogram", grids[0], "high_infl_pairs"]
    printed = capsys.readouterr().out.split()
    for stem in stems:
        assert valid_png(out / f"{stem}.png")
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert str(out / f"{stem}.png") in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_titles_name_the_run_and_class_option(tmp_path, monkeypatch):
    ds = toy()
    run = make_run(tmp_path, ds)
    monkeypatch.setattr(sf, "load_dataset", lambda name, data_root=None, **options: ds)
    titles = []
    real_save = sf._save

    def spy(fig, out_dir, stem):
        titles.append(" ".join(t.get_text() for t in fig.texts) + " ".join(a.get_title() for a in fig.axes))
        return real_save(fig, out_dir, stem)

    monkeypatch.setattr(sf, "_save", spy)
    assert main(["figures", "scores", str(run), "--class", "dog", "--out", str(tmp_path / "figs")]) == 0
    assert len(titles) == 3 and all("run: toyrun" in t for t in titles)
    assert (tmp_path / "figs" / "mem_examples_class1.png").is_file()


def test_histogram_only_and_bad_input(tmp_path, monkeypatch, capsys):
    ds = toy()
    run = make_run(tmp_path, ds)
    assert main(["figures", "scores", str(run), "--no-images"]) == 0
    assert sorted(p.name for p in (run / "report" / "scores").iterdir()) == ["mem_histogram.pdf", "mem_histogram.png"]
    other = toy(name="other")
    monkeypatch.setattr(sf, "load_dataset", lambda name, data_root=None, **options: other)
    out = tmp_path / "o"
    assert main(["figures", "scores", str(run), "--out", str(out)]) == 2
    assert "memadv: error:" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(sf, "load_dataset", lambda name, data_root=None, **options: ds)
    assert main(["figures", "scores", str(run), "--out", str(out), "--class", "7"]) == 2
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["figures", "scores", str(empty)]) == 2
    assert "no scores" in capsys.readouterr().err


def test_imported_pairs_without_labels(tmp_path, monkeypatch):
    """Scores imported from a released pairs file (labels -1, no fingerprints) take labels from the dataset."""
    from memadv.interop.fz import import_fz

    ds = toy()
    f = tmp_path / "toy_high_infl_pairs_infl0.15_mem0.25.npz"
    np.savez(f, tr_idx=np.array([0, 2, 5]), tt_idx=np.array([0, 2, 1]), infl=np.array([0.5, 0.3, 0.2]),
             mem=np.array([0.9, 0.4, 0.3]))
    run = tmp_path / "fzrun"
    import_fz(f, run, "cifar10")
    monkeypatch.setattr(sf, "load_dataset", lambda name, data_root=None, **options: ds)
    assert main(["figures", "scores", str(run), "--per-level", "2"]) == 0
    out = run / "report" / "scores"
    assert valid_png(out / "high_infl_pairs.png") and valid_png(out / "mem_histogram.png")
    assert len(list(out.glob("mem_examples_class*.png"))) == 1
