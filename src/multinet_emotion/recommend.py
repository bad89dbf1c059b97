"""Recommendations from emotion timelines: policies, a content catalog and personalisation.

The engine is pure: it reads a learner's timeline of smoothed emotion probabilities (with
"no face" samples where nobody was seen) and returns zero or one :class:`Recommendation`
with its reason in plain words and the evidence behind it. Persistence lives in
:mod:`multinet_emotion.store`; the web service glues the two together.

* A :class:`Policy` (a YAML/JSON file, ``assets/policy.yaml`` by default) maps *sustained*
  states to content kinds with thresholds, minimum durations and cool-downs. Brief moments
  never trigger anything, and nothing is suggested while no face is seen.
* A :class:`Catalog` (``assets/catalog.yaml`` by default) lists content items by kind.
* :class:`Personaliser` chooses among the kinds a rule allows with Thompson sampling over
  Beta posteriors that start from the policy's default weights, borrow (capped) evidence
  from other learners and are updated by this learner's outcomes: the change in affect after
  an accepted suggestion, explicit thumbs up/down and dismissals.

Invalid policy or catalog files are rejected at load with the file, line and reason.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .emotions import EMOTIONS
from .errors import MultiNetError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")

DEFAULT_FEELINGS: dict[str, str] = {
    "angry": "frustrated", "fear": "anxious", "happy": "engaged",
    "neutral": "flat", "sad": "down", "surprise": "surprised",
}


def default_policy_path() -> Path:
    return Path(str(resources.files("multinet_emotion") / "assets" / "policy.yaml"))


def default_catalog_path() -> Path:
    return Path(str(resources.files("multinet_emotion") / "assets" / "catalog.yaml"))


# --- timelines ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One point of a learner's timeline: smoothed probabilities, or no face at time t."""

    t: float                                   # seconds (epoch or any monotonic origin)
    probs: tuple[float, ...] | None = None     # six floats in EMOTIONS order; None = no face

    @property
    def face(self) -> bool:
        return self.probs is not None

    @property
    def label(self) -> str | None:
        if self.probs is None:
            return None
        return EMOTIONS[max(range(len(EMOTIONS)), key=self.probs.__getitem__)]

    @classmethod
    def from_probs(cls, t: float, probs: Mapping[str, float] | Sequence[float] | None) -> Sample:
        if probs is None:
            return cls(float(t), None)
        if isinstance(probs, Mapping):
            values = tuple(float(probs.get(e, 0.0)) for e in EMOTIONS)
        else:
            values = tuple(float(p) for p in probs)
            if len(values) != len(EMOTIONS):
                raise ValueError(f"expected {len(EMOTIONS)} probabilities, got {len(values)}")
        return cls(float(t), values)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Sample:
        """Build a sample from a detector event (the JSON Lines dicts of ``detect``)."""
        if not event.get("face"):
            return cls(float(event["t"]), None)
        return cls.from_probs(event["t"], event.get("smoothed") or event["probs"])


def _score(sample: Sample, indices: Sequence[int]) -> float:
    assert sample.probs is not None
    return sum(sample.probs[i] for i in indices)


