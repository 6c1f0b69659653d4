"""``--sbatch-extra`` items -> submitit's ``slurm_additional_parameters`` (no submitit import: the
executor config validates its options with this before anything is submitted)."""

from __future__ import annotations

import re
from typing import Any, Iterable

from memadv.errors import ConfigError

# #SBATCH options that submitit sets itself for a job array; sbatch_extra must not change them.
_RESERVED_SBATCH = frozenset({"array", "output", "error", "open_mode", "o", "e", "a"})


def parse_sbatch_extra(items: Iterable[str]) -> dict[str, Any]:
    """``["qos=high", "--constraint=a100", "#SBATCH --exclusive"]`` -> submitit additional_parameters.

    Keys use underscores (submitit turns them back into dashes); a bare flag maps to ``True``.
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
        if norm in _RESERVED_SBATCH:
            raise ConfigError(f"--sbatch-extra item {raw!r} sets {key!r}, which submitit manages itself")
        params[norm] = value.strip() if sep else True
    return params
