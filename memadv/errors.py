"""Named exceptions. Every user-facing failure is a MemadvError whose message is one line.

The CLI catches MemadvError, prints ``memadv: error: <message>`` and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Iterable


class MemadvError(Exception):
    """Base class: a problem with the user's input or files, reported in one line."""


class UnknownChoiceError(MemadvError, ValueError):
    """A name (dataset, net, method, executor) that is not one of the valid choices."""

    def __init__(self, what: str, got: object, choices: Iterable[str]):
        choices = sorted(choices)
        super().__init__(f"unknown {what} {got!r}; valid choices: {', '.join(choices)}")
        self.what, self.got, self.choices = what, got, choices


class ConfigError(MemadvError, ValueError):
    """A configuration value that is out of range or inconsistent."""


class DatasetError(MemadvError):
    """A dataset that cannot be found or read, or whose files are malformed."""


class FingerprintMismatchError(MemadvError):
    """A score or split file that belongs to another dataset (or another split of it)."""


class IncompleteRunError(MemadvError):
    """A run whose shards or stages are not all finished."""


class SchemaError(MemadvError):
    """A file whose columns, keys or shapes are not what its schema says."""


class IdxFileError(DatasetError):
    """An IDX file (the MNIST / Fashion-MNIST format) that is missing, truncated or malformed;
    the message names the file."""


class NonFiniteLossError(MemadvError):
    """A training loss became NaN or infinite (``memadv train`` and the estimator's shards)."""


class OutputRefusedError(MemadvError):
    """An output path that memadv may not write: it exists and is not this command's own output kind
    (no marker, or another kind's marker), it is a file where a folder is meant, or a name is not a
    single path component. Nothing is deleted or replaced."""


class UnsafeInputError(MemadvError):
    """A value or file refused because using it could inject or execute something: control characters
    in a value that reaches a script or command line, or a pickle that is not plain data."""


class TimeLimitTooShortError(MemadvError):
    """A requeued Slurm attempt found no new checkpoint: one epoch takes longer than the time limit."""