def describe_duration(seconds: float) -> str:
    """'45 seconds', '1 minute', '2 minutes', '1 hour 5 minutes' (rounded for people)."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} seconds"
    if s < 3600:
        m = int(round(s / 60))
        return "1 minute" if m == 1 else f"{m} minutes"
    h, m = divmod(int(round(s / 60)), 60)
    hours = "1 hour" if h == 1 else f"{h} hours"
    return hours if m == 0 else f"{hours} {m} minute{'s' if m != 1 else ''}"


# --- policy and catalog data ----------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """A sustained state and the content kinds that may help with it."""

    name: str
    states: tuple[str, ...]
    threshold: float = 0.5          # summed smoothed probability of `states` that counts as "in"
    min_share: float = 0.7          # share of face samples in the window that must be "in"
    min_duration: float = 90.0      # seconds the state must hold
    cooldown: float = 0.0           # extra per-rule cool-down (the policy's applies too)
    max_changes: int | None = None  # at most this many changes of the smoothed label
    kinds: dict[str, float] = field(default_factory=dict)  # kind -> default chance it helps
    improve: tuple[str, ...] = ("happy", "neutral", "surprise")
    measure: str = "change"         # reward from the change of `improve`, or its level after
    reason: str = "you seemed {feeling} for the last {duration}"

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(EMOTIONS.index(s) for s in self.states)

    @property
    def improve_indices(self) -> tuple[int, ...]:
        return tuple(EMOTIONS.index(s) for s in self.improve)


@dataclass(frozen=True)
class OutcomeConfig:
    before: float = 60.0      # seconds before the suggestion used as the baseline
    delay: float = 10.0       # seconds after acceptance before measuring starts
    window: float = 120.0     # seconds measured
    scale: float = 0.3        # change of the `improve` share that counts as full success
    min_samples: int = 10     # face samples needed on each side, else "not measured"


@dataclass(frozen=True)
class PersonalisationConfig:
    prior_strength: float = 2.0     # pseudo-observations from the policy's default weights
    population_weight: float = 0.3  # weight of each observation from other learners
    population_cap: float = 10.0    # at most this many pseudo-observations from others
    feedback_weight: float = 1.0    # thumbs up = reward 1, thumbs down = reward 0
    dismiss_weight: float = 0.5     # a dismissal counts as reward 0 with this weight


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    cooldown: float = 300.0           # seconds between two suggestions, whatever the rule
    expire_after: float = 600.0       # an unanswered suggestion is withdrawn after this
    max_gap: float = 10.0             # a longer gap between samples breaks a window
    min_face_coverage: float = 0.8    # share of samples in a window that must show a face
    max_lookback: float = 1800.0      # how far back "for the last N minutes" may reach
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    personalisation: PersonalisationConfig = field(default_factory=PersonalisationConfig)
    attention: Rule | None = None     # when an instructor should look (no content kinds)
    feelings: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FEELINGS))
    kind_difficulty: dict[str, int] = field(default_factory=dict)  # kind -> level shift
    source: str = "<memory>"

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def horizon(self) -> float:
        """Seconds of timeline the engine may look at (windows, outcomes, look-back)."""
        o = self.outcome
        windows = [r.min_duration for r in self.rules]
        if self.attention:
            windows.append(self.attention.min_duration)
        return max(windows + [self.max_lookback, o.before + o.delay + o.window]) + self.max_gap


@dataclass(frozen=True)
class CatalogItem:
    id: str
    title: str
    kind: str
    url: str
    duration: float          # seconds
    tags: tuple[str, ...] = ()
    difficulty: int = 1      # 1 (easiest) .. 5

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind, "url": self.url,
                "duration": self.duration, "tags": list(self.tags),
                "difficulty": self.difficulty}


@dataclass(frozen=True)
class Catalog:
    items: tuple[CatalogItem, ...]
    source: str = "<memory>"

    def by_kind(self, kind: str) -> list[CatalogItem]:
        return [i for i in self.items if i.kind == kind]

    @property
    def kinds(self) -> set[str]:
        return {i.kind for i in self.items}

    def get(self, item_id: str) -> CatalogItem | None:
        return next((i for i in self.items if i.id == item_id), None)


# --- loading with line numbers ------------------------------------------------------------

class _Map(dict):
    line: int = 0
    key_lines: dict[str, int]


class _List(list):
    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that remembers line numbers and rejects duplicate keys."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _List:
    out = _List(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [n.start_mark.line + 1 for n in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _read_document(path: Path) -> Any:
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
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MultiNetError(f"{path}{line}: invalid {path.suffix.lstrip('.') or 'YAML'}: "
                            f"{e.problem or e}") from None
    except yaml.YAMLError as e:
        raise MultiNetError(f"{path}: invalid YAML: {e}") from None


class _Checker:
    """Typed field access on loaded documents that fails with file:line: reason."""

    def __init__(self, path: Path | str):
        self.path = str(path)

    def fail(self, where: Any, reason: str, key: str | None = None) -> MultiNetError:
        line = 0
        if isinstance(where, _Map) and key is not None and key in where.key_lines:
            line = where.key_lines[key]
        elif isinstance(where, (_Map, _List)):
            line = where.line
        elif isinstance(where, int):
            line = where
        return MultiNetError(f"{self.path}:{line}: {reason}" if line else f"{self.path}: {reason}")

    def mapping(self, doc: Any, what: str, line: int = 0) -> _Map:
        if not isinstance(doc, dict):
            raise self.fail(getattr(doc, "line", line), f"{what} must be a mapping (key: value)")
        if not isinstance(doc, _Map):  # plain dicts from tests / API
            m = _Map(doc)
            m.key_lines = {}
            return m
        return doc

    def known(self, m: _Map, allowed: Iterable[str], what: str) -> None:
        allowed = set(allowed)
        for key in m:
            if key not in allowed:
                raise self.fail(m, f"unknown field {key!r} in {what}; allowed: "
                                   f"{', '.join(sorted(allowed))}", str(key))

    def number(self, m: _Map, key: str, default: float | None, lo: float | None = None,
               hi: float | None = None, required: bool = False) -> float:
        if key not in m:
            if required or default is None:
                raise self.fail(m, f"missing required field {key!r}")
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(m, f"{key!r} must be a number, got {v!r}", key)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(m, f"{key!r} must be between {lo} and {hi}, got {v}", key)
        return float(v)

    def text(self, m: _Map, key: str, default: str | None = None,
             pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        if key not in m:
            if default is None:
                raise self.fail(m, f"missing required field {key!r}")
            return default
        v = m[key]
        if not isinstance(v, str) or not v.strip():
            raise self.fail(m, f"{key!r} must be a non-empty string, got {v!r}", key)
        if pattern is not None and not pattern.match(v):
            raise self.fail(m, f"{key!r} value {v!r} is not valid{hint}", key)
        return v.strip()

    def emotions(self, m: _Map, key: str, default: Sequence[str] | None = None) -> tuple[str, ...]:
        if key not in m:
            if default is None:
                raise self.fail(m, f"missing required field {key!r}")
            return tuple(default)
        v = m[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v:
            raise self.fail(m, f"{key!r} must be a non-empty list of emotions", key)
        for e in v:
            if e not in EMOTIONS:
                raise self.fail(m, f"unknown emotion {e!r} in {key!r}; use one of "
                                   f"{', '.join(EMOTIONS)}", key)
        return tuple(dict.fromkeys(v))


_RULE_FIELDS = ("name", "states", "threshold", "min_share", "min_duration", "cooldown",
                "max_changes", "kinds", "improve", "measure", "reason")


def _parse_rule(c: _Checker, doc: Any, line: int, attention: bool = False) -> Rule:
    m = c.mapping(doc, "a rule", line)
    c.known(m, _RULE_FIELDS, "a rule")
    name = c.text(m, "name", "attention" if attention else None, _NAME,
                  " (lower-case letters, digits and _)")
    kinds: dict[str, float] = {}
    if not attention:
        raw = m.get("kinds")
        if isinstance(raw, list):
            raw_map = {k: 0.5 for k in raw}
        elif isinstance(raw, dict):
            raw_map = dict(raw)
        else:
            raise c.fail(m, f"rule {name!r}: 'kinds' must map content kinds to a default "
                            "chance of helping (0..1), e.g. {{break: 0.5}}", "kinds")
        if not raw_map:
            raise c.fail(m, f"rule {name!r}: 'kinds' is empty", "kinds")
        for k, w in raw_map.items():
            if not isinstance(k, str) or not _NAME.match(k):
                raise c.fail(m, f"rule {name!r}: content kind {k!r} is not a valid name",
                             "kinds")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
                raise c.fail(m, f"rule {name!r}: weight of kind {k!r} must be between 0 "
                                f"and 1, got {w!r}", "kinds")
            kinds[k] = float(w)
    elif "kinds" in m:
        raise c.fail(m, "the attention rule suggests no content: remove 'kinds'", "kinds")
    max_changes = None
    if m.get("max_changes") is not None:
        max_changes = int(c.number(m, "max_changes", None, 0, 10_000))
    measure = c.text(m, "measure", "change")
    if measure not in ("change", "level"):
        raise c.fail(m, f"rule {name!r}: 'measure' must be 'change' or 'level'", "measure")
    reason = c.text(m, "reason", "you seemed {feeling} for the last {duration}")
    try:
        reason.format(feeling="x", duration="y", state="z")
    except (KeyError, IndexError, ValueError) as e:
        raise c.fail(m, f"rule {name!r}: 'reason' may only use {{feeling}}, {{duration}} "
                        f"and {{state}} ({e})", "reason") from None
    return Rule(
        name=name, states=c.emotions(m, "states"),
        threshold=c.number(m, "threshold", 0.5, 0.0, 1.0),
        min_share=c.number(m, "min_share", 0.7, 0.0, 1.0),
        min_duration=c.number(m, "min_duration", None, 1.0, 86_400.0, required=True),
        cooldown=c.number(m, "cooldown", 0.0, 0.0, 86_400.0),
        max_changes=max_changes, kinds=kinds,
        improve=c.emotions(m, "improve", ("happy", "neutral", "surprise")),
        measure=measure, reason=reason)


def parse_policy(doc: Any, source: str = "<memory>") -> Policy:
    """Validate a loaded policy document (dict) and build a :class:`Policy`."""
    c = _Checker(source)
    m = c.mapping(doc, "the policy")
    c.known(m, ("version", "cooldown", "expire_after", "max_gap", "min_face_coverage",
                "max_lookback", "outcome", "personalisation", "attention", "feelings",
                "kind_difficulty", "rules"), "the policy")
    if m.get("version", 1) != 1:
        raise c.fail(m, f"unsupported policy version {m.get('version')!r} (expected 1)",
                     "version")
    rules_doc = m.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise c.fail(m, "'rules' must be a non-empty list of rules", "rules" if "rules" in m
                     else None)
    lines = getattr(rules_doc, "item_lines", [0] * len(rules_doc))
    rules = tuple(_parse_rule(c, r, line) for r, line in zip(rules_doc, lines))
    seen: set[str] = set()
    for r, line in zip(rules, lines):
        if r.name in seen:
            raise c.fail(line, f"duplicate rule name {r.name!r}")
        seen.add(r.name)

    o = c.mapping(m.get("outcome", {}), "'outcome'", m.key_lines.get("outcome", 0))
    c.known(o, ("before", "delay", "window", "scale", "min_samples"), "'outcome'")
    outcome = OutcomeConfig(
        before=c.number(o, "before", 60.0, 1.0, 86_400.0),
        delay=c.number(o, "delay", 10.0, 0.0, 86_400.0),
        window=c.number(o, "window", 120.0, 1.0, 86_400.0),
        scale=c.number(o, "scale", 0.3, 0.01, 1.0),
        min_samples=int(c.number(o, "min_samples", 10, 1, 100_000)))
    p = c.mapping(m.get("personalisation", {}), "'personalisation'",
                  m.key_lines.get("personalisation", 0))
    c.known(p, ("prior_strength", "population_weight", "population_cap", "feedback_weight",
                "dismiss_weight"), "'personalisation'")
    personalisation = PersonalisationConfig(
        prior_strength=c.number(p, "prior_strength", 2.0, 0.0, 1000.0),
        population_weight=c.number(p, "population_weight", 0.3, 0.0, 1.0),
        population_cap=c.number(p, "population_cap", 10.0, 0.0, 100_000.0),
        feedback_weight=c.number(p, "feedback_weight", 1.0, 0.0, 100.0),
        dismiss_weight=c.number(p, "dismiss_weight", 0.5, 0.0, 100.0))
    attention = None
    if m.get("attention") is not None:
        attention = _parse_rule(c, m["attention"], m.key_lines.get("attention", 0), True)
    feelings = dict(DEFAULT_FEELINGS)
    if "feelings" in m:
        f = c.mapping(m["feelings"], "'feelings'", m.key_lines.get("feelings", 0))
        for k, v in f.items():
            if k not in EMOTIONS or not isinstance(v, str) or not v.strip():
                raise c.fail(f, f"'feelings' maps an emotion ({', '.join(EMOTIONS)}) to a "
                                f"word, got {k!r}: {v!r}", str(k))
            feelings[k] = v.strip()
    shifts: dict[str, int] = {}
    if "kind_difficulty" in m:
        kd = c.mapping(m["kind_difficulty"], "'kind_difficulty'",
                       m.key_lines.get("kind_difficulty", 0))
        for k, v in kd.items():
            if isinstance(v, bool) or not isinstance(v, int) or not -4 <= v <= 4:
                raise c.fail(kd, f"'kind_difficulty' of {k!r} must be a whole number of "
                                 f"levels between -4 and 4, got {v!r}", str(k))
            shifts[str(k)] = v
    return Policy(
        rules=rules,
        cooldown=c.number(m, "cooldown", 300.0, 0.0, 86_400.0),
        expire_after=c.number(m, "expire_after", 600.0, 1.0, 86_400.0),
        max_gap=c.number(m, "max_gap", 10.0, 0.1, 3600.0),
        min_face_coverage=c.number(m, "min_face_coverage", 0.8, 0.0, 1.0),
        max_lookback=c.number(m, "max_lookback", 1800.0, 1.0, 86_400.0),
        outcome=outcome, personalisation=personalisation, attention=attention,
        feelings=feelings, kind_difficulty=shifts, source=source)


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (YAML or JSON); the shipped default when None."""
    path = Path(path) if path is not None else default_policy_path()
    return parse_policy(_read_document(path), str(path))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")


