"""``memadv estimate``: write the spec, run the unfinished shards on an executor, aggregate."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

from memadv.data.own_images import write_example_paths
from memadv.scores.schema import Scores, scores_problem
from memadv.estimate.aggregate import aggregate
from memadv.estimate.checkpoints import read_progress
from memadv.estimate.shard_locks import is_locked
from memadv.estimate.config import EstimateConfig
from memadv.estimate.full_models import run_full_models
from memadv.estimate.shards import (ShardTask, dataset_for, read_shard, read_spec, shard_problem,
                                    write_or_check_spec)
from memadv.executors import (ExecutorConfig, TooManyTasksError, max_tasks, resolve_executor, run_tasks, task_states,
                              task_threads)
from memadv.layout import RunLayout


def jobs_folder(run_dir: Path) -> Path:
    return RunLayout(run_dir).estimate_jobs


def estimate(cfg: EstimateConfig, run_dir: str | Path, executor: ExecutorConfig | None = None, *,
             progress: bool = True, scheduler: Any = None,
             aggregation_scheduler: Callable[[], ContextManager[Any]] | None = None) -> Scores:
    """Write or check the spec, train the missing shards on ``executor``, aggregate, train the full-data models.

    Everything of ``cfg`` outside EstimateConfig.IDENTITY (device, data_root, packing,
    channels_last, cross_class_threshold, full_models) is this call's, also on a re-run.
    ``aggregation_scheduler`` (e.g. ``functools.partial(dask_scheduler, "slurm", ...)``) is entered
    only around the aggregation, after the shards: a dask cluster on Slurm never queues ahead of, or
    idles behind, the shard jobs. Raises ConfigError when the run folder holds another estimate,
    TasksFailedError when shards fail.
    """
    executor = executor or ExecutorConfig()
    run_dir = Path(run_dir)
    dataset = dataset_for(cfg, run_dir=run_dir)  # fails before anything is written if the data is missing or malformed
    limit = max_tasks(executor)
    if not RunLayout(run_dir).spec.exists():  # before the spec: a new run may still pick another --models-per-shard
        _refuse_too_many_shards(cfg, cfg.n_shards, limit)
    spec = write_or_check_spec(run_dir, cfg, dataset)
    if dataset.content:  # a user's own data set: decoded once, into the run folder, for every later task
        dataset = dataset_for(cfg, spec, run_dir)
        write_example_paths(RunLayout(run_dir).example_paths, dataset)
    # a truncated or unreadable shard file is not finished: it is trained again (and replaced)
    todo = [s for s in range(cfg.n_shards) if shard_problem(run_dir, s, spec) is not None]
    # Shards another live process is training go last: this one trains the others first and then
    # only waits for those (ShardTask waits for a locked shard rather than train it twice).
    todo.sort(key=lambda s: is_locked(run_dir, s))
    if len(todo) < cfg.n_shards:  # a resumed run says what it keeps (the shard files are checked above)
        print(f"{run_dir}: {cfg.n_shards - len(todo)} of {cfg.n_shards} shards already finished, kept; "
              f"{len(todo)} to train", flush=True)
    _refuse_too_many_shards(cfg, len(todo), limit)
    # auto: one single-threaded worker per usable CPU for CPU shards (bench/default_executor.py)
    executor = resolve_executor(executor, len(todo), cpu_tasks=cfg.on_cpu)
    # Torch threads per shard: the CPUs the executor gives each task (None: leave this process as it is).
    threads = task_threads(executor)
    run_tasks(ShardTask(run_dir, threads=threads, runtime=cfg.runtime()), todo, executor, jobs_folder(run_dir),
              desc="shards", progress=progress)
    with (aggregation_scheduler or contextlib.nullcontext)():
        scores = aggregate(run_dir, scheduler=scheduler, cross_class_threshold=cfg.cross_class_threshold,
                           data_root=cfg.data_root)
    run_full_models(run_dir, cfg.full_models, executor, progress=progress,
                    runtime=cfg.runtime())  # ERM on all of D (the typical-test rule)
    return scores


def _refuse_too_many_shards(cfg: EstimateConfig, n: int, limit: int | None) -> None:
    """TooManyTasksError naming --models-per-shard when ``n`` shards exceed one job array's ``limit``
    (Slurm's MaxArraySize): sbatch's own refusal names neither."""
    if limit is not None and n > limit:
        fits = -(-cfg.models // limit)  # models per shard that make at most `limit` shards
        raise TooManyTasksError("shards", n, limit, f"raise --models-per-shard to at least {fits} "
                                f"(now {cfg.models_per_shard}) or lower --models")


def estimate_status(run_dir: str | Path) -> dict[str, Any]:
    """Shards done / running / failed / damaged, epochs done of the shards with an epoch checkpoint
    (``epochs``: {shard: {"done", "total"}}; ``interrupted``: those no live process is training),
    and an ETA from the finished shards' training time.

    What is on disk decides: a shard is done only when its file reads back as a shard of this run;
    a file that does not (truncated, unreadable, foreign) is ``damaged`` (shard -> reason; re-running
    ``memadv estimate`` retrains it); a shard is failed when Slurm says so or when the in-process /
    local executors left its failure log (``estimate/jobs/logs/task-<id>.err``).
    """
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    n = spec["n_shards"]
    problems = {s: shard_problem(run_dir, s, spec) for s in range(n)}
    done = [s for s, p in problems.items() if p is None]
    damaged = {s: p for s, p in problems.items() if p not in (None, "missing")}
    states = task_states(jobs_folder(run_dir))
    todo = [s for s in range(n) if problems[s] is not None]
    # running: the executor says so, or a live process holds the shard's lock (the in-process and
    # local executors record no per-task state while a task runs)
    locked = {s for s in todo if is_locked(run_dir, s)}
    running = [s for s in todo if states.get(s) == "running" or s in locked]
    failed = [s for s in todo if states.get(s) == "failed" and s not in damaged]
    eta = None  # none for a run nothing is working on (killed, stopped): it would never arrive
    if done and todo and (running or any(states.get(s) == "other" for s in todo)):  # other: queued on Slurm
        per_shard = float(np.median([read_shard(RunLayout(run_dir).shard(s), spec["n_train"], spec["n_test"])["seconds"].sum()
                                     for s in done[-5:]]))
        parallel = max(1, len(running))
        eta = per_shard * len(todo) / parallel
    scores = RunLayout(run_dir).mem
    # "written" only when the score files read back: a 0-byte or half-written one is no result
    problem = scores_problem(run_dir)
    scores_state = "written" if problem is None else "not yet" if problem == "missing" else (
        f"damaged ({problem}); `memadv aggregate {run_dir}` rebuilds them")
    # Epochs done of the shards in training (their checkpoints' progress files): {shard: {"done", "total"}}
    in_training = {s: p for s in todo if (p := read_progress(run_dir, s)) is not None}
    # ... of which no live process holds the lock: killed or stopped, resuming at the next run
    interrupted = sorted(s for s in in_training if s not in locked)
    return {"epochs": in_training, "interrupted": interrupted, "run": str(run_dir), "dataset": spec["dataset"], "models": spec["config"]["models"],
            "shards": n, "done": len(done), "running": running, "failed": failed, "damaged": damaged,
            "pending": len(todo) - len(running) - len(failed) - len([s for s in damaged if s not in running]),
            "eta_seconds": eta, "scores": scores_state == "written", "scores_state": scores_state,
            "scores_age_seconds": time.time() - scores.stat().st_mtime if scores.exists() else None}
