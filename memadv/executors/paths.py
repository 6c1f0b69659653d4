"""The files of one executor folder (the ``folder`` of :func:`memadv.executors.run_tasks`), in one
place, as submitit's ``JobPaths`` owns a job's files::

    FOLDER/logs/task-<id>.err      the failure of a task run in process or by a local worker
    FOLDER/jobs.json               Slurm: task id -> Slurm job id, written at submission
    FOLDER/outcomes/<job id>.json  Slurm: each task's outcome as plain JSON (never a pickle)
    FOLDER/<job id>_<task>_log.*   Slurm: submitit's own logs and pickles (submitit names them)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_TASK_LOG_PREFIX, _TASK_LOG_SUFFIX = "task-", ".err"


@dataclass(frozen=True)
class ExecutorPaths:
    """The paths of the executor folder ``folder`` (nothing is created or checked)."""

    folder: Path

    def __init__(self, folder: str | Path) -> None:
        object.__setattr__(self, "folder", Path(folder))

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def task_log(self, task_id: int) -> Path:
        return self.logs / f"{_TASK_LOG_PREFIX}{task_id}{_TASK_LOG_SUFFIX}"

    def failed_task_ids(self) -> list[int]:
        """The task ids that have a failure log, sorted."""
        if not self.logs.is_dir():
            return []
        ids = []
        for log in self.logs.glob(f"{_TASK_LOG_PREFIX}*{_TASK_LOG_SUFFIX}"):
            tail = log.name[len(_TASK_LOG_PREFIX):-len(_TASK_LOG_SUFFIX)]
            if tail.isdigit():
                ids.append(int(tail))
        return sorted(ids)

    @property
    def jobs(self) -> Path:
        return self.folder / "jobs.json"

    def outcome(self, job_id: str) -> Path:
        """``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}`` of Slurm job ``job_id``."""
        return self.folder / "outcomes" / f"{job_id}.json"