def parse_catalog(doc: Any, source: str = "<memory>") -> Catalog:
    """Validate a loaded catalog document and build a :class:`Catalog`."""
    c = _Checker(source)
    if isinstance(doc, list):
        items_doc = doc
    else:
        m = c.mapping(doc, "the catalog")
        c.known(m, ("version", "items"), "the catalog")
        if m.get("version", 1) != 1:
            raise c.fail(m, f"unsupported catalog version {m.get('version')!r} (expected 1)",
                         "version")
        items_doc = m.get("items")
        if not isinstance(items_doc, list):
            raise c.fail(m, "'items' must be a list of content items", "items" if "items" in m
                         else None)
    if not items_doc:
        raise c.fail(items_doc, "the catalog has no items")
    lines = getattr(items_doc, "item_lines", [0] * len(items_doc))
    items: list[CatalogItem] = []
    ids: dict[str, int] = {}
    for doc_item, line in zip(items_doc, lines):
        it = c.mapping(doc_item, "a catalog item", line)
        c.known(it, ("id", "title", "kind", "url", "duration", "tags", "difficulty"),
                "a catalog item")
        item_id = c.text(it, "id", None, _ITEM_ID, " (letters, digits, _ . : -; max 80)")
        if item_id in ids:
            raise c.fail(it, f"duplicate item id {item_id!r} (first on line {ids[item_id]})",
                         "id")
        ids[item_id] = it.key_lines.get("id", line)
        kind = c.text(it, "kind", None, _NAME, " (lower-case letters, digits and _)")
        url = c.text(it, "url")
        if not re.match(r"^(https?://\S+|/\S*)$", url):
            raise c.fail(it, f"'url' must start with http://, https:// or /, got {url!r}",
                         "url")
        raw = it.get("duration")
        if isinstance(raw, str) and (dm := _DURATION.match(raw)):
            unit = dm.group(2) or "s"
            duration = float(dm.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60,
                                             "h": 3600}[unit]
        else:
            if isinstance(raw, str):
                raise c.fail(it, f"'duration' must be seconds or like '90s', '5m', '1h', "
                                 f"got {raw!r}", "duration")
            duration = c.number(it, "duration", None, 0.0, 86_400.0, required=True)
        tags = it.get("tags", [])
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise c.fail(it, "'tags' must be a list of words", "tags")
        difficulty = c.number(it, "difficulty", 1, 1, 5)
        if difficulty != int(difficulty):
            raise c.fail(it, "'difficulty' must be a whole number from 1 to 5", "difficulty")
        items.append(CatalogItem(id=item_id, title=c.text(it, "title"), kind=kind, url=url,
                                 duration=duration, tags=tuple(t.lower() for t in tags),
                                 difficulty=int(difficulty)))
    return Catalog(items=tuple(items), source=source)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file (YAML or JSON); the shipped sample when None."""
    path = Path(path) if path is not None else default_catalog_path()
    return parse_catalog(_read_document(path), str(path))


# --- detection of sustained states --------------------------------------------------------

@dataclass(frozen=True)
class Trigger:
    """A rule whose state held over the window ending at ``end``: the evidence."""

    rule: Rule
    start: float             # earliest start for which the state still held (the reason)
    end: float
    window_start: float      # the rule's own window (min_duration)
    share: float             # share of face samples "in the state" over the window
    coverage: float          # share of samples with a face
    shares: dict[str, float]  # share of face samples per smoothed label
    means: dict[str, float]  # mean smoothed probabilities
    feeling: str
    samples: int

    @property
    def duration(self) -> float:
        return self.end - self.start

    def reason(self) -> str:
        text = self.rule.reason.format(feeling=self.feeling,
                                       duration=describe_duration(self.duration),
                                       state="/".join(self.rule.states))
        return text[:1].upper() + text[1:]

    def evidence(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "window": [round(self.start, 3), round(self.end, 3)],
                "sustained_seconds": round(self.duration, 1),
                "state": list(self.rule.states), "state_share": round(self.share, 3),
                "face_coverage": round(self.coverage, 3), "samples": self.samples,
                "shares": {k: round(v, 3) for k, v in self.shares.items()},
                "mean_probs": {k: round(v, 3) for k, v in self.means.items()}}


def _window(timeline: Sequence[Sample], start: float, end: float,
            max_gap: float) -> Sequence[Sample] | None:
    """Samples in [start, end] when they cover it without gaps longer than max_gap."""
    times = [s.t for s in timeline]  # timelines are short (minutes at ~1 sample/s)
    lo, hi = bisect_left(times, start), bisect_left(times, end + 1e-9)
    if hi < len(times) and times[hi] <= end:
        hi += 1
    window = timeline[lo:hi]
    if not window:
        return None
    if lo > 0:  # the sample before the window must be close enough to bridge into it
        prev = timeline[lo - 1].t
    else:  # no history before the window: it must begin (almost) at its start
        if window[0].t - start > min(max_gap, 1.0 + 0.05 * (end - start)):
            return None
        prev = window[0].t
    for s in window:
        if s.t - prev > max_gap:
            return None
        prev = s.t
    if end - prev > max_gap:
        return None
    return window


def _holds(rule: Rule, window: Sequence[Sample], min_coverage: float) -> tuple[bool, float, float]:
    faces = [s for s in window if s.face]
    coverage = len(faces) / len(window)
    if not faces or coverage < min_coverage:
        return False, 0.0, coverage
    idx = rule.indices
    share = sum(_score(s, idx) >= rule.threshold for s in faces) / len(faces)
    if share < rule.min_share:
        return False, share, coverage
    if rule.max_changes is not None:
        labels = [s.label for s in faces]
        changes = sum(a != b for a, b in zip(labels, labels[1:]))
        if changes > rule.max_changes:
            return False, share, coverage
    return True, share, coverage


def detect_state(rule: Rule, policy: Policy, timeline: Sequence[Sample],
                 now: float) -> Trigger | None:
    """The rule's evidence when its state held for its minimum duration up to ``now``.

    Nothing while the latest sample shows no face (or is older than ``max_gap``): a learner
    who is away gets no suggestion.
    """
    if not timeline or not timeline[-1].face or now - timeline[-1].t > policy.max_gap:
        return None
    start = now - rule.min_duration
    window = _window(timeline, start, now, policy.max_gap)
    if window is None:
        return None
    ok, share, coverage = _holds(rule, window, policy.min_face_coverage)
    if not ok:
        return None
    # How long has it really lasted? Extend back over samples in the state, tolerating dips
    # (out of the state or no face) as long as the rule's own window tolerates them.
    faces = [s for s in window if s.face]
    earliest = window[0].t
    tolerance = max(policy.max_gap, (1.0 - rule.min_share) * rule.min_duration)
    times = [s.t for s in timeline]
    i = bisect_left(times, window[0].t) - 1
    limit = now - policy.max_lookback
    prev_t = window[0].t
    labels = [s.label for s in faces]
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    last_label = labels[0] if labels else None
    while i >= 0 and timeline[i].t >= limit:
        s = timeline[i]
        if prev_t - s.t > policy.max_gap:
            break
        prev_t = s.t
        if rule.max_changes is not None and s.face:
            changes += s.label != last_label
            last_label = s.label
            if changes > rule.max_changes:
                break
        if s.face and _score(s, rule.indices) >= rule.threshold:
            earliest = s.t
        elif earliest - s.t > tolerance:
            break
        i -= 1
    counts = {e: 0 for e in EMOTIONS}
    sums = {e: 0.0 for e in EMOTIONS}
    for s in faces:
        counts[s.label] += 1  # type: ignore[index]
        for e, p in zip(EMOTIONS, s.probs):  # type: ignore[arg-type]
            sums[e] += p
    means = {e: sums[e] / len(faces) for e in EMOTIONS}
    main = max(rule.states, key=lambda e: means[e])
    return Trigger(rule=rule, start=min(earliest, start), end=now, window_start=start,
                   share=share, coverage=coverage,
                   shares={e: counts[e] / len(faces) for e in EMOTIONS}, means=means,
                   feeling=policy.feelings.get(main, main), samples=len(window))


# --- personalisation ----------------------------------------------------------------------

#: (successes, failures) per (rule, kind): weighted sums of rewards in [0, 1].
Stats = Mapping[tuple[str, str], tuple[float, float]]


@dataclass(frozen=True)
class KindScore:
    kind: str
    alpha: float
    beta: float
    sample: float
    you: float      # observations from this learner
    others: float   # observations from other learners (before capping)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class Personaliser:
    """Thompson sampling over Beta posteriors, one per (rule, kind), per learner."""

    def __init__(self, config: PersonalisationConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.Random()

    def posterior(self, rule: Rule, kind: str, you: Stats, others: Stats) -> tuple[float, float]:
        c = self.config
        w = rule.kinds.get(kind, 0.5)
        alpha = 1.0 + c.prior_strength * w
        beta = 1.0 + c.prior_strength * (1.0 - w)
        s, f = others.get((rule.name, kind), (0.0, 0.0))
        if s + f > 0:
            n_eff = min(c.population_weight * (s + f), c.population_cap)
            alpha += n_eff * s / (s + f)
            beta += n_eff * f / (s + f)
        s, f = you.get((rule.name, kind), (0.0, 0.0))
        return alpha + s, beta + f

    def choose(self, rule: Rule, kinds: Sequence[str], you: Stats,
               others: Stats) -> tuple[str, list[KindScore]]:
        if not kinds:
            raise ValueError("no eligible kinds")
        scores = []
        for k in kinds:
            a, b = self.posterior(rule, k, you, others)
            scores.append(KindScore(k, a, b, self.rng.betavariate(a, b),
                                    sum(you.get((rule.name, k), (0, 0))),
                                    sum(others.get((rule.name, k), (0, 0)))))
        best = max(scores, key=lambda s: s.sample)
        return best.kind, scores


def observations(p: PersonalisationConfig, *, reward: float | None = None,
                 feedback: int | None = None, dismissed: bool = False) -> tuple[float, float]:
    """(successes, failures) contributed by one recommendation's outcome, feedback, dismissal."""
    s = f = 0.0
    if reward is not None:
        s += reward
        f += 1.0 - reward
    if feedback is not None:
        r = 1.0 if feedback > 0 else 0.0
        s += p.feedback_weight * r
        f += p.feedback_weight * (1.0 - r)
    if dismissed:
        f += p.dismiss_weight
    return s, f


