"""What every executor shares: :class:`ExecutorConfig` (the executor options of every command),
:class:`TasksFailedError`, the progress bar and the per-task failure log."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from memadv.config import check_range, option
from memadv.cpus import usable_cpus
from memadv.files.atomic import write_text_atomic
from memadv.errors import ConfigError, MemadvError, UnknownChoiceError
from memadv.executors.paths import ExecutorPaths
from memadv.executors.slurm.options import parse_sbatch_extra

EXECUTORS = ("auto", "inprocess", "local", "slurm")


class TasksFailedError(MemadvError):
    """Some tasks raised, were cancelled or died; the message lists their ids and log files."""

    def __init__(self, desc: str, failed: dict[int, str], logs: dict[int, str], total: int):
        self.failed = dict(sorted(failed.items()))
        self.logs = logs
        ids = list(self.failed)
        shown = ", ".join(str(i) for i in ids[:20]) + (f", ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
        first = ids[0]
        log_list = ", ".join(logs[i] for i in ids[:3] if i in logs) + (" ..." if len(ids) > 3 else "")
        reason = " ".join(self.failed[first].split())[:300]
        super().__init__(f"{len(ids)} of {total} {desc} failed (ids {shown}); first: id {first}: {reason}; "
                         f"logs: {log_list or 'none'}")


class TooManyTasksError(MemadvError):
    """More tasks than one submission may hold (Slurm: MaxArraySize array tasks per job array)."""

    def __init__(self, desc: str, n_tasks: int, limit: int, hint: str = ""):
        self.n_tasks, self.limit = n_tasks, limit
        super().__init__(f"{n_tasks} {desc} to submit, but this Slurm cluster's MaxArraySize allows at most "
                         f"{limit} tasks in one job array" + (f"; {hint}" if hint else ""))


@dataclass
class ExecutorConfig:
    """Where and how the tasks of a run (model shards, sweep points) are executed."""

    executor: str = option("auto", "where tasks run: inprocess (sequential, this process), "
                           "local (worker processes on this machine), slurm (one submitit job array) or auto "
                           "(the estimator's CPU shards: local, one single-threaded worker per usable CPU, "
                           "faster than inprocess, docs/benchmarks.md; everything else, and a single task: "
                           "inprocess)", choices=EXECUTORS,
                           source="bench/default_executor.py")
    workers: int = option(2, "local executor: number of worker processes (auto: one per usable CPU)",
                          unit="processes")
    partition: str | None = option(None, "slurm: partition (sbatch --partition); default: the cluster's default")
    timeout_min: int = option(240, "slurm: time limit of each array task; a timed-out task requeues and "
                              "resumes at its next unfinished unit", unit="minutes")
    gpus_per_task: int = option(0, "slurm: GPUs per array task (sbatch --gpus-per-task); 0 = none", unit="GPUs")
    cpus_per_task: int = option(2, "slurm: CPUs per array task (sbatch --cpus-per-task)", unit="CPUs")
    mem_gb: float | None = option(None, "slurm: memory per array task (sbatch --mem); default: the "
                                  "partition's default", unit="GB")
    array_parallelism: int = option(64, "slurm: at most this many array tasks run at once (sbatch --array=...%N)",
                                    unit="tasks")
    sbatch_extra: list[str] = option([], "slurm: extra sbatch long options, each KEY=VALUE or a bare FLAG, "
                                     "e.g. --sbatch-extra qos=high constraint=a100 exclusive (in TOML "
                                     "a leading '--' or '#SBATCH --' is also accepted); what memadv sets "
                                     "itself (time, cpus-per-task, partition, mem, gpus-per-task, signal, "
                                     "job-name, array, ...) is refused, naming the option to use instead")
    max_timeouts: int = option(3, "slurm: how many times one array task may time out and requeue "
                               "before it counts as failed (pre-emptions always requeue)", unit="requeues")

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise UnknownChoiceError("executor", self.executor, EXECUTORS)
        for name in ("workers", "timeout_min", "gpus_per_task", "cpus_per_task", "array_parallelism", "max_timeouts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))):
            raise ConfigError(f"--mem-gb must be a number, got {self.mem_gb!r}")
        check_range("workers", self.workers, 1)
        check_range("timeout_min", self.timeout_min, 1)
        check_range("gpus_per_task", self.gpus_per_task, 0)
        check_range("cpus_per_task", self.cpus_per_task, 1)
        if self.mem_gb is not None:
            check_range("mem_gb", self.mem_gb, 0, lo_open=True)
        check_range("array_parallelism", self.array_parallelism, 1)
        check_range("max_timeouts", self.max_timeouts, 0)
        if self.partition is not None:
            self.partition = str(self.partition).strip() or None
        if isinstance(self.sbatch_extra, str):
            self.sbatch_extra = [self.sbatch_extra]
        self.sbatch_extra = [str(x) for x in self.sbatch_extra]
        parse_sbatch_extra(self.sbatch_extra, mem_gb=self.mem_gb)  # ConfigError: malformed or owned by memadv


def resolve_executor(cfg: ExecutorConfig, n_tasks: int, *, cpu_tasks: bool = False) -> ExecutorConfig:
    """The executor ``auto`` stands for, for ``n_tasks`` tasks (``cfg`` itself when it names one).

    ``cpu_tasks``: the caller's tasks train on the CPU and run best single-threaded side by side (the
    estimator's shards of small packed nets: 2,000 digits models took 220 s in this process on 2 cores,
    96 s as 2 one-thread workers). Then, with more than one task and more than one
    usable CPU (:func:`memadv.cpus.usable_cpus`: the affinity mask, what taskset or Slurm grant),
    ``auto`` is ``local`` with one worker per usable CPU (at most one per task); otherwise (a GPU
    device, a single task, tasks the caller has not measured) it is ``inprocess``, the old default."""
    if cfg.executor != "auto":
        return cfg
    cpus = usable_cpus()
    if cpu_tasks and cpus > 1 and n_tasks > 1:
        return dataclasses.replace(cfg, executor="local", workers=min(cpus, n_tasks))
    return dataclasses.replace(cfg, executor="inprocess")


def progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=not progress, dynamic_ncols=True)


def record_failure(folder: Path, i: int, text: str, failed: dict[int, str], logs: dict[int, str]) -> None:
    log = ExecutorPaths(folder).task_log(i)
    write_text_atomic(log, text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    failed[i] = lines[-1] if lines else "failed"
    logs[i] = str(log)
