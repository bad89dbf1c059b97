"""The policy: which sustained states get which content kinds, and how outcomes are valued.

These models are both the typed form of a policy file (YAML/JSON, ``assets/policy.yaml`` by
default; see :mod:`.files`) and what the engine reads. Each setting is stated once here:
its name, default and range.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from ..emotions import EMOTIONS
from .schema import (
    IS_NUMBER,
    IS_WHOLE,
    NAME,
    NAME_HINT,
    Emotions,
    FileModel,
    Fraction,
    Invalid,
    Name,
    Seconds,
    Text,
    between,
    version_1,
)

DEFAULT_FEELINGS: dict[str, str] = {
    "angry": "frustrated", "fear": "anxious", "happy": "engaged",
    "neutral": "flat", "sad": "down", "surprise": "surprised",
}

DEFAULT_REASON = "you seemed {feeling} for the last {duration}"

# The ranges of the settings below (the bounds are part of the error messages).
Period = Annotated[float, between(1.0, 86_400.0), IS_NUMBER]      # seconds, at least one
Gap = Annotated[float, between(0.1, 3600.0), IS_NUMBER]
Scale = Annotated[float, between(0.01, 1.0), IS_NUMBER]
Strength = Annotated[float, between(0.0, 1000.0), IS_NUMBER]
Cap = Annotated[float, between(0.0, 100_000.0), IS_NUMBER]
Weight = Annotated[float, between(0.0, 100.0), IS_NUMBER]
Changes = Annotated[int, between(0, 10_000), IS_WHOLE]
SampleCount = Annotated[int, between(1, 100_000), IS_WHOLE]


class Rule(FileModel):
    """A sustained state and the content kinds that may help with it."""

    what: ClassVar[str] = "a rule"

    name: Name
    states: Emotions
    # a sample is "in" the state when its shown label is one of `states`; a threshold adds
    # that the summed smoothed probability of `states` must reach it too
    threshold: Fraction | None = None
    min_share: Fraction = 0.7          # share of face samples in the window that must be "in"
    min_duration: Period           # seconds the state must hold
    cooldown: Seconds = 0.0            # extra per-rule cool-down (the policy's applies too)
    max_changes: Changes | None = None  # at most this many changes of the shown label
    kinds: dict[str, float]            # content kind -> default chance it helps
    improve: Emotions = ("happy", "neutral", "surprise")
    measure: str = "change"            # reward from the change of `improve`, or its level after
    reason: Text = DEFAULT_REASON

    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> dict[str, float]:
        if isinstance(v, (list, tuple)):  # a list of kinds: each has an even chance
            v = dict.fromkeys(v, 0.5)
        if not isinstance(v, dict):
            raise Invalid("'kinds' must map content kinds to a default chance of helping "
                          "(0..1), e.g. {break: 0.5}")
        if not v:
            raise Invalid("'kinds' is empty")
        for k, w in v.items():
            if not isinstance(k, str) or not NAME.match(k):
                raise Invalid(f"content kind {k!r} is not a valid name{NAME_HINT}", at=(k,))
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
                raise Invalid(f"weight of kind {k!r} must be between 0 and 1, got {w!r}",
                              at=(k,))
        return {k: float(w) for k, w in v.items()}

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str) -> str:
        if v not in ("change", "level"):
            raise Invalid(f"'measure' must be 'change' or 'level', got {v!r}")
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        try:
            v.format(feeling="x", duration="y", state="z")
        except (KeyError, IndexError, ValueError) as e:
            raise Invalid(f"'reason' may only use {{feeling}}, {{duration}} and {{state}} "
                          f"({e})") from None
        return v

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(EMOTIONS.index(s) for s in self.states)

    @property
    def improve_indices(self) -> tuple[int, ...]:
        return tuple(EMOTIONS.index(s) for s in self.improve)


class AttentionRule(Rule):
    """When an instructor should look at a learner: a rule that suggests no content."""

    what: ClassVar[str] = "the attention rule"

    name: Name = "attention"
    kinds: dict[str, float] = Field(default_factory=dict)

    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> dict[str, float]:
        raise Invalid("the attention rule suggests no content: remove 'kinds'")


class OutcomeConfig(FileModel):
    """How an accepted suggestion is rewarded: the change of affect it was followed by."""

    what: ClassVar[str] = "'outcome'"

    before: Period = 60.0                   # seconds before the suggestion used as the baseline
    delay: Seconds = 10.0                   # seconds after acceptance before measuring starts
    window: Period = 120.0                  # seconds measured
    scale: Scale = 0.3                      # change of the `improve` share that is full success
    min_samples: SampleCount = 10           # face samples needed on each side, else not measured


class PersonalisationConfig(FileModel):
    """Thompson sampling per learner: the priors and the weight of each kind of evidence."""

    what: ClassVar[str] = "'personalisation'"

    prior_strength: Strength = 2.0                 # pseudo-observations from the kind weights
    population_weight: Fraction = 0.3              # weight of each observation from others
    population_cap: Cap = 10.0                     # at most this many from other learners
    feedback_weight: Weight = 1.0                  # thumbs up = reward 1, down = reward 0
    dismiss_weight: Weight = 0.5                   # a dismissal is reward 0 with this weight


class Policy(FileModel):
    """Rules checked in order (the first that holds wins) and the limits around them."""

    what: ClassVar[str] = "the policy"

    version: Annotated[int, version_1("policy")] = 1
    rules: tuple[Rule, ...]
    cooldown: Seconds = 300.0                      # seconds between two suggestions, any rule
    expire_after: Period = 600.0                   # an unanswered suggestion is then withdrawn
    max_gap: Gap = 10.0                            # a longer gap between samples breaks a window
    min_face_coverage: Fraction = 0.8              # share of a window's samples showing a face
    max_lookback: Period = 1800.0                  # how far back "for the last N minutes" reaches
    outcome: OutcomeConfig = Field(default_factory=OutcomeConfig)
    personalisation: PersonalisationConfig = Field(default_factory=PersonalisationConfig)
    attention: AttentionRule | None = None         # when an instructor should look
    feelings: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FEELINGS))
    kind_difficulty: dict[str, int] = Field(default_factory=dict)  # kind -> level shift

    _source: str = PrivateAttr("<memory>")

    @field_validator("rules", mode="before")
    @classmethod
    def _some_rules(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not v:
            raise Invalid("'rules' must be a non-empty list of rules")
        return v

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for i, r in enumerate(rules):
            if r.name in seen:
                raise Invalid(f"duplicate rule name {r.name!r}", at=(i,))
            seen.add(r.name)
        return rules

    @field_validator("feelings", mode="before")
    @classmethod
    def _feelings(cls, v: Any) -> dict[str, str]:
        if not isinstance(v, dict):
            raise Invalid("'feelings' must be a mapping (key: value)")
        for k, word in v.items():
            if k not in EMOTIONS or not isinstance(word, str) or not word.strip():
                raise Invalid(f"'feelings' maps an emotion ({', '.join(EMOTIONS)}) to a word, "
                              f"got {k!r}: {word!r}", at=(k,))
        return DEFAULT_FEELINGS | {k: word.strip() for k, word in v.items()}

    @field_validator("kind_difficulty", mode="before")
    @classmethod
    def _shifts(cls, v: Any) -> dict[str, int]:
        if not isinstance(v, dict):
            raise Invalid("'kind_difficulty' must be a mapping (key: value)")
        for k, shift in v.items():
            if isinstance(shift, bool) or not isinstance(shift, int) or not -4 <= shift <= 4:
                raise Invalid(f"'kind_difficulty' of {k!r} must be a whole number of levels "
                              f"between -4 and 4, got {shift!r}", at=(k,))
        return {str(k): shift for k, shift in v.items()}

    @property
    def source(self) -> str:
        """The file the policy was loaded from (``<memory>`` when built in Python)."""
        return self._source

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
