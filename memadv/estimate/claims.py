"""Claims: a shard being trained is claimed, so two ``estimate`` processes on one run folder never
train the same shard twice (issue 10, item 14).

A claim is ``estimate/claims/shard-NNNNN.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFSv3+), holding JSON ``{host, pid, start, token, slurm_job, slurm_restart,
created}``: the holder is identified by host + pid + the process's start time (psutil), so a pid
that the system reused for another process does not keep a dead claim alive. While the shard
trains, a daemon thread touches the file every :data:`HEARTBEAT_S` seconds. A claim is stale, and
taken over, when

* it names this process's own Slurm job or array task with a lower ``SLURM_RESTART_COUNT``: an
  earlier attempt of this very job, which Slurm ended before requeueing it (possibly on another host);
* else its host is this host and no process with its pid and start time is alive;
* else (another host: its process cannot be asked) its file was not touched for
  :data:`STALE_AFTER_S` seconds.

Sharing a Slurm job id is not enough: two ``estimate`` processes inside one allocation (same
``SLURM_JOB_ID``, no array task id, same restart count) are two live processes, and neither takes
over the other's claim (issue 18, item 4).

Taking over is itself claimed: only the process that creates ``<lock>.<token>.takeover`` with
``O_EXCL`` for the stale claim's token may remove that claim, so two processes that both see the
same stale claim do not both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

HEARTBEAT_S = 30.0     # how often a live claim's file is touched (seconds)
STALE_AFTER_S = 600.0  # a claim of another host untouched this long is stale (seconds): 20 missed heartbeats
WAIT_POLL_S = 1.0      # how often a process waiting for another's shard looks again (seconds)


def claim_path(run_dir: Path, shard: int) -> Path:
    return Path(run_dir) / "estimate" / "claims" / f"shard-{shard:05d}.lock"


def slurm_task() -> str | None:
    """This process's Slurm array task ("job_task"), or its job id, or None outside Slurm."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return None if job is None else (f"{job}_{task}" if task is not None else job)


def slurm_restart() -> int:
    """This process's ``SLURM_RESTART_COUNT``: how often Slurm requeued its job (0 outside Slurm)."""
    value = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(value) if value.isdigit() else 0


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, psutil), or None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # alive, owned by another user, start time hidden
        return -1.0


def holder_alive(pid: int, start: Any) -> bool:
    """Whether the process that wrote a claim on this host (``pid``, started at ``start``) is alive.

    A recorded start time that differs from the live pid's by more than a second means that pid
    now belongs to another process (claims written before the start time was recorded: pid only)."""
    now_start = process_start(pid)
    if now_start is None:
        return False
    if isinstance(start, (int, float)) and now_start >= 0:
        return abs(now_start - float(start)) <= 1.0
    return True


def read_claim(path: Path) -> dict[str, Any] | None:
    """The claim's JSON, or None if there is none; an unreadable or half-written claim reads as
    ``{}`` (stale once untouched for STALE_AFTER_S)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def is_stale(path: Path, claim: dict[str, Any], now: float | None = None) -> bool:
    """Whether ``claim`` (the content of ``path``) belongs to a process that is gone (module docstring)."""
    mine = slurm_task()
    theirs = claim.get("slurm_restart")
    if mine is not None and claim.get("slurm_job") == mine \
            and (theirs if isinstance(theirs, int) else 0) < slurm_restart():
        return True  # an earlier attempt of this job: Slurm ended it before the requeue
    if claim.get("host") == socket.gethostname() and isinstance(claim.get("pid"), int):
        return not holder_alive(claim["pid"], claim.get("start"))
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    return age > STALE_AFTER_S


class Claim:
    """This process's claim of one shard; ``release()`` removes exactly the files it created."""

    def __init__(self, path: Path, token: str):
        self.path = path
        self.token = token
        self.takeovers: list[Path] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"claim-{path.name}")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        claim = read_claim(self.path)
        if claim is not None and claim.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for marker in self.takeovers:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()


def _create(path: Path) -> Claim | None:
    token = uuid.uuid4().hex
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
                       "token": token, "slurm_job": slurm_task(), "slurm_restart": slurm_restart(),
                       "created": time.time()}).encode()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Claim(path, token)


def try_claim(run_dir: Path, shard: int) -> Claim | None:
    """Claim shard ``shard`` of ``run_dir``: a :class:`Claim`, or None while another live process holds it."""
    path = claim_path(run_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = _create(path)
    if claim is not None:
        return claim
    old = read_claim(path)
    if old is None:  # released between our two looks
        return _create(path)
    if not is_stale(path, old):
        return None
    marker = path.with_name(f"{path.name}.{old.get('token', 'unreadable')}.takeover")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None  # another process is taking this stale claim over
    if read_claim(path) == old:  # still the stale claim we judged, not a new one
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    claim = _create(path)
    if claim is None:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        return None
    claim.takeovers.append(marker)
    return claim


@contextlib.contextmanager
def claimed(run_dir: Path, shard: int, is_done: Callable[[], bool]) -> Iterator[Claim | None]:
    """Hold the claim of ``shard`` inside the block; yields None if the shard got done meanwhile
    (``is_done()``: its file reads back as a finished shard; a damaged file is not done).

    While another live process holds the claim, waits (polling every WAIT_POLL_S s) until that
    process finishes the shard or its claim goes stale, then takes it over."""
    while True:
        if is_done():
            yield None
            return
        claim = try_claim(run_dir, shard)
        if claim is not None:
            break
        time.sleep(WAIT_POLL_S)
    try:
        yield None if is_done() else claim
    finally:
        claim.release()


def is_claimed(run_dir: Path, shard: int) -> bool:
    """Whether a live process (not this one) holds the claim of ``shard`` now."""
    path = claim_path(run_dir, shard)
    claim = read_claim(path)
    return claim is not None and claim.get("pid") != os.getpid() and not is_stale(path, claim)
