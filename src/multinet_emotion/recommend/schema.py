"""The building blocks of the typed policy and catalog files: a strict base model and field
types whose validators fail with messages a person can act on.

Every model refuses unknown keys and non-mappings with its own words (``what``), and every
field type names the field in its message. :mod:`.files` adds the file and the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

from ..emotions import EMOTIONS

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NAME_HINT = " (lower-case letters, digits and _)"


class Invalid(ValueError):
    """A validation failure; ``at`` points below the value that failed (a key or an index),
    so the message can name the line of that key or item rather than of its container."""

    def __init__(self, message: str, at: Sequence[str | int] = ()):
        super().__init__(message)
        self.at = tuple(at)


class FileModel(BaseModel):
    """A frozen model for a part of a policy or catalog file; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    what: ClassVar[str] = "a section"   # how error messages name it

    @model_validator(mode="before")
    @classmethod
    def _a_mapping_of_known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise Invalid(f"{cls.what} must be a mapping (key: value)")
        allowed = sorted(cls.model_fields)
        for key in data:
            if key not in cls.model_fields:
                raise Invalid(f"unknown field {key!r} in {cls.what}; allowed: {', '.join(allowed)}",
                              at=(key,))
        return data


def _field(info: ValidationInfo) -> str:
    return repr(info.field_name) if info.field_name else "the value"


def _number(v: Any, info: ValidationInfo) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Invalid(f"{_field(info)} must be a number, got {v!r}")
    return v


def _whole(v: Any, info: ValidationInfo) -> Any:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid(f"{_field(info)} must be a whole number, got {v!r}")
    return v


def between(lo: float, hi: float) -> BeforeValidator:
    """A range check that reports the value as it was written (before conversion)."""
    def check(v: Any, info: ValidationInfo) -> Any:
        if not lo <= v <= hi:
            raise Invalid(f"{_field(info)} must be between {lo} and {hi}, got {v!r}")
        return v
    return BeforeValidator(check)


# A number in [lo, hi] is ``Annotated[float, between(lo, hi), IS_NUMBER]`` (a whole number:
# ``Annotated[int, between(lo, hi), IS_WHOLE]``); validators run last to first, so the type is
# checked before the range.
IS_NUMBER = BeforeValidator(_number)
IS_WHOLE = BeforeValidator(_whole)

Fraction = Annotated[float, between(0.0, 1.0), IS_NUMBER]
Seconds = Annotated[float, between(0.0, 86_400.0), IS_NUMBER]


def _text(v: Any, info: ValidationInfo) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Invalid(f"{_field(info)} must be a non-empty string, got {v!r}")
    return v.strip()


Text = Annotated[str, BeforeValidator(_text)]


def matching(pattern: re.Pattern[str], hint: str) -> AfterValidator:
    def check(v: str, info: ValidationInfo) -> str:
        if not pattern.match(v):
            raise Invalid(f"{_field(info)} value {v!r} is not valid{hint}")
        return v
    return AfterValidator(check)


Name = Annotated[Text, matching(NAME, NAME_HINT)]


def _emotions(v: Any, info: ValidationInfo) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v:
        raise Invalid(f"{_field(info)} must be a non-empty list of emotions")
    for i, e in enumerate(v):
        if e not in EMOTIONS:
            raise Invalid(f"unknown emotion {e!r} in {_field(info)}; use one of "
                          f"{', '.join(EMOTIONS)}", at=(i,))
    return tuple(dict.fromkeys(v))


Emotions = Annotated[tuple[str, ...], BeforeValidator(_emotions)]


def version_1(what: str) -> BeforeValidator:
    """The only version of the file format so far."""
    def check(v: Any) -> int:
        if v != 1 or isinstance(v, bool):
            raise Invalid(f"unsupported {what} version {v!r} (expected 1)")
        return 1
    return BeforeValidator(check)
