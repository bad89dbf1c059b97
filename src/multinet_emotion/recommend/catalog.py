"""The content catalog: items by kind (``assets/catalog.yaml`` by default; see :mod:`.files`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, PrivateAttr, ValidationInfo, field_validator

from .schema import IS_NUMBER, IS_WHOLE, FileModel, Invalid, Name, Text, between, matching, version_1

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
_URL = re.compile(r"^(https?://\S+|/\S*)$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def _url(v: str) -> str:
    if not _URL.match(v):
        raise Invalid(f"'url' must start with http://, https:// or /, got {v!r}")
    return v


def _duration(v: Any) -> Any:
    """Seconds, or text like '90s', '5m', '1h'."""
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m is None:
            raise Invalid(f"'duration' must be seconds or like '90s', '5m', '1h', got {v!r}")
        return float(m.group(1)) * _UNIT[m.group(2) or "s"]
    return v


def _tags(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(t, str) and t for t in v):
        raise Invalid("'tags' must be a list of words")
    return tuple(t.lower() for t in v)


ItemId = Annotated[Text, matching(ITEM_ID, " (letters, digits, _ . : -; max 80)")]
Url = Annotated[Text, AfterValidator(_url)]
Duration = Annotated[float, between(0.0, 86_400.0), IS_NUMBER, BeforeValidator(_duration)]
Tags = Annotated[tuple[str, ...], BeforeValidator(_tags)]
Difficulty = Annotated[int, between(1, 5), IS_WHOLE]  # 1 (easiest) .. 5


class CatalogItem(FileModel):
    what: ClassVar[str] = "a catalog item"

    id: ItemId
    title: Text
    kind: Name
    url: Url                 # http(s):// or a path on the platform
    duration: Duration       # seconds
    tags: Tags = ()
    difficulty: Difficulty = 1
    license: Text | None = None  # the licence of the content (the shipped sample names each)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind, "url": self.url,
                "duration": self.duration, "tags": list(self.tags),
                "difficulty": self.difficulty}


class Catalog(FileModel):
    what: ClassVar[str] = "the catalog"

    version: Annotated[int, version_1("catalog")] = 1
    items: tuple[CatalogItem, ...]

    _source: str = PrivateAttr("<memory>")

    @field_validator("items", mode="before")
    @classmethod
    def _a_list(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            raise Invalid("'items' must be a list of content items")
        if not v:
            raise Invalid("the catalog has no items")
        return v

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: tuple[CatalogItem, ...],
                    info: ValidationInfo) -> tuple[CatalogItem, ...]:
        first: dict[str, int] = {}
        line_of = (info.context or {}).get("line_of")  # path -> line, when read from a file
        for i, it in enumerate(items):
            if it.id in first:
                j = first[it.id]
                line = line_of(("items", j, "id")) if line_of else None
                where = f"first on line {line}" if line else f"first is item {j + 1}"
                raise Invalid(f"duplicate item id {it.id!r} ({where})", at=(i, "id"))
            first[it.id] = i
        return items

    @property
    def source(self) -> str:
        """The file the catalog was loaded from (``<memory>`` when built in Python)."""
        return self._source

    def by_kind(self, kind: str) -> list[CatalogItem]:
        return [i for i in self.items if i.kind == kind]

    @property
    def kinds(self) -> set[str]:
        return {i.kind for i in self.items}

    def get(self, item_id: str) -> CatalogItem | None:
        return next((i for i in self.items if i.id == item_id), None)
