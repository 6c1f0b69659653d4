"""The memadv command: complete help, TOML configs, one-line errors with exit status 2 and no output."""

import subprocess
import sys

import pytest

from memadv.cli.main import SUBCOMMANDS, build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_stage_has_a_subcommand_with_help(capsys):
    offered = subcommands()
    for name in ("estimate", "aggregate", "status"):
        assert name in offered
    for name, sub in offered.items():
        text = sub.format_help()
        assert len(text) > 200, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"memadv {name} {action.option_strings} has no help"
    assert set(offered) <= {n for n, _ in SUBCOMMANDS}


def test_estimate_help_lists_defaults_and_sources(capsys):
    with pytest.raises(SystemExit) as e:
        main(["estimate", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--subset-ratio" in out and "Feldman & Zhang" in out and "--executor" in out and "--partition" in out


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("args,message", [
    (["estimate", "--dataset", "cifar100", "--models", "4"], "pass --data-root"),
    (["estimate", "--dataset", "cifar100", "--data-root", "/nonexistent/x"], "is not a directory"),
    (["estimate", "--models", "1"], "--models must be in [2, 1000000]"),
    (["estimate", "--subset-ratio", "1.0"], "--subset-ratio must be in (0.0, 1.0)"),
    (["estimate", "--executor", "local", "--workers", "0"], "--workers must be in [1, inf]"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code, err = run_cli(args + ["--out", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("memadv: error:") and message in err
    assert not out.exists()


def test_usage_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "memadv.cli.main", "estimate", "--dataset", "nope", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice: 'nope'" in proc.stderr and "digits" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_aggregate_and_status_of_missing_run(tmp_path, capsys):
    code, err = run_cli(["aggregate", str(tmp_path / "none")], capsys)
    assert code == 2 and "not an estimate run" in err
    code, err = run_cli(["status", str(tmp_path / "none")], capsys)
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("argv", [["status"], ["splits"], ["figures", "scores"], ["export-fz", "--out", "OUT"],
                                  ["aggregate"]])
def test_a_file_given_as_run_folder_is_named_as_such(tmp_path, capsys, argv):
    run = tmp_path / "scores.parquet"
    run.write_bytes(b"not a folder")
    argv = [str(tmp_path / "x.npz") if a == "OUT" else a for a in argv]
    code, err = run_cli(argv + [str(run)], capsys)
    assert code == 2 and err.count("\n") == 1 and "is not a folder (it is a file)" in err
    assert run.read_bytes() == b"not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


def test_toml_config_with_command_line_winning(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text('dataset = "digits"\n[estimate]\nmodels = 4\nmodels_per_shard = 4\nepochs = 1\nbatch_size = 512\n')
    out = tmp_path / "run"
    code = main(["estimate", "--config", str(toml), "--models", "6", "--models-per-shard", "3", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    import json
    spec = json.loads((out / "estimate" / "spec.json").read_text())
    assert spec["config"]["models"] == 6 and spec["config"]["epochs"] == 1 and spec["config"]["batch_size"] == 512
    assert spec["n_shards"] == 2
    code = main(["status", str(out)])
    assert code == 0
    assert "2 done" in capsys.readouterr().out


def test_status_of_a_folder_that_is_no_run_is_refused(tmp_path, capsys):
    """An empty or foreign folder would read as a run with nothing done yet."""
    for folder in (tmp_path / "empty", tmp_path / "foreign"):
        folder.mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    for folder in (tmp_path / "empty", tmp_path / "foreign"):
        code, err = run_cli(["status", str(folder)], capsys)
        assert code == 2 and "is not a memadv run folder" in err and err.count("\n") == 1


def test_bad_toml_is_one_line(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text("models = [\n")
    code, err = run_cli(["estimate", "--config", str(toml), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "not valid TOML" in err and err.count("\n") == 1


def test_no_option_states_its_default_twice():
    """An option whose help names its own default (per data set) gets no "(default: None)"."""
    for name, sub in subcommands().items():
        for action in sub._actions:
            if action.help:
                assert action.help.count("(default") <= 1, (name, action.option_strings, action.help)
    # and shows the value each data set resolves to
    epochs = next(a for a in subcommands()["train"]._actions if a.dest == "epochs")
    assert "digits 30" in epochs.help and "cifar100 160" in epochs.help and "None" not in epochs.help


def test_python_dash_m_memadv_is_the_memadv_command(tmp_path):
    """``python -m memadv`` (a checkout on PYTHONPATH, no entry point) parses and refuses like ``memadv``."""
    p = subprocess.run([sys.executable, "-m", "memadv", "estimate", "--models", "1", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == ["memadv: error: --models must be in [2, 1000000], got 1"]
    assert not (tmp_path / "r").exists()
