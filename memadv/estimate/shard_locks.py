"""Shard locks: a shard being trained is locked, so two ``estimate`` processes on one run folder never
train the same shard twice.

A lock is ``estimate/claims/shard-NNNNN.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFSv3+), holding JSON ``{host, pid, start, token, slurm_job, slurm_restart,
created}``: the holder is identified by host + pid + the process's start time (psutil), so a pid
that the system reused for another process does not keep a dead lock alive. While the shard
trains, a daemon thread touches the file every :data:`HEARTBEAT_S` seconds. A lock is stale, and
taken over, when

* it names this process's own Slurm job or array task with a lower ``SLURM_RESTART_COUNT``: an
  earlier attempt of this very job, which Slurm ended before requeueing it (possibly on another host);
* else its host is this host and no process with its pid and start time is alive;
* else (another host: its process cannot be asked) its file was not touched for
  :data:`STALE_AFTER_S` seconds.

Sharing a Slurm job id is not enough: two ``estimate`` processes inside one allocation (same
``SLURM_JOB_ID``, no array task id, same restart count) are two live processes, and neither takes
over the other's lock.

Taking over is itself locked: only the process that creates ``<lock>.<token>.takeover`` with
``O_EXCL`` for the stale lock's token may remove that lock, so two processes that both see the
same stale lock do not both take it.
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

from memadv.job_env import slurm_restart, slurm_task
from memadv.layout import RunLayout

HEARTBEAT_S = 30.0     # how often a live lock's file is touched (seconds)
STALE_AFTER_S = 600.0  # a lock of another host untouched this long is stale (seconds): 20 missed heartbeats
WAIT_POLL_S = 1.0      # how often a process waiting for another's shard looks again (seconds)


def lock_path(run_dir: Path, shard: int) -> Path:
    return RunLayout(run_dir).shard_lock(shard)


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, psutil), or None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # alive, owned by another user, start time hidden
        return -1.0


def holder_alive(pid: int, start: Any) -> bool:
    """Whether the process that wrote a lock on this host (``pid``, started at ``start``) is alive.

    A recorded start time that differs from the live pid's by more than a second means that pid
    now belongs to another process (locks written before the start time was recorded: pid only)."""
    now_start = process_start(pid)
    if now_start is None:
        return False
    if isinstance(start, (int, float)) and now_start >= 0:
        return abs(now_start - float(start)) <= 1.0
    return True


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's JSON, or None if there is none; an unreadable or half-written lock reads as
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


def is_stale(path: Path, lock: dict[str, Any], now: float | None = None) -> bool:
    """Whether ``lock`` (the content of ``path``) belongs to a process that is gone (module docstring)."""
    mine = slurm_task()
    theirs = lock.get("slurm_restart")
    if mine is not None and lock.get("slurm_job") == mine \
            and (theirs if isinstance(theirs, int) else 0) < slurm_restart():
        return True  # an earlier attempt of this job: Slurm ended it before the requeue
    if lock.get("host") == socket.gethostname() and isinstance(lock.get("pid"), int):
        return not holder_alive(lock["pid"], lock.get("start"))
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    return age > STALE_AFTER_S


class ShardLock:
    """This process's lock of one shard; ``release()`` removes exactly the files it created."""

    def __init__(self, path: Path, token: str):
        self.path = path
        self.token = token
        self.takeovers: list[Path] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lock-{path.name}")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        lock = read_lock(self.path)
        if lock is not None and lock.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for marker in self.takeovers:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()


def _create(path: Path) -> ShardLock | None:
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
    return ShardLock(path, token)


def try_lock(run_dir: Path, shard: int) -> ShardLock | None:
    """Lock shard ``shard`` of ``run_dir``: a :class:`ShardLock`, or None while another live process holds it."""
    path = lock_path(run_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _create(path)
    if lock is not None:
        return lock
    old = read_lock(path)
    if old is None:  # released between our two looks
        return _create(path)
    if not is_stale(path, old):
        return None
    marker = path.with_name(f"{path.name}.{old.get('token', 'unreadable')}.takeover")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None  # another process is taking this stale lock over
    if read_lock(path) == old:  # still the stale lock we judged, not a new one
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    lock = _create(path)
    if lock is None:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        return None
    lock.takeovers.append(marker)
    return lock


@contextlib.contextmanager
def locked(run_dir: Path, shard: int, is_done: Callable[[], bool]) -> Iterator[ShardLock | None]:
    """Hold the lock of ``shard`` inside the block; yields None if the shard got done meanwhile
    (``is_done()``: its file reads back as a finished shard; a damaged file is not done).

    While another live process holds the lock, waits (polling every WAIT_POLL_S s) until that
    process finishes the shard or its lock goes stale, then takes it over."""
    while True:
        if is_done():
            yield None
            return
        lock = try_lock(run_dir, shard)
        if lock is not None:
            break
        time.sleep(WAIT_POLL_S)
    try:
        yield None if is_done() else lock
    finally:
        lock.release()


def is_locked(run_dir: Path, shard: int) -> bool:
    """Whether a live process (not this one) holds the lock of ``shard`` now."""
    path = lock_path(run_dir, shard)
    lock = read_lock(path)
    return lock is not None and lock.get("pid") != os.getpid() and not is_stale(path, lock)
