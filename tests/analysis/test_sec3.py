"""Section 3 pieces on hand-computable inputs: the cosine measure, subsets, readings, claims, HTML."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
import pytest
import torch

from memadv.analysis import report, sec32
from memadv.analysis.sec31 import early_late, windows
from memadv.paper import sec3 as paper


# --------------------------------------------------------------------------- cosine measure

def test_class_cosine_by_hand():
    # pairs of different classes: (0,1): cos 0, (0,2): cos 1  -> mean 0.5 (ordered or not)
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    assert paper.class_cosine(h, torch.tensor([0, 1, 1])) == pytest.approx(0.5)
    # three classes, 45-degree vectors: cos(a,b)=1/sqrt2, cos(a,c)=0, cos(b,c)=1/sqrt2
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    assert paper.class_cosine(h, [0, 1, 2]) == pytest.approx((2 / math.sqrt(2)) / 3)


def test_class_cosine_matches_brute_force_and_zero_vectors():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(30, 5, generator=g, dtype=torch.float64).relu()
    h[3] = 0.0  # a dead representation counts as similarity 0 with everything
    y = torch.randint(0, 4, (30,), generator=g)
    vals = []
    for i in range(30):
        for j in range(30):
            if y[i] != y[j]:
                ni, nj = h[i].norm(), h[j].norm()
                vals.append(0.0 if ni == 0 or nj == 0 else float(h[i] @ h[j] / (ni * nj)))
    assert paper.class_cosine(h, y) == pytest.approx(np.mean(vals), abs=1e-9)
    assert math.isnan(paper.class_cosine(h, torch.zeros(30, dtype=torch.int64)))  # one class: no pairs


def test_subset_ids_nested_and_typical_kept():
    sets = {"train/typical": np.arange(0, 50), "train/atypical": np.arange(100, 120),
            "test/typical": np.array([3, 1, 2]), "test/atypical": np.array([7])}
    t0, te = paper.subset_ids(sets, 0, seed=1)
    t20, _ = paper.subset_ids(sets, 20, seed=1)
    t100, _ = paper.subset_ids(sets, 100, seed=1)
    assert np.array_equal(t0, np.arange(50)) and np.array_equal(te, [3, 1, 2])
    assert t20.size == 54 and set(t0) <= set(t20) <= set(t100) and t100.size == 70


def test_cosine_measure_joins_every_evaluated_epoch(tmp_path):
    """The cosine callback's values land in metrics.parquet, one per evaluated epoch, and equal the
    measure recomputed on the final weights at the last epoch."""
    from memadv.bat.runs import load_checkpoint
    from memadv.bat.train import train
    from memadv.bat.train_config import TrainConfig
    from memadv.data import load_dataset
    from memadv.nets import build_net
    ds = load_dataset("digits")
    imgs, labels = ds.x_train[:60], ds.y_train[:60]
    cfg = TrainConfig(method="erm", dataset="digits", epochs=2, progress=False)
    run = train(cfg, tmp_path, dataset=ds, epoch_metrics=paper.cosine_metrics(imgs, labels))
    df = pd.read_parquet(run / "metrics.parquet")
    assert df["epoch"].tolist() == [1, 2] and (df["cos_n"] == 60).all()
    model = build_net("mlp", 10, (1, 8, 8), ds.mean, ds.std)
    model.load_state_dict(load_checkpoint(run / "last.pt")["model"])
    assert df["cos_sim"].iloc[-1] == pytest.approx(paper.class_cosine(paper.representations(model, imgs), labels))
    assert (df["cos_dist"] + df["cos_sim"]).to_numpy() == pytest.approx(1.0)


# --------------------------------------------------------------------------- readings and claims

def _t1(pgd_sim, erm_sim=(0.3, 0.3, 0.3), pgd_clean=(90, 85, 80), pgd_adv=(50, 45, 40), erm_clean=(95, 95, 96)):
    rows = []
    for m, sims, clean, adv in (("ERM", erm_sim, erm_clean, (0, 0, 0)), ("PGD-AT", pgd_sim, pgd_clean, pgd_adv)):
        for p, s, c, a in zip((0, 20, 100), sims, clean, adv):
            rows.append({"method": m, "p": p, "cos_sim": s, "1 - cos_sim": 1 - s, "typ. test clean": c,
                         "typ. test adv": a})
    return pd.DataFrame(rows)


def test_cosine_reading_trend_and_magnitude():
    r = sec32.cosine_reading(_t1((0.30, 0.35, 0.40)))  # similarity rises: 1 - sim falls like Table 1
    assert r["reading"] == "1 - similarity" and r["decided_by"] == "trend"
    r = sec32.cosine_reading(_t1((0.70, 0.65, 0.60)))  # similarity falls like Table 1
    assert r["reading"] == "similarity" and r["decided_by"] == "trend"
    r = sec32.cosine_reading(_t1((0.36, 0.30, 0.38)))  # neither monotone: 1 - sim ~0.65 is closer to 0.66..0.59
    assert r["reading"] == "1 - similarity" and r["decided_by"] == "magnitude"


def _metrics(epochs, **cols):
    return pd.DataFrame({"epoch": np.arange(1, epochs + 1), **{k.replace("__", "/"): v for k, v in cols.items()}})


def test_early_late_windows():
    early, late = windows(np.arange(1, 11))
    assert early.tolist() == [True, True] + [False] * 8 and late.tolist() == [False] * 8 + [True, True]
    df = _metrics(3, x=[0.0, 0.5, 1.0])
    assert early_late(df, "x") == (0.0, 1.0)  # windows of one epoch


# --------------------------------------------------------------------------- HTML

def test_markdown_to_html_embeds_images_and_tables():
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    md = "# T\n\n| a | b |\n|---|---:|\n| 1 | **x** |\n\n* item `c`\n\n![f.png](f.png)\n"
    out = report.markdown_to_html(md, {"f.png": b64})
    assert "<h1>T</h1>" in out and _table_cells(out) == [[["a", "b"], ["1", "x"]]]
    assert "<strong>x</strong>" in out and "<li>item <code>c</code></li>" in out
    assert f"data:image/png;base64,{b64}" in out


def _table_cells(html_text: str) -> list[list[list[str]]]:
    """Text of every cell, per row, per table, as a browser would lay them out."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Cells()
    parser.feed(html_text)
    return parser.tables


