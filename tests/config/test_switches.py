"""Bare-flag options (``option(switch=True)``): the flag sets the opposite of the default, its
opposite flag undoes a --config file's value, and the TOML key is the field name."""

from __future__ import annotations

import argparse

from memadv.analysis.figure_configs import ScoreFiguresConfig
from memadv.config import add_config_arguments, build_config
from memadv.experiments.status import StatusConfig


def _parse(cls: type, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_config_arguments(p, cls)
    return p.parse_args(argv)


def test_a_switch_and_its_opposite(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[status]\njson = true\ndecided = false\n")
    assert build_config(StatusConfig, _parse(StatusConfig, []), None, section="status") == StatusConfig()
    from_file = build_config(StatusConfig, _parse(StatusConfig, []), toml, section="status")
    assert from_file.json is True and from_file.decided is False
    undone = build_config(StatusConfig, _parse(StatusConfig, ["--no-json", "--decided"]), toml, section="status")
    assert undone.json is False and undone.decided is True  # the command line wins over the file
    assert build_config(StatusConfig, _parse(StatusConfig, ["--no-decided"]), None, section="status").decided is False


def test_a_flag_spelled_apart_from_its_field(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[figures-scores]\ngrid_class = "3"\nimages = false\n')
    cfg = build_config(ScoreFiguresConfig, _parse(ScoreFiguresConfig, []), toml, section="figures-scores")
    assert cfg.grid_class == "3" and cfg.images is False
    cli = build_config(ScoreFiguresConfig, _parse(ScoreFiguresConfig, ["--class", "7", "--images"]), toml,
                       section="figures-scores")
    assert cli.grid_class == "7" and cli.images is True
