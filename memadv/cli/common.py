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


def toml_tables() -> dict[str, tuple[type, ...]]:
    """Every table a memadv ``--config`` file may hold -> the configs whose options it holds (the one
    list of them; imported here, not in memadv.config, which every config module imports)."""
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.splits.rules import SplitConfig
    from memadv.estimate.adjust import AdjustConfig
    from memadv.estimate.config import EstimateConfig
    from memadv.estimate.until_decided import DecideConfig
    from memadv.executors import ExecutorConfig
    from memadv.experiments.pipeline_config import PipelineConfig
    from memadv.estimate.aggregate import AggregateConfig
    from memadv.executors.slurm.dask_cluster import DaskConfig
    from memadv.analysis.figure_configs import figure_tables
    from memadv.experiments.status import StatusConfig
    from memadv.interop.fz import ImportFzConfig
    from memadv.interop.fz_export import ExportFzConfig

    return {"estimate": (EstimateConfig, DecideConfig), "executor": (ExecutorConfig,), "pipeline": (PipelineConfig,),
            "splits": (SplitConfig,), "train": (TrainConfig,), "objective": (ObjectiveConfig,),
            "aggregate": (AggregateConfig, AdjustConfig), "dask": (DaskConfig,), "status": (StatusConfig,),
            "import-fz": (ImportFzConfig,), "export-fz": (ExportFzConfig,), **figure_tables()}


def check_config_file(path: Path | None, reads: Sequence[str]) -> None:
    """Apply memadv.config.check_toml's one rule to ``--config``; ``reads``: the tables this command uses."""
    check_toml(path, toml_tables(), reads)


def config_from_args(cls: type[C], args: argparse.Namespace, section: str) -> C:
    return build_config(cls, args, getattr(args, "config", None), section=section)


__all__ = ["add_config_arguments", "add_config_file", "add_progress", "check_config_file", "config_from_args",
           "toml_tables", "Any"]