def test_a_cell_holding_a_pipe_stays_one_cell_in_markdown_and_html():
    """Claim C2's deciding numbers hold ``|change| < 5``: the claims table keeps five columns."""
    from memadv.files.tables import markdown_table
    claims = [report.Claim("C2", "3.1", "statement", "supported", "ok |change| < 5 pp")]
    md = report.claims_markdown(claims)
    assert md.splitlines()[2].count("\\|") == 2
    rows = _table_cells(report.markdown_to_html(md, {}))[0]
    assert [len(r) for r in rows] == [5, 5]
    assert rows[1][4] == "ok |change| < 5 pp" and rows[1][3] == "supported"
    # every table writer goes through the one escaping writer
    assert markdown_table(["a|b"], [["x|y"]], align="r") == ["| a\\|b |", "|---:|", "| x\\|y |"]


# --------------------------------------------------------------------------- several seeds

def test_table1_means_over_seeds():
    def run(p, method, seed, clean, adv, sim):
        m = _metrics(2, test__all__clean=[0.5, clean], test__all__adv=[0.1, adv], test__all__n=[10.0, 10.0],
                     train__all__n=[100.0, 100.0])
        c = pd.DataFrame({"epoch": [1, 2], "cos_sim": [0.9, sim], "cos_dist": [0.1, 1 - sim], "n": [5, 5]})
        return sec32.Sec32Run(p, method, m, c, seed)

    runs = [run(0, "pgd", 0, 0.90, 0.50, 0.30), run(0, "pgd", 1, 0.80, 0.40, 0.40),
            run(100, "pgd", 0, 0.70, 0.30, 0.50), run(100, "pgd", 1, 0.70, 0.30, 0.50)]
    t1 = sec32.table1(runs)
    row0 = t1[t1["p"] == 0].iloc[0]
    assert row0["seeds"] == 2 and row0["typ. test clean"] == pytest.approx(85.0)
    assert row0["typ. test adv"] == pytest.approx(45.0) and row0["cos_sim"] == pytest.approx(0.35)
    assert row0["1 - cos_sim"] == pytest.approx(0.65) and row0["typ. test clean sd"] == pytest.approx(7.0710678)
    row1 = t1[t1["p"] == 100].iloc[0]
    assert row1["typ. test clean sd"] == pytest.approx(0.0) and row1["n typ. test"] == 10


def test_mean_over_seeds_aligns_epochs():
    from memadv.analysis.sec31 import mean_over_seeds
    a = _metrics(3, x=[0.0, 0.5, 1.0])
    b = _metrics(3, x=[1.0, 0.5, 0.0]).iloc[::-1]  # order does not matter
    m = mean_over_seeds([a, b])
    assert m["epoch"].tolist() == [1, 2, 3] and m["x"].tolist() == [0.5, 0.5, 0.5]
    assert mean_over_seeds([a]) is a


def test_cosine_reading_ignores_a_trend_within_seed_noise():
    t1 = _t1((0.370, 0.371, 0.372))  # 1 - sim falls by 0.002 ...
    assert sec32.cosine_reading(t1)["decided_by"] == "trend"
    t1["1 - cos_sim sd"] = 0.005  # ... but the seeds scatter by 0.005: no clear trend, magnitude decides
    r = sec32.cosine_reading(t1)
    assert r["decided_by"] == "magnitude" and r["reading"] == "1 - similarity"
    assert r["trend_noise"] == pytest.approx(0.01)
