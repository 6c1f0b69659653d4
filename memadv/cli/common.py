"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence, TypeVar

from memadv.config import add_config_arguments, build_config, check_toml

C = TypeVar("C")


def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="TOML file with option values (top-level keys or a table named after the "
                             "sub-command); the command line wins. Unknown tables or keys and values of the "
                             "wrong type are refused")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_dask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dask-cluster", default="threads", choices=("threads", "local", "slurm"),
                        help="where aggregation runs: dask's threads in this process (default), a local "
                             "dask.distributed cluster, or a dask_jobqueue SLURMCluster")


def toml_tables() -> dict[str, tuple[type, ...]]:
    """Every table a memadv ``--config`` file may hold -> the configs whose options it holds (the one
    list of them; imported here, not in memadv.config, which every config module imports)."""
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.data.splits import SplitConfig
    from memadv.estimate.config import EstimateConfig
    from memadv.executors import ExecutorConfig
    from memadv.experiments.pipeline import PipelineConfig

    return {"estimate": (EstimateConfig,), "executor": (ExecutorConfig,), "pipeline": (PipelineConfig,),
            "splits": (SplitConfig,), "train": (TrainConfig,), "objective": (ObjectiveConfig,)}


def check_config_file(path: Path | None, reads: Sequence[str]) -> None:
    """Apply memadv.config.check_toml's one rule to ``--config``; ``reads``: the tables this command uses."""
    check_toml(path, toml_tables(), reads)


def config_from_args(cls: type[C], args: argparse.Namespace, section: str) -> C:
    return build_config(cls, args, getattr(args, "config", None), section=section)


__all__ = ["add_config_arguments", "add_config_file", "add_progress", "add_dask", "check_config_file", "config_from_args",
           "toml_tables", "Any"]
