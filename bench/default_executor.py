"""``memadv estimate --dataset digits`` with the old default executor (inprocess) vs the new default
(auto), side by side in one run, as the user types them.

Issue 18 item 12: on a quiet 2-core machine the README's first estimate command (then the
in-process executor: one process, torch's default threads) took 220 s for 2,000 models, while
``make pipeline``'s estimate stage (``--executor local --workers 2``, one thread each) took 96 s.
The default is now ``auto`` (:func:`memadv.executors.base.resolve_executor`): for the estimator's
CPU shards, one single-threaded local worker per usable CPU.

Each way is the whole command in a fresh ``python -m memadv.cli.main estimate`` process (imports,
data, spawning workers, training, aggregation: what the user waits for), on a representative slice
of the digits default (``--models 200``: 2 shards of the default 100 models, the default 25 epochs;
``--full-models 0``), into its own folder. The ways alternate ``--repeats`` times and the minimum
wall time of each counts. The score files of the two ways are compared value for value
(``mem.parquet``, ``infl.parquet``, ``test_acc.parquet``); the bench fails if they differ. The last
line is the headline: the speed ratio inprocess / auto.

    python bench/default_executor.py [--models 200] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from memadv.cpus import usable_cpus
from memadv.executors import ExecutorConfig, resolve_executor

SCORE_FILES = ("mem.parquet", "infl.parquet", "test_acc.parquet")


def run_estimate(out: Path, executor: str, models: int) -> float:
    """Wall seconds of one ``memadv estimate --dataset digits`` command with ``--executor executor``."""
    cmd = [sys.executable, "-m", "memadv.cli.main", "estimate", "--dataset", "digits", "--models", str(models),
           "--full-models", "0", "--executor", executor, "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def same_scores(a: Path, b: Path) -> None:
    """Raise AssertionError unless every score file of run ``a`` equals run ``b``'s, value for value."""
    for name in SCORE_FILES:
        da = pd.read_parquet(a / "scores" / name)
        db = pd.read_parquet(b / "scores" / name)
        pd.testing.assert_frame_equal(da, db, check_exact=True, obj=name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=200, help="models of the digits estimate (default 200)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each way, alternating; the minimum counts")
    args = p.parse_args()
    auto = resolve_executor(ExecutorConfig(), 2, cpu_tasks=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, usable {usable_cpus()}; "
          f"python {platform.python_version()}")
    print(f"digits estimate, {args.models} models, defaults otherwise; auto = {auto.executor}"
          + (f" with {auto.workers} workers" if auto.executor == "local" else ""))
    times: dict[str, list[float]] = {"inprocess": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for way in times:
                out = Path(tmp) / f"{way}-{r}"
                times[way].append(run_estimate(out, way, args.models))
                print(f"  {way:9s} run {r + 1}: {times[way][-1]:6.1f} s", flush=True)
        for r in range(args.repeats):
            same_scores(Path(tmp) / f"inprocess-{r}", Path(tmp) / f"auto-{r}")
    print(f"scores identical ({', '.join(SCORE_FILES)}, every value)")
    old, new = min(times["inprocess"]), min(times["auto"])
    print(f"inprocess {old:.1f} s, auto (new default) {new:.1f} s: the default is {old / new:.2f}x faster")


if __name__ == "__main__":
    main()
