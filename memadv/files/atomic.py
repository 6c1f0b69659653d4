"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``; and the one
rule for what a command may write into or replace (``mark_output``, ``atomic_dir``).

A reader (or a re-run after a kill) sees either no file or a complete one, never a half-written
file that looks finished. No command deletes or replaces what it did not create: every output
folder memadv makes holds a marker file (``OUTPUT_MARKER``) naming its kind ("run", "splits",
"scores", "train", "figures"), and an existing folder is written into only when it is empty or
carries the marker of the kind the command makes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from memadv.errors import OutputRefusedError
from memadv.layout import MEM_FILE, SPLITS_FILE, RunLayout

# The marker file every memadv output folder holds: JSON {"kind": ..., "by": "memadv"}.
# A dot file, so copying a folder's contents (scores.write_scores) and listings skip it.
OUTPUT_MARKER = ".memadv-output.json"
# The kinds of output folder, and the command that makes each (for the refusal message).
OUTPUT_KINDS: dict[str, str] = {
    "run": "memadv estimate / pipeline / import-fz --out",
    "scores": "memadv aggregate / estimate / import-fz (RUN/scores)",
    "splits": "memadv splits --out",
    "train": "memadv train --out",
    "figures": "memadv figures KIND RUN --out",
}
# Folders made before markers existed are recognised by the manifest file their command always wrote
# (a file only memadv writes, not a guess from names of ordinary files); the marker is added on use.
_RUN = RunLayout(".")  # paths relative to a run folder
LEGACY_MANIFESTS: dict[str, tuple[str, ...]] = {"run": (str(_RUN.spec), str(_RUN.plan)),
                                                "scores": (MEM_FILE,), "splits": (SPLITS_FILE,)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def output_kind(path: str | Path) -> str | None:
    """The kind named by ``path``'s marker file, None when it has none (or an unreadable one)."""
    marker = Path(path) / OUTPUT_MARKER
    try:
        kind = json.loads(marker.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if isinstance(kind, str) and kind in OUTPUT_KINDS:
        return kind
    for legacy, manifests in LEGACY_MANIFESTS.items():
        if any((Path(path) / m).is_file() for m in manifests):
            return legacy
    return None


def check_output(path: str | Path, kind: str) -> bool:
    """Whether ``path`` may receive output of ``kind``; True when it already exists as that kind.

    Allowed: a path that does not exist, an empty folder, a folder whose marker names ``kind``.
    Raises OutputRefusedError (one line, nothing touched) for a file, a non-empty folder without the
    marker (not made by memadv, or made before markers existed), or a folder of another kind.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; valid: {', '.join(OUTPUT_KINDS)}")
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir():
        raise OutputRefusedError(f"{str(path)!r} exists and is not a folder; memadv will not replace it "
                                 f"(choose another output path)")
    found = output_kind(path)
    if found == kind:
        return True
    if found is not None:
        raise OutputRefusedError(f"{str(path)!r} is a memadv {found!r} folder (made by {OUTPUT_KINDS[found]}), "
                                 f"not a {kind!r} folder; choose another output path")
    try:
        empty = not any(path.iterdir())
    except OSError as e:
        raise OutputRefusedError(f"cannot read output folder {str(path)!r}: {e.strerror or e}") from None
    if not empty:
        raise OutputRefusedError(f"{str(path)!r} is a non-empty folder that memadv did not make as a {kind!r} "
                                 f"folder (no {OUTPUT_MARKER}); memadv will not write into it or replace it: "
                                 f"choose a new or empty folder")
    return False


def _write_marker(folder: Path, kind: str) -> None:
    write_json_atomic(folder / OUTPUT_MARKER, {"kind": kind, "by": "memadv"})


def mark_output(path: str | Path, kind: str) -> Path:
    """Create (or re-use) the output folder ``path`` of ``kind`` and mark it; returns ``path``.

    The one gate of every command that writes into a folder (see ``check_output`` for what is
    allowed and what raises OutputRefusedError).
    """
    path = Path(path)
    if not check_output(path, kind):
        path.mkdir(parents=True, exist_ok=True)
        _write_marker(path, kind)
    return path


@contextlib.contextmanager
def marked_output(path: str | Path, kind: str) -> Iterator[Path]:
    """``mark_output`` for the duration of a command: when the command fails and the folder was
    created here and holds nothing but the marker, it is removed again (a refused command leaves
    no folder behind that looks like output)."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # folders this call will make
    mark_output(path, kind)
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            if created and {p.name for p in path.iterdir()} <= {OUTPUT_MARKER}:
                (path / OUTPUT_MARKER).unlink(missing_ok=True)
                for folder in created:  # innermost first; stops at the first that is not empty
                    folder.rmdir()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, kind: str) -> Iterator[Path]:
    """Yield a temporary folder (already marked as ``kind``) beside ``target``; on success it replaces
    ``target``, old contents removed. Raises OutputRefusedError, before anything is written, when
    ``target`` exists and is not a folder of ``kind`` (``check_output``)."""
    target = Path(target)
    check_output(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: mkdtemp makes the folder 0700, and the swapped-in scores/ or splits/
    # would then be unreadable for the other users of a shared run folder; mkdir honours the umask.
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        _write_marker(tmp, kind)
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
