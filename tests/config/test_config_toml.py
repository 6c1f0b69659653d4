"""Issue 10 item 8: one strict rule for --config files in every command; wrong types are one-line errors.

Each case failed before: estimate, splits and pipeline ignored unknown tables and keys, train ignored
a misspelt table, and a wrong type was a traceback or reached spec.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from memadv.cli.main import main

# command -> (a misspelt key in its own table, a misspelt top-level key, wrong-typed values)
CASES = {
    "estimate": ('[estimate]\nmodles = 4\n', 'modles = 4\n',
                 ['models = "four"\n', 'models = 4.5\n', 'models = [4]\n', '[estimate]\naugment = "yes"\n']),
    "pipeline": ('[pipeline]\ntrain_epoch = 2\n', 'train_epoch = 2\n',
                 ['train_epochs = "two"\n', '[pipeline]\ntrain_seeds = 1\n', '[estimate]\nmodels = 4.5\n']),
    "splits": ('[splits]\nmem_atypcal = 0.2\n', 'mem_atypcal = 0.2\n',
               ['mem_atypical = "high"\n', '[splits]\nmem_atypical = [0.2]\n', 'pairs = 3\n']),
    "train": ('[train]\nepoch = 2\n', 'epoch = 2\n',
              ['epochs = "four"\n', 'epochs = 4.5\n', '[objective]\nalpha = "one"\n']),
}


def _argv(command: str, toml: Path, out: Path) -> list[str]:
    if command == "splits":
        out.mkdir()  # an (empty) run folder: the config is refused before the scores are read
        return ["splits", str(out), "--config", str(toml)]
    return [command, "--config", str(toml), "--out", str(out)] + (["--no-progress"] if command != "train" else [])


def _refused(command: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    toml = tmp_path / "run.toml"
    toml.write_text(text)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(_argv(command, toml, out))
    err = capsys.readouterr().err
    assert code == 2, (command, text, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    # nothing that looks finished: no spec, no split file, no training run
    written = [p for p in out.rglob("*")] if out.exists() else []
    assert written == [], written
    return err


@pytest.mark.parametrize("command", sorted(CASES))
def test_misspelt_table_is_refused(command, tmp_path, capsys):
    err = _refused(command, "[estimat]\nmodels = 4\n", tmp_path, capsys)
    assert "unknown table [estimat]" in err and "valid tables:" in err and "estimate" in err.split("valid tables:")[1]


@pytest.mark.parametrize("command", sorted(CASES))
def test_misspelt_key_in_table_is_refused(command, tmp_path, capsys):
    err = _refused(command, CASES[command][0], tmp_path, capsys)
    wrong = CASES[command][0].split("\n")[1].split(" =")[0]
    assert f"unknown key {wrong!r}" in err and "valid keys:" in err


@pytest.mark.parametrize("command", sorted(CASES))
def test_misspelt_top_level_key_is_refused(command, tmp_path, capsys):
    err = _refused(command, CASES[command][1], tmp_path, capsys)
    assert "unknown top-level key" in err and "valid keys:" in err


@pytest.mark.parametrize("command, text", [(c, t) for c, case in sorted(CASES.items()) for t in case[2]])
def test_wrong_type_is_one_line(command, text, tmp_path, capsys):
    err = _refused(command, text, tmp_path, capsys)
    assert "must be" in err and "got" in err


def test_a_misspelt_key_in_another_commands_table_is_refused_too(tmp_path, capsys):
    """One file may serve every command, so its other tables are checked as well."""
    err = _refused("estimate", "[splits]\nmem_atypcal = 0.2\n", tmp_path, capsys)
    assert "unknown key 'mem_atypcal' in table [splits]" in err


def test_one_file_serves_every_command(tmp_path):
    from memadv.cli.common import toml_tables
    from memadv.config import check_toml

    toml = tmp_path / "run.toml"
    toml.write_text('seed = 1\n[estimate]\nmodels = 4\n[splits]\nmem_atypical = 0.2\n[train]\nepochs = 2\n'
                    '[objective]\nalpha = 2\n[executor]\nexecutor = "local"\n[pipeline]\ntrain_seeds = [0]\n')
    tables = toml_tables()
    for reads in (("estimate", "executor"), ("train", "objective", "executor"), ("pipeline", "estimate", "executor")):
        check_toml(toml, tables, reads)  # no error
