"""Values that leave memadv (into a script, a shell line, a file name): checked for control
characters and path separators before they are written anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memadv.errors import OutputRefusedError, UnsafeInputError


def _control_char(text: str) -> tuple[int, str] | None:
    """(position, U+XXXX) of the first C0 (U+0000-U+001F, tab and newline included), DEL (U+007F) or C1
    (U+0080-U+009F) character of ``text``, None if it has none."""
    for i, ch in enumerate(text):
        if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            return i, f"U+{ord(ch):04X}"
    return None



def check_printable(what: str, value: Any) -> None:
    """Refuse control characters in ``value`` (a string, path, or a list/tuple/dict of them).

    The one validator for every value that may reach an sbatch script or a command line (options,
    TOML strings, paths, job and run names): a newline in ``--partition`` would otherwise become a
    line of its own in the script. Raises UnsafeInputError naming ``what``.
    """
    if isinstance(value, (str, Path)):
        bad = _control_char(str(value))
        if bad is not None:
            raise UnsafeInputError(f"{what} holds control character {bad[1]} at position {bad[0]} ({str(value)!r}); "
                                   f"values that reach a script or command line must be printable")
        # A byte that is not UTF-8 reaches Python from argv as a lone surrogate (surrogateescape); it
        # would fail only later, when a file name or a parquet string is encoded (after training).
        raw = next((i for i, ch in enumerate(str(value)) if 0xD800 <= ord(ch) <= 0xDFFF), None)
        if raw is not None:
            raise UnsafeInputError(f"{what} holds a byte that is not UTF-8 at position {raw} "
                                   f"({str(value).encode('utf-8', 'backslashreplace').decode()!r}); use UTF-8 text")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_printable(what, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_printable(what, key)
            check_printable(f"{what}.{key}", item)



def check_path_component(what: str, name: str) -> str:
    """Return ``name`` if it is one safe path component, else raise OutputRefusedError.

    A name (``train --name``, a sweep entry's ``name``) becomes a folder under ``--out``: it must be
    non-empty, not ``.`` or ``..``, hold no ``/`` or ``\\``, not start with ``-`` (it would read as an
    option where the name reaches a command line) or ``.`` (hidden; ``.sweep`` is memadv's), be at
    most 255 bytes and hold no control characters.
    """
    check_printable(what, name)
    if (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(("-", "."))
            or len(name.encode()) > 255):
        raise OutputRefusedError(f"{what} {name!r} is not a single path component (non-empty, no '/' or '\\', "
                                 f"not '.' or '..', not starting with '-' or '.', at most 255 bytes)")
    return name
