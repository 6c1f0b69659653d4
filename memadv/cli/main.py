"""Entry point of the ``memadv`` console script."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Sequence

from memadv import __version__
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except MemadvError as e:
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"memadv: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memadv: interrupted; finished shards/epochs are kept, re-run the same command to resume",
              file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
