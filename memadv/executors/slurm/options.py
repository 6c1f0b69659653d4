"""``--sbatch-extra`` items -> submitit's ``slurm_additional_parameters`` (no submitit import: the
executor config validates its options with this before anything is submitted).

submitit writes ``additional_parameters`` last, over its own ``#SBATCH`` lines, so an extra item
naming a setting memadv relies on would silently replace it: ``signal=TERM@30``
loses the USR2 that requeues a timed-out task, ``time=`` desynchronises ``--timeout-min`` (and the
checkpoint bookkeeping built on it), ``cpus-per-task=`` the torch threads of each task. Those settings
are refused, naming the memadv option that sets them (:data:`OWNED_SBATCH`).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from memadv.errors import ConfigError

# sbatch long options (underscores for dashes) that memadv or submitit sets itself -> what to use instead.
OWNED_SBATCH: dict[str, str] = {
    "time": "use --timeout-min (the requeue and checkpoint bookkeeping read it)",
    "time_min": "use --timeout-min (Slurm could otherwise shorten the time limit under memadv)",
    "cpus_per_task": "use --cpus-per-task (each task's torch threads follow it)",
    "partition": "use --partition",
    "mem": "use --mem-gb",
    "gpus_per_task": "use --gpus-per-task",
    "signal": "submitit's USR2 90 s before the end is what requeues a timed-out or pre-empted task",
    "job_name": "memadv names the array after its tasks (memadv-<what>)",
    "array": "use --array-parallelism; the array's indices are memadv's task ids",
    "nodes": "each array task is one process on one node",
    "ntasks": "each array task is one process on one node",
    "ntasks_per_node": "each array task is one process on one node",
    "output": "submitit writes each task's log in the jobs folder",
    "error": "submitit writes each task's log in the jobs folder",
    "open_mode": "submitit appends to each task's log across requeues",
    "requeue": "submitit requeues timed-out and pre-empted tasks itself",
    "no_requeue": "submitit requeues timed-out and pre-empted tasks itself",
    "wrap": "memadv writes the batch script",
}
# Real sbatch options that are abbreviations of an owned one: sbatch takes them as themselves.
_NOT_ABBREVIATIONS = frozenset({"gpus"})


def owned_setting(key: str) -> str | None:
    """The owned sbatch option that ``key`` (normalised: lower case, underscores) names, or None.

    sbatch reads ``#SBATCH`` lines with getopt_long, which also accepts any unambiguous prefix of a
    long option (``--tim=5`` is ``--time=5``), so a prefix of an owned name counts as that name."""
    if key in OWNED_SBATCH:
        return key
    if key in _NOT_ABBREVIATIONS:
        return None
    return next((name for name in OWNED_SBATCH if name.startswith(key)), None)


def parse_sbatch_extra(items: Iterable[str], *, mem_gb: float | None = None) -> dict[str, Any]:
    """``["qos=high", "--constraint=a100", "#SBATCH --exclusive"]`` -> submitit additional_parameters.

    Keys use underscores (submitit turns them back into dashes); a bare flag maps to ``True``.
    Raises ConfigError (one line, naming the option to use instead) for a malformed item, for a
    setting memadv owns (:data:`OWNED_SBATCH`) and, when ``mem_gb`` is set (``--mem-gb``), for
    ``mem-per-cpu`` / ``mem-per-gpu``, which sbatch refuses beside ``--mem``.
    """
    params: dict[str, Any] = {}
    for raw in items:
        text = raw.strip()
        if text.upper().startswith("#SBATCH"):
            text = text[len("#SBATCH"):].strip()
        body = text[2:] if text.startswith("--") else text
        key, sep, value = body.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or (text.startswith("-") and not text.startswith("--")):
            raise ConfigError(f"--sbatch-extra item {raw!r} is not KEY=VALUE or a bare FLAG "
                              "(long sbatch option names only, e.g. qos=high, --constraint=a100, exclusive)")
        norm = key.replace("-", "_").lower()
        owned = owned_setting(norm)
        if owned is not None:
            raise ConfigError(f"--sbatch-extra item {raw!r} sets --{owned.replace('_', '-')}, which memadv sets "
                              f"itself: {OWNED_SBATCH[owned]}")
        if mem_gb is not None and norm in ("mem_per_cpu", "mem_per_gpu"):
            raise ConfigError(f"--sbatch-extra item {raw!r} conflicts with --mem-gb (sbatch takes one of --mem, "
                              "--mem-per-cpu, --mem-per-gpu): drop one of them")
        params[norm] = value.strip() if sep else True
    return params
