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
                             "dask.distributed cluster, or a dask_jobqueue SLURMCluster (started for the "
                             "aggregation only, after the shards)")
    parser.add_argument("--dask-partition", default=None, help="--dask-cluster slurm: partition of the dask worker "
                                                               "job (default: the cluster's default)")
    parser.add_argument("--dask-memory", default=None, help="--dask-cluster slurm: memory of the dask worker job, "
                                                            "e.g. 16GB (default 4GB)")
    parser.add_argument("--dask-walltime", default=None, help="--dask-cluster slurm: time limit of the dask worker "
                                                              "job, HH:MM:SS (default 01:00:00)")
    parser.add_argument("--dask-wait-s", type=float, default=None,
                        help="--dask-cluster slurm: fail with a one-line error when no dask worker has joined "
                             "within this many seconds (default 300)")


def dask_factory(args: argparse.Namespace) -> Any:
    """A zero-argument callable returning the ``dask_scheduler`` context of the --dask-* options
    (entered only around the aggregation). Raises ConfigError for slurm-only options given with
    another --dask-cluster, or an invalid value."""
    import functools

    from memadv.slurm.dask_cluster import dask_scheduler, slurm_cli_options

    options = slurm_cli_options(args.dask_cluster, partition=args.dask_partition, memory=args.dask_memory,
                                walltime=args.dask_walltime, wait_timeout_s=args.dask_wait_s)
    return functools.partial(dask_scheduler, args.dask_cluster, **options)


def toml_tables() -> dict[str, tuple[type, ...]]:
    """Every table a memadv ``--config`` file may hold -> the configs whose options it holds (the one
    list of them; imported here, not in memadv.config, which every config module imports)."""
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.data.splits import SplitConfig
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.config import EstimateConfig
    from memadv.estimate.until_decided import DecideConfig
    from memadv.executors import ExecutorConfig
    from memadv.experiments.pipeline import PipelineConfig

    return {"estimate": (EstimateConfig, DecideConfig), "executor": (ExecutorConfig,), "pipeline": (PipelineConfig,),
            "splits": (SplitConfig,), "train": (TrainConfig,), "objective": (ObjectiveConfig,),
            "aggregate": (AdjustConfig,)}


def check_config_file(path: Path | None, reads: Sequence[str]) -> None:
    """Apply memadv.config.check_toml's one rule to ``--config``; ``reads``: the tables this command uses."""
    check_toml(path, toml_tables(), reads)


def config_from_args(cls: type[C], args: argparse.Namespace, section: str) -> C:
    return build_config(cls, args, getattr(args, "config", None), section=section)


__all__ = ["add_config_arguments", "add_config_file", "add_progress", "add_dask", "check_config_file", "config_from_args",
           "dask_factory", "toml_tables", "Any"]
