"""Reading policy and catalog files (YAML or JSON) into their typed models.

The YAML loader records the line of every key and list item, so that the first problem
pydantic finds (a path such as ``rules -> 0 -> threshold``) is reported as one line,
``FILE:LINE: reason``, through :class:`~multinet_emotion.errors.MultiNetError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from ..errors import MultiNetError
from .catalog import Catalog
from .policy import Policy
from .schema import FileModel, Invalid

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=FileModel)


def default_policy_path() -> Path:
    return Path(str(resources.files("multinet_emotion") / "assets" / "policy.yaml"))


def default_catalog_path() -> Path:
    return Path(str(resources.files("multinet_emotion") / "assets" / "catalog.yaml"))


# --- a YAML loader that keeps line numbers ------------------------------------------------

class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that records the line of each key and item by its path in the
    document and rejects duplicate keys."""

    def record(self, node: yaml.Node, path: Path_, lines: dict[Path_, int],
               open_nodes: frozenset[int] = frozenset()) -> None:
        if id(node) in open_nodes:  # a recursive alias: its lines are recorded already
            return
        open_nodes = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: PyYAML reports it when constructing
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                lines[path + (key,)] = key_node.start_mark.line + 1
                self.record(value_node, path + (key,), lines, open_nodes)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                self.record(item, path + (i,), lines, open_nodes)


def read_document(path: Path | str) -> tuple[Any, dict[Path_, int]]:
    """The document in a YAML or JSON file and the line of each of its parts, by path
    (``()`` for the document itself)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MultiNetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MultiNetError(f"{path}: cannot read ({e})") from None
    if path.suffix.lower() == ".json":
        try:  # JSON's own parser gives the exact syntax error position
            json.loads(text)
        except json.JSONDecodeError as e:
            raise MultiNetError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Path_, int] = {(): node.start_mark.line + 1}
        loader.record(node, (), lines)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MultiNetError(f"{path}{line}: invalid {path.suffix.lstrip('.') or 'YAML'}: "
                            f"{e.problem or e}") from None
    except yaml.YAMLError as e:
        raise MultiNetError(f"{path}: invalid YAML: {e}") from None
    finally:
        loader.dispose()


# --- validation errors as FILE:LINE: reason -----------------------------------------------

def _line_of(lines: dict[Path_, int]) -> Callable[[Path_], int | None]:
    """The line of the deepest part of ``loc`` that is in the document (a missing field
    points at the mapping that lacks it)."""
    def line_of(loc: Path_) -> int | None:
        best = lines.get(())
        for n in range(1, len(loc) + 1):
            if loc[:n] not in lines:
                break
            best = lines[loc[:n]]
        return best
    return line_of


def _reason(err: Any) -> tuple[Path_, str]:
    """Where (a path in the document) and what, for one of pydantic's errors."""
    loc: Path_ = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, Invalid):  # our validators' own words
        return loc + cause.at, str(cause)
    field = next((p for p in reversed(loc) if isinstance(p, str)), None)
    name = repr(field) if field is not None else "the value"
    kind: str = err["type"]
    if kind == "missing":
        return loc, f"missing required field {field!r}"
    if kind in ("model_type", "dict_type"):
        return loc, f"{name} must be a mapping (key: value)"
    if kind in ("list_type", "tuple_type"):
        return loc, f"{name} must be a list"
    if kind.startswith(("float", "int", "finite")):
        return loc, f"{name} must be a number, got {err.get('input')!r}"
    if kind.startswith("string"):
        return loc, f"{name} must be a string, got {err.get('input')!r}"
    return loc, f"{name}: {err['msg']}"


def _subject(doc: Any, loc: Path_) -> tuple[str, str]:
    """Which rule or catalog item a problem is in ('rule 'name'', 'item 'id'', 'the
    attention rule' or ''), and the words that would name it in a reason already (a file
    of JSON on one line has no other way to say where)."""
    if len(loc) > 1 and loc[0] == "attention":
        return "the attention rule", "attention rule"
    if len(loc) < 3 or loc[0] not in ("rules", "items") or not isinstance(loc[1], int):
        return "", ""
    word, key = ("rule", "name") if loc[0] == "rules" else ("item", "id")
    try:
        label = doc[loc[0]][loc[1]].get(key)
    except (AttributeError, IndexError, KeyError, TypeError):
        label = None
    if isinstance(label, str):
        return f"{word} {label!r}", repr(label)
    return f"{word} {loc[1] + 1}", f"{word} {loc[1] + 1}"


def validate(model: type[M], doc: Any, source: str,
             lines: dict[Path_, int] | None = None) -> M:
    """``model`` from a loaded document; the first problem as a one-line MultiNetError."""
    line_of = _line_of(lines or {})
    try:
        obj = model.model_validate(doc, context={"line_of": line_of if lines else None})
    except ValidationError as e:
        where, reason = _reason(e.errors()[0])
        line = line_of(where)
        prefix = f"{source}:{line}" if line else source
        subject, named = _subject(doc, where)
        if subject and named not in reason:
            reason = f"{reason} (in {subject})"
        raise MultiNetError(f"{prefix}: {reason}") from None
    obj._source = source  # type: ignore[attr-defined]  # the models' private attribute
    return obj


def parse_policy(doc: Any, source: str = "<memory>",
                 lines: dict[Path_, int] | None = None) -> Policy:
    """Validate a loaded policy document (dict) and build a :class:`Policy`."""
    return validate(Policy, doc, source, lines)


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (YAML or JSON); the shipped default when None."""
    path = Path(path) if path is not None else default_policy_path()
    doc, lines = read_document(path)
    return parse_policy(doc, str(path), lines)


def parse_catalog(doc: Any, source: str = "<memory>",
                  lines: dict[Path_, int] | None = None) -> Catalog:
    """Validate a loaded catalog document (a mapping with ``items``, or just the list of
    items) and build a :class:`Catalog`."""
    if isinstance(doc, list):
        doc = {"items": doc}
        if lines:  # the same lines, at the paths of the wrapped document
            lines = {(): lines[()]} | {("items", *k): v for k, v in lines.items()}
    return validate(Catalog, doc, source, lines)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file (YAML or JSON); the shipped sample when None."""
    path = Path(path) if path is not None else default_catalog_path()
    doc, lines = read_document(path)
    return parse_catalog(doc, str(path), lines)
