"""Which job am I: the one place that reads the scheduler's environment of the running process
(as submitit's ``JobEnvironment``). Outside Slurm every answer is "no job"."""

from __future__ import annotations

import os


def slurm_task() -> str | None:
    """This process's Slurm array task ("job_task"), or its job id, or None outside Slurm."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return None if job is None else (f"{job}_{task}" if task is not None else job)


def slurm_restart() -> int:
    """This process's ``SLURM_RESTART_COUNT``: how often Slurm requeued its job (0 outside Slurm)."""
    value = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(value) if value.isdigit() else 0
