"""Toy idempotent tasks for the executor tests (imported by worker processes and Slurm jobs, so they
live in a module of their own; conftest.py puts this folder on PYTHONPATH)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # one short O_APPEND write per line: safe across processes
        f.write(line + "\n")


class ToyTask:
    """Writes out/<id>.txt (atomically) unless it exists; logs every computation in calls/<id>.log."""

    def __init__(self, root: str | Path, fail_ids: tuple[int, ...] = (), sleep_s: float = 0.0):
        self.root = Path(root)
        self.fail_ids = tuple(fail_ids)
        self.sleep_s = sleep_s

    @staticmethod
    def expected(i: int) -> str:
        return f"result {i} = {i * i}\n"

    def __call__(self, i: int) -> str:
        out = self.root / "out" / f"{i}.txt"
        if out.exists():
            return out.read_text()
        if i in self.fail_ids:
            raise ValueError(f"toy failure for id {i}")
        time.sleep(self.sleep_s)
        append_line(self.root / "calls" / f"{i}.log", f"computed by pid {os.getpid()}")
        write_atomic(out, self.expected(i))
        return self.expected(i)


class UnitsTask:
    """Task i has ``units`` units of ``unit_s`` seconds; finished units (files) are skipped, so a
    requeued call resumes at the next unfinished one. Logs starts and unit computations."""

    def __init__(self, root: str | Path, units: int = 6, unit_s: float = 1.0):
        self.root = Path(root)
        self.units = units
        self.unit_s = unit_s

    def __call__(self, i: int) -> int:
        append_line(self.root / "starts" / f"{i}.log", f"start pid {os.getpid()}")
        for u in range(self.units):
            path = self.root / "units" / f"{i}-{u}.txt"
            if path.exists():
                continue
            time.sleep(self.unit_s)
            append_line(self.root / "computed" / f"{i}.log", str(u))
            write_atomic(path, f"{i} {u}\n")
        return sum(1 for u in range(self.units) if (self.root / "units" / f"{i}-{u}.txt").exists())


class DyingTask:
    """Kills its own (worker) process: the executor must report it, not hang."""

    def __call__(self, i: int) -> None:
        os._exit(3)
