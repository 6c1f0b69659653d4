"""The dask scheduler that aggregation runs on: threads (default), a local dask.distributed cluster, or
dask workers started as Slurm jobs (dask_jobqueue.SLURMCluster).

    with dask_scheduler("threads"):                 # nothing to start; dask's threaded scheduler
        scores = aggregate(...)
    with dask_scheduler("local", workers=4):        # dask.distributed.LocalCluster, 4 processes
        ...
    with dask_scheduler("slurm", partition="cpu", cores=8, memory="32GB", walltime="02:00:00", jobs=4):
        ...

Inside the ``with`` block every ``dask.compute`` uses that scheduler. The context yields the
``distributed.Client`` (``local``, ``slurm``) or ``None`` (``threads``). ``local`` and ``slurm`` need
the optional extra: ``pip install memadv[cluster]`` (dask.distributed and dask-jobqueue).

Options per kind (anything else is a ConfigError):

``threads``  workers (int, default: one per core)
``local``    workers (2), threads_per_worker (1), memory_limit ("auto": RAM / workers), processes (True),
             dashboard (False: no dashboard web server)
``slurm``    partition (cluster default), cores (2, per job), memory ("4GB", per job), walltime
             ("01:00:00"), jobs (1: Slurm jobs, each one dask worker process per ``processes``),
             processes (1), account (None), job_extra (list of extra "#SBATCH" options, e.g.
             ["--qos=high"]), log_directory (None: Slurm's default), wait_timeout_s (300: wait this
             long for the first worker; 0 = don't wait)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from memadv.config import check_range
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError

DASK_KINDS = ("threads", "local", "slurm")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "threads": {"workers": None},
    "local": {"workers": 2, "threads_per_worker": 1, "memory_limit": "auto", "processes": True, "dashboard": False},
    "slurm": {"partition": None, "cores": 2, "memory": "4GB", "walltime": "01:00:00", "jobs": 1, "processes": 1,
              "account": None, "job_extra": [], "log_directory": None, "wait_timeout_s": 300.0},
}


class MissingDependencyError(MemadvError, ImportError):
    """An optional package (an extra of memadv) is not installed."""


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError("this dask scheduler needs dask.distributed, which is not installed; "
                                     "pip install memadv[cluster]") from None
    return distributed


def _import_jobqueue():
    try:
        import dask_jobqueue
    except ImportError:
        raise MissingDependencyError("--dask-cluster slurm needs dask-jobqueue, which is not installed; "
                                     "pip install memadv[cluster]") from None
    return dask_jobqueue


def _options(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    if kind not in DASK_KINDS:
        raise UnknownChoiceError("dask scheduler", kind, DASK_KINDS)
    defaults = _DEFAULTS[kind]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for dask scheduler {kind!r}; "
                          f"valid: {', '.join(sorted(defaults))}")
    opts = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    for name in ("workers", "threads_per_worker", "cores", "jobs", "processes"):
        if opts.get(name) is not None:
            check_range(name, opts[name], 1)
    if kind == "slurm":
        check_range("wait_timeout_s", float(opts["wait_timeout_s"]), 0)
        if isinstance(opts["job_extra"], str):
            opts["job_extra"] = [opts["job_extra"]]
    return opts


def _slurm_cluster_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    job_extra = [x.strip() if x.strip().startswith("-") else f"--{x.strip()}" for x in opts["job_extra"]]
    kwargs: dict[str, Any] = dict(cores=int(opts["cores"]), memory=str(opts["memory"]), walltime=str(opts["walltime"]),
                                  processes=int(opts["processes"]), job_extra_directives=job_extra,
                                  scheduler_options={"dashboard_address": None})
    if opts["partition"]:
        kwargs["queue"] = opts["partition"]
    if opts["account"]:
        kwargs["account"] = opts["account"]
    if opts["log_directory"]:
        kwargs["log_directory"] = str(opts["log_directory"])
    return kwargs


@contextlib.contextmanager
def dask_scheduler(kind: str = "threads", **options: Any) -> Iterator[Any]:
    """Use the dask scheduler ``kind`` inside the block; see the module docstring for ``options``."""
    import dask

    opts = _options(kind, options)
    if kind == "threads":
        settings: dict[str, Any] = {"scheduler": "threads"}
        if opts["workers"] is not None:
            settings["num_workers"] = int(opts["workers"])
        with dask.config.set(settings):
            yield None
        return

    distributed = _import_distributed()
    if kind == "local":
        cluster = distributed.LocalCluster(
            n_workers=int(opts["workers"]), threads_per_worker=int(opts["threads_per_worker"]),
            processes=bool(opts["processes"]), memory_limit=opts["memory_limit"],
            dashboard_address=":0" if opts["dashboard"] else None)
        with cluster, distributed.Client(cluster) as client:
            yield client
        return

    jobqueue = _import_jobqueue()
    try:
        cluster = jobqueue.SLURMCluster(**_slurm_cluster_kwargs(opts))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"dask SLURMCluster: {e}") from None
    with cluster, distributed.Client(cluster) as client:
        cluster.scale(jobs=int(opts["jobs"]))
        if float(opts["wait_timeout_s"]) > 0:
            try:
                client.wait_for_workers(1, timeout=float(opts["wait_timeout_s"]))
            except TimeoutError:
                raise MemadvError(f"no dask worker joined within {opts['wait_timeout_s']} s; the Slurm jobs may be "
                                  "pending (squeue) or failing (see their logs)") from None
        yield client


def slurm_job_script(**options: Any) -> str:
    """The sbatch script SLURMCluster would submit for ``options`` (as for kind ``slurm``); nothing starts."""
    opts = _options("slurm", options)
    jobqueue = _import_jobqueue()
    with jobqueue.SLURMCluster(**_slurm_cluster_kwargs(opts)) as cluster:
        return cluster.job_script()


__all__ = ["DASK_KINDS", "MissingDependencyError", "dask_scheduler", "slurm_job_script"]