# --- the engine ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Recommendation:
    rule: str
    kind: str
    item: CatalogItem
    reason: str
    evidence: dict[str, Any]
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "item": self.item.to_dict(),
                "reason": self.reason, "evidence": self.evidence, "created": self.created}


@dataclass
class LearnerContext:
    """What the engine needs to know about a learner besides the timeline."""

    last_recommended_at: float | None = None       # any rule
    last_by_rule: dict[str, float] = field(default_factory=dict)
    open_recommendation: bool = False
    recent_items: Sequence[str] = ()               # item ids, most recent first
    you: Stats = field(default_factory=dict)       # this learner's (successes, failures)
    others: Stats = field(default_factory=dict)    # other learners' (successes, failures)
    tags: Sequence[str] = ()                        # topic of the session, if known
    level: int | None = None                        # current difficulty 1..5, if known


@dataclass(frozen=True)
class Outcome:
    before: float        # mean share of the rule's `improve` emotions before
    after: float
    delta: float
    reward: float        # in [0, 1]; 0.5 = no change
    samples_before: int
    samples_after: int


class Recommender:
    """Policy + catalog + personalisation: zero or one suggestion for a timeline."""

    def __init__(self, policy: Policy, catalog: Catalog, rng: random.Random | None = None):
        self.policy = policy
        self.catalog = catalog
        self.rng = rng or random.Random()
        self.personaliser = Personaliser(policy.personalisation, self.rng)
        for rule in policy.rules:
            missing = [k for k in rule.kinds if not catalog.by_kind(k)]
            if missing:
                log.warning("policy rule %r: the catalog %s has no items of kind %s; they "
                            "will not be suggested", rule.name, catalog.source,
                            ", ".join(missing))

    def evaluate(self, timeline: Sequence[Sample], now: float) -> Trigger | None:
        """The first rule (in policy order) whose sustained state holds now."""
        for rule in self.policy.rules:
            trig = detect_state(rule, self.policy, timeline, now)
            if trig is not None:
                return trig
        return None

    def attention(self, timeline: Sequence[Sample], now: float) -> Trigger | None:
        """Evidence that an instructor may want to look at this learner, if any."""
        if self.policy.attention is None:
            return None
        return detect_state(self.policy.attention, self.policy, timeline, now)

    def in_cooldown(self, ctx: LearnerContext, now: float, rule: Rule | None = None) -> bool:
        if ctx.last_recommended_at is not None \
                and now - ctx.last_recommended_at < self.policy.cooldown:
            return True
        if rule is not None and rule.name in ctx.last_by_rule \
                and now - ctx.last_by_rule[rule.name] < max(rule.cooldown, self.policy.cooldown):
            return True
        return False

    def recommend(self, timeline: Sequence[Sample], now: float,
                  ctx: LearnerContext | None = None) -> Recommendation | None:
        ctx = ctx or LearnerContext()
        if ctx.open_recommendation or self.in_cooldown(ctx, now):
            return None
        for rule in self.policy.rules:
            trig = detect_state(rule, self.policy, timeline, now)
            if trig is None or self.in_cooldown(ctx, now, rule):
                continue
            kinds = [k for k in rule.kinds if self.catalog.by_kind(k)]
            if not kinds:
                continue
            kind, scores = self.personaliser.choose(rule, kinds, ctx.you, ctx.others)
            item = self.pick_item(kind, ctx)
            evidence = trig.evidence()
            evidence["personalisation"] = {
                s.kind: {"expected_help": round(s.mean, 3), "your_outcomes": round(s.you, 2),
                         "others_outcomes": round(s.others, 2)} for s in scores}
            evidence["why_this_kind"] = self._why(kind, scores)
            return Recommendation(rule=rule.name, kind=kind, item=item, reason=trig.reason(),
                                  evidence=evidence, created=now)
        return None

    @staticmethod
    def _why(kind: str, scores: Sequence[KindScore]) -> str:
        s = next(x for x in scores if x.kind == kind)
        nice = kind.replace("_", " ")
        if s.you >= 1:
            return (f"{nice} has helped you before (expected help {s.mean:.0%} from "
                    f"{s.you:.0f} of your outcomes)")
        if s.others >= 1:
            return f"{nice} has helped other learners (expected help {s.mean:.0%})"
        return f"{nice} is a default suggestion for this situation"

    def pick_item(self, kind: str, ctx: LearnerContext) -> CatalogItem:
        """The item of ``kind`` least recently shown, closest in topic and difficulty."""
        items = self.catalog.by_kind(kind)
        recent = {item_id: i for i, item_id in enumerate(ctx.recent_items)}
        tags = {t.lower() for t in ctx.tags}
        target = None
        if ctx.level is not None:
            target = max(1, min(5, ctx.level + self.policy.kind_difficulty.get(kind, 0)))

        def key(it: CatalogItem) -> tuple:
            seen = recent.get(it.id)
            return (0 if seen is None else 1, -(seen or 0),
                    -len(tags & set(it.tags)),
                    abs(it.difficulty - target) if target is not None else 0,
                    self.rng.random())
        return min(items, key=key)

    def outcome(self, rule_name: str, timeline: Sequence[Sample], recommended_at: float,
                accepted_at: float) -> Outcome | None:
        """The change in affect after an accepted suggestion; None without enough faces."""
        try:
            rule = self.policy.rule(rule_name)
        except KeyError:
            return None
        o = self.policy.outcome
        idx = rule.improve_indices
        before = [_score(s, idx) for s in timeline
                  if s.face and recommended_at - o.before <= s.t <= recommended_at]
        after = [_score(s, idx) for s in timeline
                 if s.face and accepted_at + o.delay <= s.t <= accepted_at + o.delay + o.window]
        if len(before) < o.min_samples or len(after) < o.min_samples:
            return None
        b, a = sum(before) / len(before), sum(after) / len(after)
        if rule.measure == "level":
            reward = a
        else:
            reward = 0.5 + (a - b) / (2 * o.scale)
        return Outcome(before=b, after=a, delta=a - b, reward=min(1.0, max(0.0, reward)),
                       samples_before=len(before), samples_after=len(after))

    def outcome_due(self, accepted_at: float) -> float:
        o = self.policy.outcome
        return accepted_at + o.delay + o.window
