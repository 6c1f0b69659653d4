"""Entry point of the ``memadv`` console script."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn, Sequence

from memadv import __version__
from memadv.safe_values import check_printable
from memadv.errors import MemadvError

# sub-command -> module in memadv.cli with ``register(subparsers)``.
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("estimate", "memadv.cli.estimate"),
    ("aggregate", "memadv.cli.aggregate"),
    ("status", "memadv.cli.status"),
    ("splits", "memadv.cli.splits"),
    ("import-fz", "memadv.cli.import_fz"),
    ("export-fz", "memadv.cli.export_fz"),
    ("train", "memadv.cli.train"),
    ("figures", "memadv.cli.figures"),
    ("pipeline", "memadv.cli.pipeline"),
)


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors in one line (no usage dump), exit status 2, as for every other bad input."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="memadv",
        description="Memorization scores, atypical/typical splits and benign adversarial training "
                    "(Feldman & Zhang subset-sampling estimator; BAT).",
    )
    parser.add_argument("--version", action="version", version=f"memadv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


# OSErrors that are the machine's or the user's (a full disk, a read-only or unwritable folder, a
# file where a folder is meant), not memadv's bugs: reported in one line like any bad input.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR,
                                errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOENT, errno.EIO,
                                errno.EFBIG, errno.ELOOP})
# torch.save reports a full disk as a RuntimeError from its zip writer ("... unexpected pos N vs M").
TORCH_WRITE_FAILURE = "unexpected pos"
# What a process killed by SIGPIPE returns in a shell (128 + 13): ``memadv status | head`` ends as
# ``cat``, ``ls`` or ``grep`` do, without a message.
BROKEN_PIPE_EXIT = 128 + 13


# Out of the file descriptors ``ulimit -n`` allows, per process (EMFILE) or system-wide (ENFILE).
OPEN_FILES_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
# How torch reports memory it could not get (torch.OutOfMemoryError is the CUDA one; the CPU allocator
# raises a plain RuntimeError with this text).
TORCH_OOM_TEXTS = ("DefaultCPUAllocator: can't allocate memory", "CUDA out of memory", "out of memory")


def machine_failure(e: BaseException) -> str | None:
    """The one-line message for the machine running out of something (memory, open files), looked
    for in ``e`` and the exceptions it was raised from or while handling (dask's "Nanny failed to
    start." hides the EMFILE that caused it); None when it is not one."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, MemoryError) or (isinstance(x, RuntimeError)
                                          and any(t in str(x) for t in TORCH_OOM_TEXTS)):
            last = (str(x).strip().splitlines() or [type(x).__name__])[0][:200]
            return (f"out of memory ({last}); use a smaller --batch-size or --models-per-shard, fewer workers, "
                    f"or a machine with more memory")
        if isinstance(x, OSError) and x.errno in OPEN_FILES_ERRNOS:
            try:
                import resource
                limit = f"ulimit -n is {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
            except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
                limit = "see ulimit -n"
            return (f"too many open files ({limit}); raise the limit (e.g. ulimit -n 4096) or use fewer "
                    f"workers")
        todo += [x.__cause__, None if x.__suppress_context__ else x.__context__]
    return None


def error_message(e: BaseException) -> str | None:
    """The one-line message for an exception that is the user's or the machine's, None for a bug
    (which keeps its traceback). The one place that maps exceptions to messages."""
    machine = machine_failure(e)
    if machine is not None:
        return machine
    if isinstance(e, MemadvError):
        return str(e)
    if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
        where = " -> ".join(repr(str(f)) for f in (e.filename, e.filename2) if f is not None)
        return f"{where + ': ' if where else ''}{e.strerror or e}"
    if isinstance(e, RuntimeError) and TORCH_WRITE_FAILURE in str(e):
        return f"a file could not be written completely (is the disk full?): {str(e).splitlines()[-1]}"
    return None


def _quiet_broken_pipe() -> int:
    # Python flushes stdout at exit and would report the broken pipe again: point it at /dev/null.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests, embedding)
        pass
    return BROKEN_PIPE_EXIT


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for key, value in vars(args).items():  # paths and names too: they reach sbatch scripts and logs
            if key not in ("func", "module"):
                check_printable(f"--{key.replace('_', '-')}", value)
        result = args.func(args)
        sys.stdout.flush()  # a broken pipe shows here, while it can still be handled
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as e:
        msg = error_message(e)
        if msg is None:
            raise
        print(f"memadv: error: {' '.join(msg.split())}", file=sys.stderr)  # one line, whatever it held
        return 2
    except KeyboardInterrupt:
        print("memadv: interrupted; finished shards/epochs are kept, re-run the same command to resume",
              file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
