"""Issue 10 items 2, 3, 4, 15: nothing in a run folder is executed, no control character reaches a
script or command line, names stay inside --out, and environment failures are one-line errors."""

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memadv.bat.runs import RESUME_KEYS, TrainingRun, load_checkpoint
from memadv.cli.main import BROKEN_PIPE_EXIT, main
from memadv.safe_values import check_path_component, check_printable
from memadv.errors import MemadvError, OutputRefusedError, UnsafeInputError
from memadv.executors.paths import ExecutorPaths
from memadv.executors.base import ExecutorConfig
from memadv.executors.slurm.submit import sbatch_script

from cli_refusal import assert_one_line_refusal as one_line

TRAIN = ["train", "--method", "pgd", "--dataset", "digits", "--epochs", "1", "--final-attacks", "clean",
         "--progress", "false"]


class _Plant:
    """Unpickling this creates the file ``path``: the proof that a load ran code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "out"
    assert main(TRAIN + ["--out", str(out), "--name", "r"]) == 0
    return out / "r"


# ------------------------------------------------------------------ item 2: nothing is unpickled

def test_malicious_checkpoint_is_refused_and_never_run(trained, tmp_path, capsys):
    import shutil
    run = tmp_path / "out" / "r"
    shutil.copytree(trained.parent, tmp_path / "out")
    (run / "final.parquet").unlink()  # unfinished: train resumes from last.pt
    proof = tmp_path / "PWNED"
    torch.save({"model": _Plant(proof), "epoch": 1}, run / "last.pt")  # a pickle with code in it
    code = main(TRAIN + ["--out", str(tmp_path / "out"), "--name", "r"])
    one_line(code, capsys.readouterr().err, "last.pt")
    assert not proof.exists()
    with pytest.raises(MemadvError, match="cannot read checkpoint"):
        TrainingRun(run).load_model(None)  # the reader of finished runs (figures, sec32) too
    assert not proof.exists()


def test_status_never_opens_a_submitit_result_pickle(tmp_path, capsys, monkeypatch):
    from memadv.layout import RunLayout
    from submitit.core.utils import JobPaths
    run = tmp_path / "run"
    jobs = RunLayout(run).estimate_jobs
    jobs.mkdir(parents=True)
    (jobs / "jobs.json").write_text(json.dumps({"desc": "x", "executor": "slurm", "folder": str(jobs),
                                                "array_job_ids": ["77"], "tasks": {"0": "77_0"}}))
    proof = tmp_path / "PWNED"
    result = JobPaths(jobs, job_id="77_0", task_id=0).result_pickle
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(pickle.dumps(("success", _Plant(proof))))
    main(["status", str(run)])
    capsys.readouterr()
    from memadv.executors.slurm.accounting import job_states
    job_states(jobs)
    assert not proof.exists()


# ------------------------------------------------------------------ item 3: control characters

CONTROL = ["a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x7fb", "a\x85b", "a\tb"]


@pytest.mark.parametrize("bad", CONTROL)
def test_validator_refuses_every_control_character(bad):
    with pytest.raises(UnsafeInputError, match="control character"):
        check_printable("--partition", bad)
    with pytest.raises(UnsafeInputError):
        check_printable("--sbatch-extra", ["qos=high", bad])
    check_printable("--partition", "gpu-a100_x.1 é")  # printable text, accents included, passes


@pytest.mark.parametrize("args", [
    ["estimate", "--executor", "slurm", "--partition", "gpu\n#SBATCH --wrap=x"],
    ["estimate", "--executor", "slurm", "--sbatch-extra", "qos=high\nrm -rf ~"],
    ["train", "--name", "a\rb"],
    ["splits", "run\x00"],
    ["status", "run\n"],
])
def test_every_command_line_entry_refuses_control_characters(tmp_path, capsys, args):
    out = tmp_path / "o"
    code = main(args + (["--out", str(out)] if args[0] in ("estimate", "train") else []))
    one_line(code, capsys.readouterr().err, "control character")
    assert not out.exists()


@pytest.mark.parametrize("args", [["train", "--name", "bad\udc9bname"], ["estimate"]])
def test_bytes_that_are_not_utf8_are_refused_before_anything_runs(tmp_path, capsys, args):
    """A non-UTF-8 byte from argv arrives as a lone surrogate: a one-line error at once, not a
    traceback (``--name``) or a failure after the first shard trained (``--out``)."""
    out = tmp_path / ("o" if args[0] == "train" else "bad\udcffdir")
    code = main(args + ["--out", str(out)])
    one_line(code, capsys.readouterr().err, "not UTF-8")
    assert list(tmp_path.rglob("*")) == []


def test_toml_strings_are_checked(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[executor]\nexecutor = "slurm"\npartition = "gpu\\n#SBATCH --exclusive"\n')
    one_line(main(["estimate", "--config", str(cfg), "--out", str(tmp_path / "o")]), capsys.readouterr().err,
             "control character")
    sweep = tmp_path / "s.toml"
    sweep.write_text('dataset = "digits"\nmethod = "pgd"\n[[runs]]\nname = "x\\ny"\n')
    one_line(main(["train", "--sweep", str(sweep), "--out", str(tmp_path / "t")]), capsys.readouterr().err)
    assert not (tmp_path / "t").exists()


def test_sbatch_parameters_and_folder_are_checked_at_submission(tmp_path):
    cfg = ExecutorConfig(executor="slurm")
    cfg.partition = "gpu\nx"  # set after validation: the last check is where the script is made
    with pytest.raises(UnsafeInputError):
        sbatch_script(cfg, tmp_path, 1)


# ------------------------------------------------------------------ item 4: names

@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", ".sweep", "-rf", "a\\b", "x" * 256])
def test_names_are_single_path_components(name, tmp_path, capsys):
    with pytest.raises(OutputRefusedError):
        check_path_component("--name", name)
    out = tmp_path / "deep" / "out"
    one_line(main(TRAIN + ["--out", str(out), f"--name={name}"]), capsys.readouterr().err, "path component")
    assert list(tmp_path.rglob("*")) == []  # nothing written, inside --out or outside it


def test_sweep_entry_name_stays_inside_out(tmp_path, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text('dataset = "digits"\nmethod = "pgd"\nepochs = 1\n[[runs]]\nname = "../escaped"\n')
    one_line(main(["train", "--sweep", str(sweep), "--out", str(tmp_path / "t")]), capsys.readouterr().err,
             "path component")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "t").exists()


# ------------------------------------------------------------------ item 15: one-line errors

def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(f))
    monkeypatch.setattr(torch, "save", full)  # the checkpoint write meets a full disk
    one_line(main(TRAIN + ["--out", str(tmp_path / "t")]), capsys.readouterr().err, "No space left on device")
    assert not list((tmp_path / "t").rglob("*.pt"))  # no checkpoint that looks finished


def test_torch_unexpected_pos_is_one_line(tmp_path, capsys, monkeypatch):
    def short_write(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4224 vs 4112")
    monkeypatch.setattr(torch, "save", short_write)
    one_line(main(TRAIN + ["--out", str(tmp_path / "t")]), capsys.readouterr().err, "disk full", "unexpected pos")


def test_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    def denied(*a, dir=None, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    one_line(main(TRAIN + ["--out", str(tmp_path / "t")]), capsys.readouterr().err, "Permission denied")


def test_config_naming_a_folder_is_one_line(tmp_path, capsys):
    one_line(main(["estimate", "--config", str(tmp_path), "--out", str(tmp_path / "o")]), capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_checkpoint_without_its_keys_is_one_line(trained, tmp_path, capsys):
    import shutil
    shutil.copytree(trained.parent, tmp_path / "out")
    run = tmp_path / "out" / "r"
    (run / "final.parquet").unlink()
    torch.save({"epoch": 1}, run / "last.pt")  # tensors-only, but not a memadv checkpoint
    one_line(main(TRAIN + ["--out", str(tmp_path / "out"), "--name", "r"]), capsys.readouterr().err,
             "lacks keys", "model")
    with pytest.raises(MemadvError, match="lacks keys"):
        load_checkpoint(run / "last.pt", RESUME_KEYS)


def test_broken_pipe_exits_quietly(tmp_path):
    from memadv.files.atomic import mark_output

    run = mark_output(tmp_path / "run", "run")  # a run folder with nothing in it yet
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "memadv.cli.main", "status", "--json", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before memadv writes, as with `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait() == BROKEN_PIPE_EXIT, err
    assert err == ""


# ------------------------------------------------------------------ item 18: released files, safely

def test_imagenet_index_with_object_file_names_is_read_without_unpickling_code(tmp_path, capsys, monkeypatch):
    import numpy as np

    import memadv.interop.fz as fz
    from memadv.interop.fz import load_npz
    monkeypatch.setitem(fz.KNOWN_SIZES, "imagenet", (3, 1))  # a toy file standing for the released index
    names = np.array(["n01_1.JPEG", "n01_2.JPEG", "n02_1.JPEG"], dtype=object)  # as the release stores them
    good = tmp_path / "imagenet_index.npz"
    np.savez(good, tr_filenames=names, tr_labels=np.array([0, 0, 1]), tt_filenames=np.array(["v.JPEG"], dtype=object),
             tt_labels=np.array([1]), tr_mem=np.array([0.0, 0.5, 1.0]))
    assert main(["import-fz", str(good), "--dataset", "imagenet", "--out", str(tmp_path / "run")]) == 0
    files = __import__("pandas").read_parquet(tmp_path / "run" / "scores" / "filenames.parquet")
    assert files["filename"].tolist()[:3] == names.tolist()
    proof = tmp_path / "PWNED"
    evil = tmp_path / "evil" / "imagenet_index.npz"
    evil.parent.mkdir()
    np.savez(evil, tr_filenames=np.array([_Plant(proof)], dtype=object), tr_labels=np.array([0]),
             tt_filenames=np.array(["v"], dtype=object), tt_labels=np.array([0]), tr_mem=np.array([0.0]))
    capsys.readouterr()
    one_line(main(["import-fz", str(evil), "--dataset", "imagenet", "--out", str(tmp_path / "r2")]),
             capsys.readouterr().err, "refused")
    assert not proof.exists() and not (tmp_path / "r2").exists()
    with pytest.raises(UnsafeInputError):
        load_npz(evil)


def _write_raw(root: Path, masks, train_ok, test_ok) -> None:
    import numpy as np
    for m, (mask, ok, tok) in enumerate(zip(masks, train_ok, test_ok)):
        d = root / "0.7" / str(m)
        d.mkdir(parents=True)
        tr, rm = np.flatnonzero(mask), np.flatnonzero(~mask)
        perm = np.arange(len(tok))[::-1]  # evaluation order differs from id order, as the README warns
        np.savez(d / "aux_arrays.npz", subsample_idx=tr, index_train=tr, index_removed=rm,
                 correctness_train=ok[tr], correctness_removed=ok[rm], index_test=perm, correctness_test=tok[perm])


def test_raw_per_model_arrays_give_mem_with_standard_errors(tmp_path):
    import numpy as np

    from memadv.scores.schema import read_scores
    rng = np.random.default_rng(0)
    M, n, nt = 12, 5, 3
    masks = rng.random((M, n)) < 0.7
    train_ok = np.where(masks, rng.random((M, n)) < 0.9, rng.random((M, n)) < 0.4)
    test_ok = rng.random((M, nt)) < 0.6
    _write_raw(tmp_path / "raw", masks, train_ok, test_ok)
    assert main(["import-fz", str(tmp_path / "raw"), "--dataset", "cifar100", "--out", str(tmp_path / "run")]) == 0
    s = read_scores(tmp_path / "run", need_infl=False)
    for i in range(n):  # Eq. 1 by hand, one example at a time
        p_in, p_out = train_ok[masks[:, i], i].mean(), train_ok[~masks[:, i], i].mean()
        se = np.sqrt(p_in * (1 - p_in) / masks[:, i].sum() + p_out * (1 - p_out) / (~masks[:, i]).sum())
        row = s.mem.set_index("idx").loc[i]
        assert row["mem"] == pytest.approx(p_in - p_out) and row["mem_se"] == pytest.approx(se)
    assert s.test_acc.sort_values("idx")["p_correct"].to_numpy() == pytest.approx(test_ok.mean(0))
    assert s.meta["se_known"] is True and s.meta["n_models"] == M


def test_waiting_for_slurm_jobs_never_opens_their_result_pickles(tmp_path, monkeypatch):
    """The waiter reads the JSON outcome each job writes (memadv.executors.paths.ExecutorPaths.outcome), never
    submitit's result pickle, even when a crafted one sits beside it. The jobs are stand-ins (no
    sbatch needed): a real array would leave the same files."""
    from types import SimpleNamespace

    from submitit.core.utils import JobPaths

    from memadv.files.atomic import write_json_atomic
    from memadv.executors.slurm import submit

    proof = tmp_path / "PWNED"
    jobs = {}
    for i, outcome in enumerate(({"ok": True, "value": "shard-0"}, {"ok": False, "error": "ValueError: boom"})):
        paths = JobPaths(tmp_path, job_id=f"77_{i}", task_id=i)
        paths.result_pickle.parent.mkdir(parents=True, exist_ok=True)
        paths.result_pickle.write_bytes(pickle.dumps(("success", _Plant(proof))))
        write_json_atomic(ExecutorPaths(tmp_path).outcome(f"77_{i}"), outcome)
        # result(): what submitit's Job.result() does, unpickle the result file (the old waiter called it)
        jobs[i] = SimpleNamespace(job_id=f"77_{i}", paths=paths,
                                  result=lambda p=paths: pickle.loads(p.result_pickle.read_bytes())[1])
    monkeypatch.setattr(submit, "poll_states", lambda ids: ({j: "COMPLETED" for j in ids}, {}))
    with pytest.raises(Exception, match="ValueError: boom"):
        submit._wait_slurm(jobs, [0, 1], tmp_path, "toy shards", progress=False)
    assert not proof.exists()
    del jobs[1]
    assert submit._wait_slurm(jobs, [0], tmp_path, "toy shards", progress=False) == ["shard-0"]
    assert not proof.exists()
