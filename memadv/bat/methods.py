"""The training methods, in one registry: for each ``--method``, its objective (the loss and attack
step, :mod:`memadv.bat.objectives`), its label in tables and figures, the objective options its run
folder's name shows, and the checkpoints the tables report for it with the source of that rule.
Adding a method is one :class:`Method` entry here (and its objective class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.objectives import BAT, ERM, GAIRAT, MART, PGDAT, TRADES, Objective
from memadv.errors import ConfigError, UnknownChoiceError

# the training attack's options: every adversarial method's run name shows them when not default
_ATTACK_FIELDS = ("eps", "step_size", "steps")


@dataclass(frozen=True)
class Method:
    """One training method.

    ``run_name_fields``: objective options that change what the method trains, shown in its run
    folder's name when set to other than their defaults (:func:`memadv.bat.runs.run_name`).
    ``label_options``: (option, symbol, default) shown in its table label, e.g. BAT's α and β.
    ``checkpoints``: the checkpoints the tables report, in row order, and ``checkpoint_source``:
    where that choice comes from (:func:`memadv.bat.selection.method_checkpoints`).
    """

    name: str
    label: str
    objective: type[Objective]
    run_name_fields: tuple[str, ...]
    checkpoints: tuple[str, ...]
    checkpoint_source: str
    label_options: tuple[tuple[str, str, float], ...] = ()

    def table_label(self, objective_option: Callable[[str, Any], Any]) -> str:
        """The label of a run of this method; ``objective_option(name, default)`` reads its options."""
        if not self.label_options:
            return self.label
        shown = ", ".join(f"{sym} = {float(objective_option(opt, default)):g}" for opt, sym, default in self.label_options)
        return f"{self.label} ({shown})"


METHOD_REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("erm", "ERM", ERM, (), ("last",), "no selection (plain training)"),
    Method("pgd", "PGD-AT", PGDAT, _ATTACK_FIELDS, ("best_adv", "best_clean", "last"),
           "paper Tables 2/4 (Best Adv./Best Clean rows); robust_overfitting train_cifar.py l. 441-449"),
    Method("trades", "TRADES", TRADES, _ATTACK_FIELDS + ("trades_beta",), ("last",),
           "TRADES train_trades_cifar10.py: fixed 76 epochs (l. 20), saves every epoch (l. 169-173), no selection",
           label_options=(("trades_beta", "1/λ", 5.0),)),
    Method("mart", "MART", MART, _ATTACK_FIELDS + ("mart_beta",), ("last",),
           "MART train_wideresnet.py: saves every epoch (l. 200-204), no selection"),
    Method("gairat", "GAIRAT", GAIRAT, _ATTACK_FIELDS + ("gairat_lambda", "gairat_lambda_max", "gairat_schedule",
                                                         "gairat_weight", "gairat_burn_in"),
           ("best_adv", "last"), "GAIRAT.py l. 257, 271-280: bestpoint = highest test PGD-20; README l. 97"),
    Method("bat", "BAT", BAT, _ATTACK_FIELDS + ("alpha", "beta", "sigma", "tau", "normalize_features"), ("last",),
           "paper Algorithm 1: trains to the last epoch", label_options=(("alpha", "α", 0.0), ("beta", "β", 0.0))),
)}
METHODS = tuple(METHOD_REGISTRY)  # --method choices, in the paper's table order


def method(name: str) -> Method:
    """The registry entry of ``name``; UnknownChoiceError listing the methods otherwise."""
    if name not in METHOD_REGISTRY:
        raise UnknownChoiceError("method", name, METHODS)
    return METHOD_REGISTRY[name]


def method_label(name: str) -> str:
    """The label of method ``name`` in tables and figures (``name`` itself for a method memadv does not know)."""
    return METHOD_REGISTRY[name].label if name in METHOD_REGISTRY else name


def build_objective(name: str, cfg: ObjectiveConfig, mem: Tensor | None = None) -> Objective:
    """The objective of method ``name`` (one of :data:`METHODS`).

    ``cfg`` is resolved (:meth:`ObjectiveConfig.resolved`: eps and step sizes set); ConfigError
    otherwise. ``mem`` (memorization score per training example, indexed by example id) is required
    for ``bat`` and ignored otherwise.
    """
    cls = method(name).objective
    if cls.needs_mem:
        if mem is None:
            raise ConfigError(f"method {name!r} needs memorization scores: pass --scores")
        return cls(cfg, mem)  # type: ignore[call-arg]
    return cls(cfg)
