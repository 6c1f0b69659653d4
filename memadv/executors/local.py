"""The executors that need no scheduler: ``inprocess`` (sequentially, in this process) and ``local``
(``workers`` processes, ``spawn`` start method so CUDA and threads are safe); both with a progress
bar, both log a failed task's traceback to ``<folder>/logs/task-<id>.err`` and go on with the others."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import traceback
from typing import Any, Callable

from memadv.executors.base import TasksFailedError, progress_bar, record_failure

def _call_logged(task: Callable[[int], Any], i: int) -> tuple[str, Any]:
    """('ok', result) or ('error', traceback text); never raises an Exception."""
    try:
        return "ok", task(i)
    except Exception:  # noqa: BLE001 - reported per task by the caller
        return "error", traceback.format_exc()


def run_inprocess(task, ids, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    with progress_bar(len(ids), desc, progress) as bar:
        for i in ids:
            status, value = _call_logged(task, i)
            if status == "ok":
                results[i] = value
            else:
                record_failure(folder, i, value, failed, logs)
                bar.set_postfix(failed=len(failed))
            bar.update(1)
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]


def run_local(task, ids, cfg, folder, desc, progress) -> list[Any]:
    results: dict[int, Any] = {}
    failed: dict[int, str] = {}
    logs: dict[int, str] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(cfg.workers, len(ids)), mp_context=ctx) as pool, \
            progress_bar(len(ids), desc, progress) as bar:
        futures = {pool.submit(_call_logged, task, i): i for i in ids}
        try:
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    status, value = fut.result()
                except Exception as e:  # the worker died (BrokenProcessPool) or the result did not unpickle
                    status, value = "error", f"{type(e).__name__}: {e} (worker process died or result not picklable)"
                if status == "ok":
                    results[i] = value
                else:
                    record_failure(folder, i, value, failed, logs)
                    bar.set_postfix(failed=len(failed))
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    if failed:
        raise TasksFailedError(desc, failed, logs, len(ids))
    return [results[i] for i in ids]
