"""Progress bars for long work (items/s and ETA), quiet when asked or not on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    """Bars show on a terminal unless MULTINET_PROGRESS=0; MULTINET_PROGRESS=1 forces them."""
    flag = os.environ.get("MULTINET_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None,
             **kwargs) -> Iterable[T]:
    """Wrap an iterable in a tqdm bar (rate in ``unit``/s and ETA)."""
    return tqdm(items, desc=desc, unit=unit, total=total, disable=not enabled(),
                dynamic_ncols=True, mininterval=1.0, **kwargs)


def bar(total: int, desc: str, unit: str = "it", **kwargs) -> tqdm:
    """A manual bar: call ``.update(n)`` and ``.set_postfix(...)``; close when done."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled(),
                dynamic_ncols=True, mininterval=1.0, **kwargs)
