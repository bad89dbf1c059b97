"""Each setting stated once.

A setting's name, default, help and range live on its stage's config dataclass, as a
``setting(...)`` field. From that one statement come the command-line options
(:func:`add_options`), the ``MULTINET_*`` environment variables (:func:`from_env`) and the
one check of every value (:func:`check`), whose message names where the value came from
(``--lr``, ``MULTINET_PORT``, or the field for values set in code).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import MultiNetError

ENV_PREFIX = "MULTINET_"


@dataclasses.dataclass(frozen=True)
class Spec:
    help: str = ""
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # the minimum itself is not allowed
    max_open: bool = False
    unit: str = ""  # said after a range ("seconds")
    flag: str | None = None  # option name when it is not --field-name
    cli: bool = True  # an option of the command line
    env: bool = False  # an environment variable MULTINET_FIELD_NAME
    metavar: str | None = None
    hidden: bool = False  # an option, but not listed in --help


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            repr: bool = True, **spec: Any) -> Any:  # noqa: A002 - dataclasses.field's name
    """A dataclass field that carries its help, range and where it may be set
    (``repr=False``: a secret, left out of the dataclass's repr)."""
    return dataclasses.field(default=default, default_factory=default_factory, repr=repr,
                             metadata={"spec": Spec(**spec)})


def restate(cls: type, name: str, default: Any, **spec: Any) -> Any:
    """The setting ``name`` of ``cls`` for another front end (the web service's settings,
    say) with its own ``default`` and any of its spec changed (``env=True``, a ``max``):
    the help, the range and the unit stay those of the one statement on ``cls``."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=default,
                             metadata={"spec": dataclasses.replace(f.metadata["spec"], **spec)})


def specs(cls: type) -> dict[str, tuple[dataclasses.Field, Spec, type, bool]]:
    """Per field with a spec: the field, the spec, its value type and whether None is allowed."""
    return _specs(cls)  # (a plain function: mypy takes no type[X] for functools.cache's Hashable)


@functools.cache  # type hints are resolved once per class, not at every check
def _specs(cls: type) -> dict[str, tuple[dataclasses.Field, Spec, type, bool]]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("spec")
        if spec is None:
            continue
        kind, optional = hints[f.name], False
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            optional, kind = len(args) < len(typing.get_args(kind)), args[0]
        out[f.name] = (f, spec, kind, optional)
    return out


def flag_of(name: str, spec: Spec) -> str:
    return spec.flag or "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING or f.default is None or f.default == "" or \
            isinstance(f.default, bool):
        return ""
    value = f.default.value if hasattr(f.default, "value") else f.default
    return f" (default {value:g})" if isinstance(value, float) else f" (default {value})"


def add_options(parser: argparse._ActionsContainer, cls: type, *, only: tuple[str, ...] = (),
                exclude: tuple[str, ...] = (), defaults_from_class: bool = True) -> None:
    """Command-line options for the settings of ``cls``. With ``defaults_from_class=False``
    every option defaults to None (meaning: not given), for settings that also come from the
    environment."""
    for name, (f, spec, kind, _optional) in specs(cls).items():
        if not spec.cli or name in exclude or (only and name not in only):
            continue
        default = f.default if defaults_from_class else None
        help_text = argparse.SUPPRESS if spec.hidden else (
            spec.help + _default_text(f) + (f"; env {env_of(name)}" if spec.env else ""))
        flag = flag_of(name, spec)
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, dest=name, type=item, action="append",
                                default=[] if defaults_from_class else None, help=help_text,
                                metavar=spec.metavar)
        else:
            required = defaults_from_class and f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING
            parser.add_argument(flag, dest=name, type=_converter(kind, name, spec),
                                choices=spec.choices, default=None if required else default,
                                required=required, help=help_text, metavar=spec.metavar)


def _converter(kind: type, name: str, spec: Spec):
    if kind in (int, float, Path) or kind is str:
        return kind
    if hasattr(kind, "__members__"):  # an Enum: its values are the choices
        return kind
    raise TypeError(f"setting {name}: no command-line type for {kind}")


def values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``cls`` found on parsed arguments (None = not given, when the options
    were added without class defaults)."""
    return {name: getattr(args, name) for name, (_f, spec, _k, _o) in specs(cls).items()
            if spec.cli and hasattr(args, name)}


def from_env(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The settings of ``cls`` given as MULTINET_* variables (empty ones count as unset)."""
    out: dict[str, Any] = {}
    for name, (_f, spec, kind, _optional) in specs(cls).items():
        var = env_of(name)
        raw = env.get(var) if spec.env else None
        if raw is None or raw == "":
            continue
        if kind is bool:
            out[name] = raw.strip().lower() not in ("0", "false", "no", "off")
            continue
        try:
            out[name] = kind(raw)
        except ValueError:
            raise MultiNetError(f"environment variable {var}={raw!r} is not a valid "
                                f"{getattr(kind, '__name__', kind)}") from None
    return out


def check(obj: Any, origins: Mapping[str, str] | None = None) -> None:
    """The one check of every setting's value; the message names where the value came from."""
    origins = origins or {}
    for name, (_f, spec, _kind, optional) in specs(type(obj)).items():
        where = origins.get(name, flag_of(name, spec) if spec.cli else name)
        check_value(where, getattr(obj, name), spec, optional)


def check_value(where: str, value: Any, spec: Spec, optional: bool = False) -> None:
    """The check of one value against a spec's choices and range (for a value that is not a
    dataclass field, such as a model file's metadata); ``where`` names it in the message."""
    if value is None:
        if optional:
            return
        raise MultiNetError(f"{where}: a value is required")
    if spec.choices is not None and value not in spec.choices:
        raise MultiNetError(f"{where} {value!r}: choose one of {', '.join(spec.choices)}")
    if spec.min is None and spec.max is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or \
            _below(value, spec) or _above(value, spec):
        raise MultiNetError(f"{where} {value}: must be {range_text(spec)}")


def _below(value: float, spec: Spec) -> bool:
    return spec.min is not None and (value <= spec.min if spec.min_open else value < spec.min)


def _above(value: float, spec: Spec) -> bool:
    return spec.max is not None and (value >= spec.max if spec.max_open else value > spec.max)


def range_text(spec: Spec) -> str:
    unit = f" {spec.unit}" if spec.unit else ""
    lo = None if spec.min is None else f"{'above' if spec.min_open else 'at least'} {spec.min:g}"
    hi = None if spec.max is None else f"{'below' if spec.max_open else 'at most'} {spec.max:g}"
    if lo and hi and not spec.min_open and not spec.max_open:
        return f"{spec.min:g} to {spec.max:g}{unit}"
    return " and ".join(t for t in (lo, hi) if t) + unit
