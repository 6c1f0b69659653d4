"""`memadv figures bat` / `figures ablation`: the tables hold exactly the numbers of the run files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memadv.analysis.ablation import ablation_grid
from memadv.analysis.bat_tables import find_runs, table2, table4
from memadv.cli.main import main
from memadv.files.tables import write_table

SETS = ("all", "typical", "atypical")
ATTACKS = ("clean", "fgsm", "pgd", "cw", "aa")


def make_run(train_dir: Path, name: str, method: str, seed: int, objective: dict, rng: np.random.Generator,
             epochs: int = 5, extra_train: dict | None = None) -> Path:
    """A run folder as `memadv train` writes it, with random accuracies."""
    d = train_dir / name
    d.mkdir(parents=True)
    obj = {"alpha": 1.0, "beta": 0.2, "sigma": 0.15, "tau": 0.1, "trades_beta": 5.0, "eps": 0.25, **objective}
    conf = {"train": {"method": method, "seed": seed, "dataset": "digits", "epochs": epochs, **(extra_train or {})},
            "objective": obj}
    (d / "config.json").write_text(json.dumps(conf))
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "lr": 0.1, "loss": 1.0}
        for split in ("train", "test"):
            for s in SETS:
                row[f"{split}/{s}/clean"] = rng.uniform(0.3, 1.0)
                row[f"{split}/{s}/adv"] = rng.uniform(0.0, 0.6)
                row[f"{split}/{s}/n"] = 100.0
        rows.append(row)
    write_table(d / "metrics.parquet", pd.DataFrame(rows), {"run": name})
    final = [{"checkpoint": ck, "epoch": epochs, "subset": "test/all", "attack": a, "acc": rng.uniform(), "n": 100}
             for ck in ("last", "best_adv", "best_clean") for a in ATTACKS]
    write_table(d / "final.parquet", pd.DataFrame(final), {"run": name})
    return d


@pytest.fixture()
def train_dir(tmp_path):
    rng = np.random.default_rng(0)
    t = tmp_path / "runs" / "digits" / "train"
    for seed in (0, 1):
        make_run(t, f"pgd-seed{seed}", "pgd", seed, {}, rng)
        make_run(t, f"bat-alpha1-beta0.2-seed{seed}", "bat", seed, {"alpha": 1.0, "beta": 0.2}, rng)
    make_run(t, "trades-seed0", "trades", 0, {}, rng)
    return t


def _m(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "metrics.parquet")


def test_table2_equals_final_where_runs_have_it(train_dir):
    """Table 2 reads every set's accuracy at the selected checkpoint from final.parquet (all test
    images), not from the per-epoch evaluation (a subsample under --eval-max)."""
    rng = np.random.default_rng(1)
    for d in (train_dir / "pgd-seed0", train_dir / "pgd-seed1"):
        rows = [{"checkpoint": ck, "epoch": 5, "subset": f"test/{s}", "attack": a, "acc": rng.uniform(), "n": 100}
                for ck in ("last", "best_adv", "best_clean") for s in SETS for a in ATTACKS]
        write_table(d / "final.parquet", pd.DataFrame(rows), {"run": d.name})
    t2 = table2(find_runs(train_dir)).set_index("method")
    finals = [pd.read_parquet(train_dir / f"pgd-seed{s}" / "final.parquet") for s in (0, 1)]
    for label, ck in (("PGD-AT (Best Adv.)", "best_adv"), ("PGD-AT (Last)", "last")):
        assert t2.loc[label, "source"] == "final evaluation"
        for s, name in zip(SETS, ("All", "Typical", "Atyp.")):
            for attack, suffix in (("clean", "Acc."), ("pgd", "Adv.")):
                vals = [100 * f[(f["checkpoint"] == ck) & (f["subset"] == f"test/{s}") & (f["attack"] == attack)]
                        ["acc"].iloc[0] for f in finals]
                assert t2.loc[label, f"{name} {suffix}"] == pytest.approx(np.mean(vals))
    # the fixture's other runs evaluated only test/all at the end: their rows fall back to the metrics
    assert t2.loc["TRADES (1/λ = 5) (Last)", "source"] == "per-epoch evaluation"
    # a final evaluation capped by --final-max is a subsample too: the per-epoch row decides
    for s in (0, 1):
        conf_path = train_dir / f"pgd-seed{s}" / "config.json"
        conf = json.loads(conf_path.read_text())
        conf["train"]["final_max"] = 50
        conf_path.write_text(json.dumps(conf))
    capped = table2(find_runs(train_dir)).set_index("method")
    m = _m(train_dir / "pgd-seed0").iloc[-1], _m(train_dir / "pgd-seed1").iloc[-1]
    assert capped.loc["PGD-AT (Last)", "source"] == "per-epoch evaluation"
    assert capped.loc["PGD-AT (Last)", "All Acc."] == pytest.approx(np.mean([100 * r["test/all/clean"] for r in m]))


def test_table2_equals_metrics(train_dir):
    for f in train_dir.glob("*/final.parquet"):
        f.unlink()  # runs without their final evaluation: the selected metrics row
    t2 = table2(find_runs(train_dir)).set_index("method")
    assert list(t2.index) == ["PGD-AT (Best Adv.)", "PGD-AT (Best Clean)", "PGD-AT (Last)", "TRADES (1/λ = 5) (Last)",
                              "BAT (α = 1, β = 0.2) (Last)"]
    pgd = [_m(train_dir / f"pgd-seed{s}") for s in (0, 1)]
    best_adv = [m.loc[m["test/all/adv"].idxmax()] for m in pgd]
    best_clean = [m.loc[m["test/all/clean"].idxmax()] for m in pgd]
    for label, rows in (("PGD-AT (Best Adv.)", best_adv), ("PGD-AT (Best Clean)", best_clean)):
        for s, name in zip(SETS, ("All", "Typical", "Atyp.")):
            vals = [100 * r[f"test/{s}/clean"] for r in rows]
            assert t2.loc[label, f"{name} Acc."] == pytest.approx(np.mean(vals))
            assert t2.loc[label, f"{name} Acc. std"] == pytest.approx(np.std(vals, ddof=1))
            assert t2.loc[label, f"{name} Adv."] == pytest.approx(np.mean([100 * r[f"test/{s}/adv"] for r in rows]))
        assert t2.loc[label, "epochs"] == " ".join(str(int(r["epoch"])) for r in rows)
    bat = [_m(train_dir / f"bat-alpha1-beta0.2-seed{s}").iloc[-1] for s in (0, 1)]  # BAT: last epoch
    expected = np.mean([100 * r["test/atypical/adv"] for r in bat])
    assert t2.loc["BAT (α = 1, β = 0.2) (Last)", "Atyp. Adv."] == pytest.approx(expected)
    trades = _m(train_dir / "trades-seed0").iloc[-1]
    assert t2.loc["TRADES (1/λ = 5) (Last)", "All Acc."] == pytest.approx(100 * trades["test/all/clean"])
    assert np.isnan(t2.loc["TRADES (1/λ = 5) (Last)", "All Acc. std"])  # one seed: no std
    # --select best-adv applies to the non-PGD rows
    t2b = table2(find_runs(train_dir), "best_adv").set_index("method")
    best = _m(train_dir / "trades-seed0")["test/all/adv"].max()
    assert t2b.loc["TRADES (1/λ = 5) (Best Adv.)", "All Adv."] == pytest.approx(100 * best)


def test_table4_equals_final(train_dir):
    t4 = table4(find_runs(train_dir)).set_index("method")
    for label, ck in (("PGD-AT (Best Adv.)", "best_adv"), ("PGD-AT (Best Clean)", "best_clean")):
        finals = [pd.read_parquet(train_dir / f"pgd-seed{s}" / "final.parquet") for s in (0, 1)]
        for attack, col in zip(ATTACKS, ("Clean Acc.", "FGSM", "PGD", "CW", "AA.")):
            vals = [100 * f[(f["checkpoint"] == ck) & (f["attack"] == attack)]["acc"].iloc[0] for f in finals]
            assert t4.loc[label, col] == pytest.approx(np.mean(vals))
    f = pd.read_parquet(train_dir / "trades-seed0" / "final.parquet")
    cw = f[(f["checkpoint"] == "last") & (f["attack"] == "cw")]["acc"].iloc[0]
    assert t4.loc["TRADES (1/λ = 5) (Last)", "CW"] == pytest.approx(100 * cw)


def test_cli_writes_tables_and_figures(train_dir, capsys):
    assert main(["figures", "bat", str(train_dir)]) == 0
    report = train_dir.parent / "report"
    for name in ("table2.md", "table2.csv", "table4.md", "table4.csv", "fig4_curves.png", "fig4_curves.pdf"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    csv = pd.read_csv(report / "table2.csv").set_index("method")
    t2 = table2(find_runs(train_dir)).set_index("method")
    pd.testing.assert_series_equal(csv["All Adv."], t2["All Adv."], check_exact=False)
    md = (report / "table2.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| TRADES"))
    assert f"{t2.loc['TRADES (1/λ = 5) (Last)', 'All Acc.']:.1f}" in row
    assert "±" in next(line for line in md.splitlines() if line.startswith("| BAT"))


def test_ablation_grid_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(1)
    t = tmp_path / "train"
    for a in (1.0, 2.0):
        for b in (0.0, 0.2):
            make_run(t, f"bat-alpha{a:g}-beta{b:g}-seed0", "bat", 0, {"alpha": a, "beta": b}, rng)
    make_run(t, "pgd-seed0", "pgd", 0, {}, rng)
    grid = ablation_grid(find_runs(t)).set_index(["alpha", "beta"])
    assert len(grid) == 5 and grid.loc[(0.0, 0.0), "source"] == "pgd"
    last = _m(t / "bat-alpha2-beta0.2-seed0").iloc[-1]
    assert grid.loc[(2.0, 0.2), "clean"] == pytest.approx(100 * last["test/all/clean"])
    assert grid.loc[(2.0, 0.2), "adv"] == pytest.approx(100 * last["test/all/adv"])
    assert main(["figures", "ablation", str(t), "--out", str(tmp_path / "rep")]) == 0
    for name in ("ablation.md", "ablation.csv", "fig5_ablation.png", "fig5_ablation.pdf"):
        assert (tmp_path / "rep" / name).is_file(), name
    # BAT runs with another sigma cannot share the grid
    make_run(t, "bat-alpha3-beta0-sigma0.3-seed0", "bat", 0, {"alpha": 3.0, "beta": 0.0, "sigma": 0.3}, rng)
    capsys.readouterr()
    assert main(["figures", "ablation", str(t), "--out", str(tmp_path / "rep2")]) == 2
    assert "differ in more than alpha, beta and seed" in capsys.readouterr().err


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["figures", "bat", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no training runs" in err
