"""Reading torch files (checkpoints) without unpickling code: ``torch.load(weights_only=True)``, with
a one-line reason when it refuses or fails.

torch's own refusal is about 1,000 characters of advice on how to load the file anyway (including
with ``weights_only=False``, which would run the code) and raw terminal colour codes;
memadv says in one line what the file holds and that it is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from memadv.errors import SchemaError

# "WeightsUnpickler error: Unsupported global: GLOBAL __main__.P was not an allowed global ..."
_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour / style codes
MAX_REASON = 200  # characters of a failure's first line that reach the message


def load_reason(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line of at most about MAX_REASON characters."""
    text = _ANSI.sub("", str(e))
    if "Weights only load failed" in text:
        name = _GLOBAL.search(text)
        what = f"a Python object ({name.group(1)})" if name else "Python objects"
        return (f"it holds {what} beyond tensors, numbers and strings; making it would mean unpickling code, "
                f"so it is refused")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first[:MAX_REASON]}" if first else type(e).__name__


def load_weights_only(path: str | Path) -> Any:
    """The contents of the torch file ``path`` on the CPU, loaded with ``weights_only=True`` (tensors,
    numbers, strings, containers; never code). Raises :class:`SchemaError` with :func:`load_reason`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated, foreign or unsafe file: one reason, one line
        raise SchemaError(load_reason(e)) from None
