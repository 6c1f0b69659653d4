"""One configuration object per stage: a dataclass whose defaults come from the paper.

Every field becomes a command-line option (``--field-name``) whose help shows its unit, source and
default; every field can also come from a TOML file (``--config run.toml``, top-level keys or the
table named after the stage, e.g. ``[estimate]``). Precedence: command line > TOML > defaults.

Declare fields with :func:`option`::

    @dataclass
    class EstimateConfig:
        subset_ratio: float = option(0.7, "fraction of the training set each model sees",
                                     source="Feldman & Zhang 2020, Sec. 3")

Per-dataset defaults (one convention for every config, docs/architecture.md): a field whose default
depends on the data set is declared ``option(None, ..., per_dataset=TABLE)`` with ``TABLE`` mapping
data set -> {field: value}; ``None`` means "the data set's default". A config that holds its data
set (``EstimateConfig``, ``TrainConfig``) fills those fields in ``__post_init__`` with
:func:`fill_per_dataset`, so it is complete once built; ``ObjectiveConfig``, which does not know its
data set, is completed by ``ObjectiveConfig.resolved(dataset)`` when it is paired with a training
config. ``--help`` prints every table's value per data set (:func:`per_dataset_help`).

TOML files (one strict rule for every command, :func:`check_toml`): a table must be one that some
memadv command reads, every key of a table must be an option of that table, every top-level key an
option of the running command, and every value must have the option's type (one-line
:class:`~memadv.errors.ConfigError` otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from memadv.errors import ConfigError
from memadv.safe_values import check_printable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")

# Every whole-number option fits a signed 64-bit integer (what torch, numpy and parquet hold): a
# larger one failed late, in a shard, as an OverflowError.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Seeds: numpy's seed range (``np.random.seed``, ``SeedSequence`` entropy), the same for every seed option.
SEED_MIN, SEED_MAX = 0, 2**32 - 1


def option(default: Any, help: str, *, unit: str | None = None, source: str | None = None,
           choices: Sequence[str] | None = None, cli: bool = True,
           per_dataset: Mapping[str, Mapping[str, Any]] | None = None, per_dataset_key: str | None = None,
           minimum: float | None = None, maximum: float | None = None,
           device: bool | Sequence[str] = False, flag: str | None = None, switch: bool = False) -> Any:
    """A config field with its help text, unit, source and valid choices.

    ``minimum`` / ``maximum``: the declared range (inclusive), checked by :func:`check_declared` for
    every value given on the command line or in TOML before any config is built; a whole-number
    field is always also held to [INT64_MIN, INT64_MAX]. ``device``: the field names a torch device
    (``True``), or a torch device or one of the given names (e.g. ``("auto",)``); checked likewise.

    ``per_dataset``: the table (data set -> {field name: value}) that fills the field when it is left
    ``None`` (:func:`fill_per_dataset`); ``--help`` then shows the value for each data set.
    ``per_dataset_key``: the table's name for the field, when it differs (a :func:`forward` field).
    ``flag``: the command-line spelling when it is not ``--field-name`` (``--class`` for ``class_``).
    ``switch``: a bool given as a bare flag that sets the opposite of its default (``--allow-partial``,
    ``--no-images``) instead of ``--field {true,false}``, with its opposite flag (``--no-allow-partial``,
    ``--images``) to undo a TOML value; the TOML key stays the field name.
    """
    meta = {"help": help, "unit": unit, "source": source, "choices": tuple(choices) if choices else None, "cli": cli,
            "per_dataset": per_dataset, "per_dataset_key": per_dataset_key, "minimum": minimum, "maximum": maximum,
            "device": tuple(device) if not isinstance(device, bool) else device, "flag": flag, "switch": switch}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def forward(cls: type, name: str, default: Any, help: str | None = None) -> Any:
    """A field that forwards option ``name`` of config ``cls`` (e.g. the pipeline's ``train_epochs`` is
    every training run's ``TrainConfig.epochs``): unit, source, choices and per-dataset table come from
    ``cls``, so they are declared once; ``help`` (default: ``cls``'s) may say how it is forwarded."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise ValueError(f"{cls.__name__} has no option {name!r}")
    m = f.metadata
    return option(default, m["help"] if help is None else help, unit=m.get("unit"), source=m.get("source"),
                  choices=m.get("choices"), cli=m.get("cli", True), per_dataset=m.get("per_dataset"),
                  per_dataset_key=m.get("per_dataset_key") or name, minimum=m.get("minimum"),
                  maximum=m.get("maximum"), device=m.get("device", False))


def per_dataset_help(table: Mapping[str, Mapping[str, Any]], name: str) -> str:
    """``default per data set: cifar10 160, ..., digits 30``: one field's value for each data set."""
    def fmt(v: Any) -> str:
        if isinstance(v, float) and not v.is_integer() and abs(v * 255 - round(v * 255)) < 1e-9:
            return f"{round(v * 255)}/255"  # attack radii are given in 255ths of the pixel range
        return "unset" if v is None else (" ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
    return "default per data set: " + ", ".join(f"{d} {fmt(row[name])}" for d, row in table.items() if name in row)


def fill_per_dataset(cfg: Any, dataset: str) -> None:
    """Set every ``per_dataset`` field of ``cfg`` that is ``None`` to its value for ``dataset`` (in place;
    called from ``__post_init__``). Raises :class:`UnknownChoiceError` for a data set missing from a table."""
    from memadv.errors import UnknownChoiceError

    for f in dataclasses.fields(cfg):
        table = f.metadata.get("per_dataset")
        if table is None or getattr(cfg, f.name) is not None:
            continue
        if dataset not in table:
            raise UnknownChoiceError("dataset", dataset, table)
        value = table[dataset].get(f.metadata.get("per_dataset_key") or f.name)
        setattr(cfg, f.name, list(value) if isinstance(value, (list, tuple)) else value)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool, bool]:
    """(scalar type, optional?, list?) for annotations like ``int``, ``float | None``, ``list[int]``."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: Sequence[str] = ()) -> None:
    """Add one option per field of the dataclass ``cls``; defaults are filled in later by :func:`build_config`."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} (also settable in --config TOML)")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        tp, optional, is_list = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        parts = [f.metadata.get("help", "")]
        if f.metadata.get("unit"):
            parts.append(f"[{f.metadata['unit']}]")
        # a per-dataset default is shown per data set, never as "(default: None)"
        table = f.metadata.get("per_dataset")
        if table is not None:
            tail = [per_dataset_help(table, f.metadata.get("per_dataset_key") or f.name)]
        elif f.metadata.get("switch"):
            tail = []  # the flag says what it changes; its opposite is listed beside it
        else:
            tail = [] if "(default" in parts[0] else [f"default: {default!r}"]
        if f.metadata.get("source"):
            tail.append(f"source: {f.metadata['source']}")
        if tail:
            parts.append("(" + "; ".join(tail) + ")")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": " ".join(parts).replace("%", "%%")}
        flag = f.metadata.get("flag") or _flag(f.name)
        if f.metadata.get("switch"):
            group.add_argument(flag, action="store_false" if default else "store_true", **kwargs)
            # the opposite flag, so that the command line can undo a --config file's value
            undo = "--" + flag[len("--no-"):] if flag.startswith("--no-") else "--no-" + flag[2:]
            group.add_argument(undo, action="store_true" if default else "store_false", dest=f.name,
                               default=argparse.SUPPRESS, help=f"the default: undoes {flag} (e.g. set in --config)")
            continue
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "{true,false}"
        else:
            kwargs["type"] = tp
            if f.metadata.get("flag") and not f.metadata.get("choices"):
                kwargs["metavar"] = flag.lstrip("-").upper().replace("-", "_")
        if is_list:
            kwargs["nargs"] = "+"
        group.add_argument(flag, **kwargs)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The whole TOML file; :class:`ConfigError` (one line) when it is missing, unreadable or not TOML."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(p)!r} is a folder, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None


def read_toml(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """Top-level keys of the TOML file, overridden by the keys of table ``section`` if present."""
    if path is None:
        return {}
    data = load_toml(path)
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if section and isinstance(data.get(section), dict):
        flat.update(data[section])
    return flat


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def check_type(cls: type, name: str, value: Any, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` (from TOML or a dict) has the type field ``name`` of
    ``cls`` declares (``int``: a whole number, not a bool; ``float``: any number; lists element-wise).
    ``None`` passes for optional fields."""
    tp, optional, is_list = _base_type(typing.get_type_hints(cls)[name])

    def ok(v: Any) -> bool:
        if tp is bool:
            return isinstance(v, bool)
        if tp is int:
            return isinstance(v, int) and not isinstance(v, bool)
        if tp is float:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if tp is str:
            return isinstance(v, str)
        return True

    if value is None and optional:
        return
    if is_list:
        good = isinstance(value, (list, tuple)) and all(ok(v) for v in value)
        kind = f"a list of {_KINDS.get(tp, 'values').replace('a ', '', 1)}s"
    else:
        good, kind = ok(value), _KINDS.get(tp, "a value")
    if not good:
        raise ConfigError(f"{where}{name} must be {kind}, got {value!r}")


def _fields(classes: Sequence[type]) -> dict[str, type]:
    """field name -> first class of ``classes`` that declares it."""
    out: dict[str, type] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, cls)
    return out


def check_toml(path: str | Path | None, tables: Mapping[str, Sequence[type]], reads: Sequence[str]) -> None:
    """The one rule every command applies to its ``--config`` file, before it builds any config.

    ``tables``: every table name memadv knows -> the config classes whose options it holds;
    ``reads``: the tables the running command reads. A table not in ``tables``, a key of a table
    that is not an option of it, a top-level key that is not an option of any table in ``reads``, or
    a value of the wrong type raises :class:`ConfigError` naming the file and listing the valid
    tables or keys. Tables of other commands are checked but not used: one file can serve them all.
    """
    if path is None:
        return
    data = load_toml(path)
    name = str(path)
    top = _fields([c for t in reads for c in tables[t]])
    for key, value in data.items():
        k = key.replace("-", "_")
        if isinstance(value, dict):
            if key not in tables:
                raise ConfigError(f"config file {name!r}: unknown table [{key}]; valid tables: "
                                  f"{', '.join(sorted(tables))}")
            known = _fields(tables[key])
            for sub, v in value.items():
                s = sub.replace("-", "_")
                if s not in known:
                    raise ConfigError(f"config file {name!r}: unknown key {sub!r} in table [{key}]; valid keys: "
                                      f"{', '.join(sorted(known))}")
                check_type(known[s], s, v, f"config file {name!r}, [{key}]: ")
        elif k not in top:
            raise ConfigError(f"config file {name!r}: unknown top-level key {key!r}; valid keys: "
                              f"{', '.join(sorted(top))} (or tables {', '.join(sorted(tables))})")
        else:
            check_type(top[k], k, value, f"config file {name!r}: ")


def build_config(cls: type[C], cli_values: dict[str, Any] | argparse.Namespace | None = None,
                 toml_path: str | Path | None = None, section: str | None = None,
                 ignore_unknown: bool = True) -> C:
    """defaults < TOML < command line, type-checked (:func:`check_type`, one-line :class:`ConfigError`)
    and validated by the dataclass's ``__post_init__``.

    ``ignore_unknown``: TOML keys that are no field of ``cls`` are skipped (they may belong to another
    config of the same command; :func:`check_toml` refuses the ones no config knows)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    toml_values = {k.replace("-", "_"): v for k, v in read_toml(toml_path, section).items()}
    for k, v in toml_values.items():
        if k in names:
            check_type(cls, k, v, f"config file {str(toml_path)!r}: ")
            values[k] = v
        elif not ignore_unknown:
            raise ConfigError(f"unknown key {k!r} in {toml_path}; valid keys: {', '.join(sorted(names))}")
    if isinstance(cli_values, argparse.Namespace):
        cli_values = vars(cli_values)
    for k, v in (cli_values or {}).items():
        if k in names:
            check_type(cls, k, v, "")
            values[k] = v
    for k, v in values.items():  # CLI and TOML values alike may reach an sbatch script or a command line
        check_printable(_flag(k), v)
    check_declared(cls, values)
    hints = typing.get_type_hints(cls)
    for k, v in list(values.items()):
        tp, _, is_list = _base_type(hints[k])
        if is_list and isinstance(v, (list, tuple)):
            values[k] = list(v)
        elif tp is float and isinstance(v, int) and not isinstance(v, bool):
            values[k] = float(v)
    return cls(**values)


def parse_device(flag: str, name: str) -> Any:
    """``torch.device(name)``; :class:`ConfigError` naming ``flag`` when torch does not know the device
    type (``gpu``, ``cuda:x``). Whether the device exists on this machine is left to the machine that
    runs the work (a Slurm login node may have no GPU for its jobs' ``--device cuda``)."""
    import torch  # here: config.py is imported by every command, most never name a device

    try:
        return torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{flag} {name!r} is not a torch device; valid: cpu, cuda, cuda:N (N = GPU index), "
                          f"mps, xpu or another torch device type") from None


def check_declared(cls: type, values: Mapping[str, Any]) -> None:
    """Check ``values`` (field -> value, from the command line or TOML) against what each field of
    ``cls`` declares (:func:`option`): its ``minimum``/``maximum`` (element-wise for lists), the
    64-bit range of every whole number, and ``device`` fields. The one range check every command
    gets before it builds a config, so nothing is written for a value that would fail later (a
    negative seed failed every shard, a 20-digit ``--models`` overflowed in a shard).
    Raises :class:`ConfigError` naming the option and its valid range."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in values or values[f.name] is None:
            continue
        value = values[f.name]
        tp, _, is_list = _base_type(hints[f.name])
        items = list(value) if is_list and isinstance(value, (list, tuple)) else [value]
        lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
        for item in items:
            if tp is int and isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
                raise ConfigError(f"{_flag(f.name)} must fit a 64-bit integer ({INT64_MIN} to {INT64_MAX}), "
                                  f"got {item}")
            if tp in (int, float) and (lo is not None or hi is not None):
                check_range(f.name, item, lo, hi)
        allowed = f.metadata.get("device", False)
        if allowed and isinstance(value, str) and not (isinstance(allowed, tuple) and value in allowed):
            parse_device(_flag(f.name), value)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ConfigError naming the option and its valid range when ``value`` falls outside it."""
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    # NaN fails every range; inf is never a valid setting (--lr inf trained NaN models)
    if bad or value != value or value in (float("inf"), float("-inf")):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        finite = "a finite number " if value in (float("inf"), float("-inf")) else ""
        raise ConfigError(f"{_flag(name)} must be {finite}in {rng}, got {value!r}")


# --------------------------------------------------------------------------- values that leave memadv


