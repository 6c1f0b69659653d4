"""Issue 8 item 4: one per-dataset default convention, with no behaviour change.

``old_defaults.json`` was made by running ``dump_defaults.py`` against main's code before the rework
(``git archive main memadv`` into a temporary folder); here the same function runs against this code."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def _dump_module() -> Any:
    spec = importlib.util.spec_from_file_location("dump_defaults", HERE / "dump_defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contains(old: Any, new: Any, where: str = "") -> list[str]:
    """Differences of ``new`` from ``old``; keys that only ``new`` has (options added since) are allowed."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k, v in old.items() for d in
                (_contains(v, new[k], f"{where}.{k}") if k in new else [f"{where}.{k} missing"])]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _contains(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: old {old!r}, new {new!r}"]


def test_every_config_resolves_as_before_for_every_dataset():
    old = json.loads((HERE / "old_defaults.json").read_text())
    new = json.loads(json.dumps(_dump_module().resolve_all(), default=str, sort_keys=True))
    assert _contains(old, new) == []


def test_every_table_covers_exactly_the_registered_datasets():
    """One list of data sets (memadv.data.registry.DATASETS): every per-dataset table has a row for each."""
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.data.registry import DATASETS, OWN_DATASETS
    from memadv.estimate.config import EstimateConfig

    seen = 0
    for cls in (EstimateConfig, TrainConfig, ObjectiveConfig):
        for f in dataclasses.fields(cls):
            table = f.metadata.get("per_dataset")
            if table is not None:
                seen += 1
                # a user's own data set takes the row of the built-in set of its image shape (defaults_like)
                assert set(table) == set(DATASETS) - set(OWN_DATASETS), (cls.__name__, f.name)
                assert all(f.name in row for row in table.values()), (cls.__name__, f.name)
    assert seen >= 10


@pytest.mark.parametrize("command", ["estimate", "train", "pipeline"])
def test_help_shows_each_per_dataset_default(command):
    """--help prints the resolved value per data set, never "(default: None)" for such an option."""
    from memadv.cli.main import build_parser
    from memadv.data.registry import DATASETS, OWN_DATASETS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = " ".join(sub.format_help().split())
    e, t, o = _configs()
    classes = {"estimate": (e,), "pipeline": (e,), "train": (t, o)}[command]
    per_dataset = {f.name: f for cls in classes for f in dataclasses.fields(cls) if f.metadata.get("per_dataset")}
    shown = 0
    for action in sub._actions:
        f = per_dataset.get(action.dest)
        if f is None or action.help is None:
            continue
        shown += 1
        help_text = action.help
        assert "default per data set:" in help_text and "default: None" not in help_text, help_text
        assert all(d in help_text for d in DATASETS if d not in OWN_DATASETS), help_text
    assert shown >= 1 and "(default per data set:" in text


def _configs() -> tuple[type, ...]:
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.estimate.config import EstimateConfig
    return EstimateConfig, TrainConfig, ObjectiveConfig


def test_a_built_config_is_complete_and_rebuilding_it_changes_nothing():
    from memadv.bat.objective_config import ObjectiveConfig
    from memadv.bat.train_config import TrainConfig
    from memadv.data.registry import DATASETS, OWN_DATASETS
    from memadv.estimate.config import EstimateConfig

    for d in [d for d in DATASETS if d not in OWN_DATASETS]:  # own data: tests/data/test_own_data_stages.py
        for cls in (EstimateConfig, TrainConfig):
            cfg = cls(dataset=d)
            per_dataset = [f.name for f in dataclasses.fields(cls) if f.metadata.get("per_dataset")]
            table = next(f.metadata["per_dataset"] for f in dataclasses.fields(cls) if f.metadata.get("per_dataset"))
            assert all(getattr(cfg, n) == table[d][n] for n in per_dataset), (cls.__name__, d)
            assert cls(**dataclasses.asdict(cfg)) == cfg
        o = ObjectiveConfig().resolved(d)
        assert o.eps is not None and o.resolved(d) == o
