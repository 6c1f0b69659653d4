"""One configuration object per stage: a dataclass whose defaults come from the paper.

Every field becomes a command-line option (``--field-name``) whose help shows its unit, source and
default; every field can also come from a TOML file (``--config run.toml``, top-level keys or the
table named after the stage, e.g. ``[estimate]``). Precedence: command line > TOML > defaults.

Declare fields with :func:`option`::

    @dataclass
    class EstimateConfig:
        subset_ratio: float = option(0.7, "fraction of the training set each model sees",
                                     source="Feldman & Zhang 2020, Sec. 3")
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from memadv.errors import ConfigError, OutputRefusedError, UnsafeInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


def option(default: Any, help: str, *, unit: str | None = None, source: str | None = None,
           choices: Sequence[str] | None = None, cli: bool = True) -> Any:
    """A config field with its help text, unit, source and valid choices."""
    meta = {"help": help, "unit": unit, "source": source, "choices": tuple(choices) if choices else None, "cli": cli}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


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
        # a help text that states its own default (a per-dataset table) does not get "(default: None)" too
        said = "(default" in parts[0]
        tail = [] if said else [f"default: {default!r}"]
        if f.metadata.get("source"):
            tail.append(f"source: {f.metadata['source']}")
        if tail:
            parts.append("(" + "; ".join(tail) + ")")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": " ".join(parts).replace("%", "%%")}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "{true,false}"
        else:
            kwargs["type"] = tp
        if is_list:
            kwargs["nargs"] = "+"
        group.add_argument(_flag(f.name), **kwargs)


def read_toml(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """Top-level keys of the TOML file, overridden by the keys of table ``section`` if present."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if section and isinstance(data.get(section), dict):
        flat.update(data[section])
    return flat


def build_config(cls: type[C], cli_values: dict[str, Any] | argparse.Namespace | None = None,
                 toml_path: str | Path | None = None, section: str | None = None,
                 ignore_unknown: bool = True) -> C:
    """defaults < TOML < command line, validated by the dataclass's ``__post_init__``."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    toml_values = {k.replace("-", "_"): v for k, v in read_toml(toml_path, section).items()}
    for k, v in toml_values.items():
        if k in names:
            values[k] = v
        elif not ignore_unknown:
            raise ConfigError(f"unknown key {k!r} in {toml_path}; valid keys: {', '.join(sorted(names))}")
    if isinstance(cli_values, argparse.Namespace):
        cli_values = vars(cli_values)
    for k, v in (cli_values or {}).items():
        if k in names:
            values[k] = v
    for k, v in values.items():  # CLI and TOML values alike may reach an sbatch script or a command line
        check_printable(_flag(k), v)
    hints = typing.get_type_hints(cls)
    for k, v in list(values.items()):
        tp, _, is_list = _base_type(hints[k])
        if is_list and isinstance(v, (list, tuple)):
            values[k] = list(v)
        elif tp is float and isinstance(v, int) and not isinstance(v, bool):
            values[k] = float(v)
    return cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ConfigError naming the option and its valid range when ``value`` falls outside it."""
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    # NaN fails every range; inf is never a valid setting (issue 10 item 7: --lr inf trained NaN models)
    if bad or value != value or value in (float("inf"), float("-inf")):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        finite = "a finite number " if value in (float("inf"), float("-inf")) else ""
        raise ConfigError(f"{_flag(name)} must be {finite}in {rng}, got {value!r}")


# --------------------------------------------------------------------------- values that leave memadv

def _control_char(text: str) -> tuple[int, str] | None:
    """(position, U+XXXX) of the first C0 (U+0000-U+001F, tab and newline included), DEL (U+007F) or C1
    (U+0080-U+009F) character of ``text``, None if it has none."""
    for i, ch in enumerate(text):
        if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            return i, f"U+{ord(ch):04X}"
    return None


def check_printable(what: str, value: Any) -> None:
    """Refuse control characters in ``value`` (a string, path, or a list/tuple/dict of them).

    The one validator for every value that may reach an sbatch script or a command line (options,
    TOML strings, paths, job and run names): a newline in ``--partition`` would otherwise become a
    line of its own in the script (issue 10 item 3). Raises UnsafeInputError naming ``what``.
    """
    if isinstance(value, (str, Path)):
        bad = _control_char(str(value))
        if bad is not None:
            raise UnsafeInputError(f"{what} holds control character {bad[1]} at position {bad[0]} ({str(value)!r}); "
                                   f"values that reach a script or command line must be printable")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_printable(what, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_printable(what, key)
            check_printable(f"{what}.{key}", item)


def check_path_component(what: str, name: str) -> str:
    """Return ``name`` if it is one safe path component, else raise OutputRefusedError.

    A name (``train --name``, a sweep entry's ``name``) becomes a folder under ``--out``: it must be
    non-empty, not ``.`` or ``..``, hold no ``/`` or ``\\``, not start with ``-`` (it would read as an
    option where the name reaches a command line) or ``.`` (hidden; ``.sweep`` is memadv's), be at
    most 255 bytes and hold no control characters.
    """
    check_printable(what, name)
    if (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(("-", "."))
            or len(name.encode()) > 255):
        raise OutputRefusedError(f"{what} {name!r} is not a single path component (non-empty, no '/' or '\\', "
                                 f"not '.' or '..', not starting with '-' or '.', at most 255 bytes)")
    return name
