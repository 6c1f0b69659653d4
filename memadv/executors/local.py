"""The executors that need no scheduler: ``inprocess`` (sequentially, in this process) and ``local``
(``workers`` processes, ``spawn`` start method so CUDA and threads are safe); both with a progress
bar, both log a failed task's traceback to ``<folder>/logs/task-<id>.err`` and go on with the others.
Local workers exit when their parent dies, even by SIGKILL (:func:`die_with_parent`)."""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from memadv.cpus import usable_cpus
from memadv.executors.base import TasksFailedError, progress_bar, record_failure

PR_SET_PDEATHSIG = 1    # linux/prctl.h: signal this process when its parent thread exits
PARENT_POLL_S = 1.0     # how often the watchdog thread checks that the parent is still there (seconds)


def _watch_parent(parent_pid: int) -> None:
    """Exit at once when the parent is gone: a dead parent's children are re-parented, so the
    parent pid changes. Portable fallback for PR_SET_PDEATHSIG (macOS, a missing libc)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # no cleanup handlers: nothing is left to report to
        time.sleep(PARENT_POLL_S)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: make this process exit when ``parent_pid`` dies, even by SIGKILL
    (orphaned workers of a killed ``estimate`` held about 1 GB each, forever).

    On Linux, prctl(PR_SET_PDEATHSIG, SIGKILL) through ctypes (man 2 prctl); everywhere, a daemon
    thread polling the parent pid every PARENT_POLL_S seconds."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()

def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Torch/BLAS threads of each of ``workers`` local worker processes: the CPUs this process may use
    (:func:`memadv.cpus.usable_cpus`, what taskset or a Slurm allocation grants, not the machine's
    count: a 2-CPU allocation on a 64-core node must not start 32 threads per worker) shared out,
    at least 1."""
    return max(1, (cpus if cpus is not None else usable_cpus()) // max(1, workers))


def init_worker(parent_pid: int, threads: int) -> None:
    """Initializer of every local worker: die with the parent (:func:`die_with_parent`) and use
    ``threads`` BLAS/OpenMP threads. Without the limit each of N workers starts one thread per CPU,
    N x CPUs threads on CPUs cores: measured on 2 cores with 2 workers, a Fashion-MNIST PGD-AT epoch
    of the 784-256-10 MLP took 10.8 s instead of about 1.5 s. The environment variables are set before
    the task's unpickling first imports torch, which reads them; ``torch.set_num_threads`` covers a
    torch already imported."""
    die_with_parent(parent_pid)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _call_logged(task: Callable[[int], Any], i: int) -> tuple[str, Any]:
    """('ok', result) or ('error', traceback text); never raises an Exception."""
    try:
        return "ok", task(i)
    except Exception:  # noqa: BLE001 - reported per task by the caller
        return "error", traceback.format_exc()


def _collect(i: int, status: str, value: Any, folder, results: dict[int, Any], failed: dict[int, str],
             logs: dict[int, str], bar) -> None:
    """Record task ``i``'s outcome (``_call_logged``'s pair) and advance the progress bar."""
    if status == "ok":
        results[i] = value
    else:
        record_failure(folder, i, value, failed, logs)
        bar.set_postfix(failed=len(failed))
    bar.update(1)


def run_inprocess(task, ids, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    with progress_bar(len(ids), desc, progress) as bar:
        for i in ids:
            _collect(i, *_call_logged(task, i), folder, results, failed, logs, bar)
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]


def run_local(task, ids, cfg, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(cfg.workers, len(ids)), mp_context=ctx,
                                initializer=init_worker,
                                initargs=(os.getpid(), worker_threads(cfg.workers))) as pool, \
            progress_bar(len(ids), desc, progress) as bar:
        futures = {pool.submit(_call_logged, task, i): i for i in ids}
        try:
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    status, value = fut.result()
                except Exception as e:  # the worker died (BrokenProcessPool) or the result did not unpickle
                    status, value = "error", f"{type(e).__name__}: {e} (worker process died or result not picklable)"
                _collect(i, status, value, folder, results, failed, logs, bar)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]
