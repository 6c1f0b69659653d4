"""aggregate on a real (tiny) run: re-derivation with another keep rule, shards that do not belong
to the run, score folders that do not belong together."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from memadv.cli.main import main
from memadv.files.atomic import OUTPUT_MARKER
from memadv.scores.schema import read_scores
from memadv.files.tables import read_table, write_table
from memadv.estimate.aggregate import aggregate
from memadv.estimate.config import EstimateConfig
from memadv.estimate.run import estimate
from memadv.errors import SchemaError
from memadv.layout import RunLayout

TINY = dict(dataset="digits", models=6, models_per_shard=2, epochs=1, batch_size=256)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("agg") / "run"
    estimate(EstimateConfig(**TINY), run, progress=False, scheduler="sync")
    return run


def copy_run(src, dst):
    shutil.copytree(src / "estimate", dst / "estimate")
    return dst


def test_rederive_with_another_keep_rule(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "r")
    assert main(["aggregate", str(run), "--keep", "all"]) == 0
    assert "--keep all" in capsys.readouterr().out
    full = read_scores(run)
    assert full.meta["infl_keep"] == "all" and len(full.infl) == len(full.mem) * len(full.test_acc)
    assert main(["aggregate", str(run), "--keep", "threshold", "--keep-threshold", "0.1"]) == 0
    thr = read_scores(run)
    assert thr.meta["infl_min_abs_same"] == 0.1 and thr.meta["infl_min_abs_cross"] == 0.1
    want = full.infl[full.infl["infl"].abs() >= 0.1].reset_index(drop=True)
    pd.testing.assert_frame_equal(thr.infl, want)
    assert main(["aggregate", str(run), "--keep", "same-class", "--cross-class-threshold", "none"]) == 0
    same = read_scores(run)
    assert (same.infl["train_label"] == same.infl["test_label"]).all()
    assert same.meta["infl_min_abs_cross"] is None
    assert main(["splits", str(run)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["aggregate", str(run), "--keep", "most"])
    err = capsys.readouterr().err
    assert "invalid choice: 'most'" in err and "same-class" in err and len(err.strip().splitlines()) == 1


def test_shard_of_another_estimate_is_refused(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "r")
    path = RunLayout(run).shard(1)
    df, meta = read_table(path)
    for change, match in ((dict(meta, estimate={**meta["estimate"], "epochs": 2}), "epochs 2 != 1"),
                          (dict(meta, fingerprint_train="0" * 16), "fingerprint_train"),
                          (dict(meta, shard=2), "shard number 2 != 1")):
        write_table(path, df, change)
        with pytest.raises(SchemaError, match=f"shard-00001.parquet does not belong.*{match}"):
            aggregate(run)
    write_table(path, df.assign(model_id=[4, 5]), meta)          # another shard's models
    with pytest.raises(SchemaError, match="model ids"):
        aggregate(run)
    short = df.assign(test_correct=[b[:-1] for b in df["test_correct"]])   # was silently zero-padded
    write_table(path, short, meta)
    with pytest.raises(SchemaError, match="shard-00001.parquet: column test_correct"):
        aggregate(run)


def test_score_folder_is_replaced_whole_and_checked(tiny_run, tmp_path, monkeypatch):
    run = copy_run(tiny_run, tmp_path / "r")
    first = aggregate(run, keep="all")
    (run / "scores" / "notes.txt").write_text("mine")
    import memadv.files.tables as tables
    real = tables.write_table
    calls = []

    def dying(path, df, meta):  # killed after writing the first file of the new set
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, df, meta)
    monkeypatch.setattr("memadv.scores.schema.write_table", dying)
    with pytest.raises(KeyboardInterrupt):
        aggregate(run, keep="same-class")
    monkeypatch.undo()
    again = read_scores(run)                                 # the old set, whole
    assert again.meta["scores_id"] == first.meta["scores_id"] and again.meta["infl_keep"] == "all"
    assert sorted(p.name for p in (run / "scores").iterdir() if p.name != OUTPUT_MARKER) == ["infl.parquet", "mem.parquet", "notes.txt",
                                                                "proxies.parquet", "test_acc.parquet"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    aggregate(run, keep="same-class")
    assert (run / "scores" / "notes.txt").read_text() == "mine"   # not ours: kept
    # A file from another aggregation put beside the others is refused.
    other = copy_run(tiny_run, tmp_path / "o")
    aggregate(other, allow_partial=True)
    shutil.copy(other / "scores" / "infl.parquet", run / "scores" / "infl.parquet")
    with pytest.raises(SchemaError, match="different aggregations"):
        read_scores(run)
    with pytest.raises(SchemaError, match="different aggregations"):
        read_scores(run, need_infl=False)
    assert main(["splits", str(run)]) != 0
