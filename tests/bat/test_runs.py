"""The files of a training run: checkpoints are read without unpickling code."""

from __future__ import annotations

import collections

import pytest
import torch

from memadv.bat.runs import load_checkpoint, save_checkpoint
from memadv.errors import MemadvError


class NotAllowed:
    """Any class: unpickling it would import and run code named by the file."""


def test_checkpoint_round_trip_with_rng_states(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": {"torch": torch.get_rng_state(),
             "python": (3, tuple(range(5)), None), "numpy": ["MT19937", torch.arange(4), 1, 0, 0.0]},
             "metrics": [{"epoch": 1, "lr": 0.1}], "best": {"adv": (0.5, 1)},
             "milestones": collections.Counter({15: 1, 23: 1})}
    save_checkpoint(tmp_path / "last.pt", state)
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["rng"]["python"] == state["rng"]["python"] and back["milestones"] == state["milestones"]


def test_a_checkpoint_holding_an_arbitrary_object_is_refused(tmp_path):
    torch.save({"model": {}, "epoch": 1, "payload": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(MemadvError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
