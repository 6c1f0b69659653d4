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
             ["--qos=high"]), log_directory (None: Slurm's default), wait_timeout_s (300: fail with
             DaskWorkerTimeoutError when no worker joined within this long; must be > 0)

On the command line (``estimate``, ``aggregate``) and in TOML (table ``[dask]``): the fields of
:class:`DaskConfig` (--dask-cluster, --dask-partition, --dask-memory, --dask-walltime, --dask-wait-s). ``estimate`` enters the scheduler only around the
aggregation, after the shards, so the worker job never holds a node while shards wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from memadv.config import check_range, option
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError

DASK_KINDS = ("threads", "local", "slurm")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "threads": {"workers": None},
    "local": {"workers": 2, "threads_per_worker": 1, "memory_limit": "auto", "processes": True, "dashboard": False},
    "slurm": {"partition": None, "cores": 2, "memory": "4GB", "walltime": "01:00:00", "jobs": 1, "processes": 1,
              "account": None, "job_extra": [], "log_directory": None, "wait_timeout_s": 300.0},
}


class DaskWorkerTimeoutError(MemadvError, TimeoutError):
    """No dask worker joined the Slurm dask cluster within --dask-wait-s."""


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
        # > 0: without a bound, a worker that never arrives (a job stuck pending) hangs the command forever
        check_range("dask-wait-s", float(opts["wait_timeout_s"]), 0, lo_open=True)
        if not _WALLTIME.match(str(opts["walltime"])):
            raise ConfigError(f"--dask-walltime must be HH:MM:SS or D-HH:MM:SS, got {opts['walltime']!r}")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", str(opts["memory"])):
            raise ConfigError(f"--dask-memory must be a size such as 4GB or 512MB, got {opts['memory']!r}")
        if isinstance(opts["job_extra"], str):
            opts["job_extra"] = [opts["job_extra"]]
    return opts


_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
CLI_SLURM_OPTIONS = {"partition": "--dask-partition", "memory": "--dask-memory", "walltime": "--dask-walltime",
                     "wait_timeout_s": "--dask-wait-s"}


def slurm_cli_options(kind: str, **given: Any) -> dict[str, Any]:
    """The options of ``dask_scheduler(kind)`` from the command line's --dask-* values (None: not
    given). Raises ConfigError when one is given with a kind other than ``slurm``, or is invalid."""
    given = {k: v for k, v in given.items() if v is not None}
    if kind != "slurm" and given:
        raise ConfigError(f"{', '.join(CLI_SLURM_OPTIONS[k] for k in given)} only apply to --dask-cluster slurm "
                          f"(got --dask-cluster {kind})")
    return _options(kind, given) if kind == "slurm" else {}


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


# Below this ``ulimit -n`` a 2-worker LocalCluster does not start (measured on the 2-core dev machine:
# 16 hangs forever inside distributed's startup, psutil failing in a thread; 32 fails with EMFILE,
# which the CLI reports in one line; 64 works). Refusing up front bounds the wait.
LOCAL_CLUSTER_MIN_OPEN_FILES = 64


def _check_open_files_for_local_cluster() -> None:
    """Raise OSError(EMFILE) (one line in the CLI) when ``ulimit -n`` is below the LocalCluster floor."""
    import errno
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < LOCAL_CLUSTER_MIN_OPEN_FILES:
        raise OSError(errno.EMFILE, f"a local dask cluster needs ulimit -n >= {LOCAL_CLUSTER_MIN_OPEN_FILES}")


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
        _check_open_files_for_local_cluster()
        # A worker that cannot start (too many open files, no memory) is reported once, by the
        # exception the CLI turns into one line, not by dask's and asyncio's logged tracebacks
        # (190 lines under ulimit -n 32).
        asyncio_log = logging.getLogger("asyncio")
        level = asyncio_log.level
        asyncio_log.setLevel(logging.CRITICAL)
        try:
            cluster = distributed.LocalCluster(
                n_workers=int(opts["workers"]), threads_per_worker=int(opts["threads_per_worker"]),
                processes=bool(opts["processes"]), memory_limit=opts["memory_limit"],
                dashboard_address=":0" if opts["dashboard"] else None, silence_logs=logging.CRITICAL)
            with cluster, distributed.Client(cluster) as client:
                yield client
        finally:
            asyncio_log.setLevel(level)
        return

    jobqueue = _import_jobqueue()
    try:
        cluster = jobqueue.SLURMCluster(**_slurm_cluster_kwargs(opts))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"dask SLURMCluster: {e}") from None
    with cluster, distributed.Client(cluster) as client:
        cluster.scale(jobs=int(opts["jobs"]))
        try:
            client.wait_for_workers(1, timeout=float(opts["wait_timeout_s"]))
        except (TimeoutError, asyncio.TimeoutError):
            raise DaskWorkerTimeoutError(
                f"no dask worker joined within {opts['wait_timeout_s']:g} s (--dask-wait-s); the Slurm job may be "
                "pending (squeue: --dask-partition, --dask-memory, --dask-walltime) or failing (its log)") from None
        yield client


def slurm_job_script(**options: Any) -> str:
    """The sbatch script SLURMCluster would submit for ``options`` (as for kind ``slurm``); nothing starts."""
    opts = _options("slurm", options)
    jobqueue = _import_jobqueue()
    with jobqueue.SLURMCluster(**_slurm_cluster_kwargs(opts)) as cluster:
        return cluster.job_script()


__all__ = ["DASK_KINDS", "DaskWorkerTimeoutError", "MissingDependencyError", "slurm_cli_options", "dask_scheduler", "slurm_job_script"]


@dataclass
class DaskConfig:
    """Where aggregation runs: the ``--dask-*`` options of ``estimate`` and ``aggregate``."""

    dask_cluster: str = option("threads", "where aggregation runs: dask's threads in this process, a local "
                                          "dask.distributed cluster, or a dask_jobqueue SLURMCluster (started for "
                                          "the aggregation only, after the shards)", choices=DASK_KINDS)
    dask_partition: str | None = option(None, "--dask-cluster slurm: partition of the dask worker job "
                                              "(default: the cluster's default)")
    dask_memory: str | None = option(None, "--dask-cluster slurm: memory of the dask worker job, e.g. 16GB "
                                           "(default 4GB)")
    dask_walltime: str | None = option(None, "--dask-cluster slurm: time limit of the dask worker job, HH:MM:SS "
                                             "(default 01:00:00)")
    dask_wait_s: float | None = option(None, "--dask-cluster slurm: fail with a one-line error when no dask worker "
                                             "has joined within this many seconds (default 300)", unit="seconds")

    def __post_init__(self) -> None:
        if self.dask_cluster not in DASK_KINDS:
            raise UnknownChoiceError("dask-cluster", self.dask_cluster, DASK_KINDS)
        self.scheduler_options()  # refuses slurm-only options with another kind, or an invalid value

    def scheduler_options(self) -> dict[str, Any]:
        """The options of :func:`dask_scheduler` these fields give (:func:`slurm_cli_options`)."""
        return slurm_cli_options(self.dask_cluster, partition=self.dask_partition, memory=self.dask_memory,
                                 walltime=self.dask_walltime, wait_timeout_s=self.dask_wait_s)

    def scheduler(self) -> Callable[[], Any]:
        """A zero-argument callable returning the :func:`dask_scheduler` context (entered only around
        the aggregation)."""
        return functools.partial(dask_scheduler, self.dask_cluster, **self.scheduler_options())
