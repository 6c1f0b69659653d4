"""Issue 10 item 1: no command deletes or replaces what it did not create (one helper,
``memadv.files.atomic.check_output``); issue 10 item 15: output paths that cannot be written are
one-line errors."""

import os

import pytest

from memadv.cli.main import main
from memadv.files.atomic import OUTPUT_MARKER, atomic_dir, check_output, mark_output
from memadv.errors import OutputRefusedError

from cli_refusal import assert_one_line_refusal


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The reproducer's run: ``memadv estimate --models 4 --epochs 1 --out run``."""
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["estimate", "--models", "4", "--epochs", "1", "--out", str(run), "--no-progress"]) == 0
    return run


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_splits_into_the_run_folder_is_refused_and_the_run_is_kept(small_run, capsys):
    before = listing(small_run)
    code, err = run_cli(["splits", small_run, "--out", small_run], capsys)
    assert_one_line_refusal(code, err, "'run'", "splits")
    assert listing(small_run) == before
    assert (small_run / "scores" / "mem.parquet").exists() and (small_run / "estimate" / "spec.json").exists()


def test_splits_default_and_rerun_replace_only_their_own_folder(small_run, capsys, tmp_path):
    out = tmp_path / "s"
    assert run_cli(["splits", small_run, "--out", out], capsys)[0] == 0
    assert run_cli(["splits", small_run, "--out", out], capsys)[0] == 0  # its own kind: replaced
    assert (out / "splits.parquet").exists() and (out / OUTPUT_MARKER).exists()


@pytest.mark.parametrize("make", ["file", "folder"])
@pytest.mark.parametrize("command", ["splits", "import-fz", "estimate", "train", "pipeline", "export-fz",
                                     "figures"])
def test_every_writing_command_refuses_an_unrelated_output(small_run, capsys, tmp_path, command, make):
    target = tmp_path / "precious"
    if make == "file":
        target.write_text("keep me\n")
    else:
        target.mkdir()
        (target / "thesis.tex").write_text("keep me\n")
    before = listing(tmp_path)
    npz = tmp_path.parent / f"{tmp_path.name}-in.npz"
    if not npz.exists():
        assert main(["export-fz", str(small_run), "--out", str(npz)]) == 0  # a valid file to import
    capsys.readouterr()
    args = {
        "splits": ["splits", small_run, "--out", target],
        "import-fz": ["import-fz", npz, "--dataset", "cifar100", "--out", target],
        "estimate": ["estimate", "--models", "4", "--epochs", "1", "--no-progress", "--out", target],
        "train": ["train", "--dataset", "synthetic-longtail", "--epochs", "1", "--out", target],
        "pipeline": ["pipeline", "--quick", "--no-progress", "--out", target],
        "export-fz": ["export-fz", small_run, "--out", target if make == "folder" else target.with_suffix(".npz")],
        "figures": ["figures", "scores", small_run, "--out", target],
    }[command]
    if command == "export-fz" and make == "file":
        target.rename(target.with_suffix(".npz"))
        before = listing(tmp_path)
    code, err = run_cli(args, capsys)
    assert_one_line_refusal(code, err, "precious")
    assert listing(tmp_path) == before
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert p.read_text() == "keep me\n"


def test_export_fz_replaces_its_own_export(small_run, capsys, tmp_path):
    out = tmp_path / "x.npz"
    assert run_cli(["export-fz", small_run, "--out", out], capsys)[0] == 0
    assert run_cli(["export-fz", small_run, "--out", out], capsys)[0] == 0


def test_helper_rules(tmp_path):
    assert check_output(tmp_path / "new", "splits") is False
    (tmp_path / "empty").mkdir()
    assert mark_output(tmp_path / "empty", "splits") == tmp_path / "empty"
    assert check_output(tmp_path / "empty", "splits") is True
    with pytest.raises(OutputRefusedError, match="'splits' folder.*not a 'scores' folder"):
        check_output(tmp_path / "empty", "scores")
    with pytest.raises(OutputRefusedError):
        with atomic_dir(tmp_path / "empty", "run"):
            pass
    assert (tmp_path / "empty" / OUTPUT_MARKER).exists()


def test_refused_command_leaves_no_new_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(["estimate", "--dataset", "cifar100", "--models", "4", "--out", out], capsys)
    assert code == 2 and "--data-root" in err
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_one_line(small_run, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, err = run_cli(["splits", small_run, "--out", ro / "s"], capsys)
    finally:
        ro.chmod(0o700)
    assert_one_line_refusal(code, err, "Permission denied")
    assert not (ro / "s").exists()


def test_swapped_in_folders_honour_the_umask(tmp_path):
    """scores/ and splits/ are built in a temporary folder and swapped in; that folder must get the
    umask's permissions like any other (tempfile.mkdtemp's 0700 left them unreadable to the other
    users of a shared run folder)."""
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "scores", "scores") as tmp:
            (tmp / "x").write_text("")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    assert (tmp_path / "scores" / "x").exists()
    assert (tmp_path / "scores").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o755
