"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

from memadv.config import add_config_arguments, build_config

C = TypeVar("C")


def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="TOML file with option values (top-level keys or a table named after the "
                             "sub-command); the command line wins")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_dask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dask-cluster", default="threads", choices=("threads", "local", "slurm"),
                        help="where aggregation runs: dask's threads in this process (default), a local "
                             "dask.distributed cluster, or a dask_jobqueue SLURMCluster")


def config_from_args(cls: type[C], args: argparse.Namespace, section: str) -> C:
    return build_config(cls, args, getattr(args, "config", None), section=section)


__all__ = ["add_config_arguments", "add_config_file", "add_progress", "add_dask", "config_from_args", "Any"]
