"""Timelines of readings, and detection of sustained states in them.

A sample is *in* a rule's state when the label people were shown for it is one of the
rule's emotions (and, when the rule sets a ``threshold``, those emotions' summed smoothed
probability reaches it): the rules judge what learners and instructors see. A state counts
only when it *holds*: over a rule's whole window, with a face in most of it, no long gaps
and (optionally) few changes of the shown label. Brief moments never count, and nothing is
detected while no face is seen.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..emotions import EMOTIONS
from .policy import Policy, Rule


class Point(Protocol):
    """What the rules read of a timeline's point: a :class:`Sample`, or the service's
    :class:`~multinet_emotion.emotions.Reading`."""

    @property
    def t(self) -> float: ...
    @property
    def probs(self) -> tuple[float, ...] | None: ...
    @property
    def shown_label(self) -> str | None: ...
    @property
    def face(self) -> bool: ...


@dataclass(frozen=True)
class Sample:
    """One point of a learner's timeline: smoothed probabilities and the label shown, or no
    face at time t. (The service's :class:`~multinet_emotion.emotions.Reading` is one too.)"""

    t: float                                   # seconds (epoch or any monotonic origin)
    probs: tuple[float, ...] | None = None     # six floats in EMOTIONS order; None = no face
    shown_label: str | None = None             # the label shown (default: the top class)

    def __post_init__(self) -> None:
        if self.shown_label is None and self.probs is not None:  # probabilities alone
            object.__setattr__(self, "shown_label", self.label)

    @property
    def face(self) -> bool:
        return self.probs is not None

    @property
    def label(self) -> str | None:
        if self.probs is None:
            return None
        return EMOTIONS[max(range(len(EMOTIONS)), key=self.probs.__getitem__)]

    @classmethod
    def from_probs(cls, t: float, probs: Mapping[str, float] | Sequence[float] | None,
                   shown_label: str | None = None) -> Sample:
        """A sample of these probabilities, shown as ``shown_label`` (default: their top
        class, for timelines made of probabilities alone)."""
        if probs is None:
            return cls(float(t), None)
        if isinstance(probs, Mapping):
            values = tuple(float(probs.get(e, 0.0)) for e in EMOTIONS)
        else:
            values = tuple(float(p) for p in probs)
            if len(values) != len(EMOTIONS):
                raise ValueError(f"expected {len(EMOTIONS)} probabilities, got {len(values)}")
        return cls(float(t), values, shown_label)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Sample:
        """Build a sample from a detector event (the JSON Lines dicts of ``detect``): its
        smoothed probabilities and the label it showed."""
        if not event.get("face"):
            return cls(float(event["t"]), None)
        return cls.from_probs(event["t"], event.get("smoothed") or event["probs"],
                              event.get("shown_label"))


def score(sample: Point, indices: Sequence[int]) -> float:
    """The summed probability of the emotions at `indices` (the sample must show a face)."""
    assert sample.probs is not None
    return sum(sample.probs[i] for i in indices)


def in_state(sample: Point, rule: Rule) -> bool:
    """Whether a face sample is in the rule's state: the label shown for it is one of the
    rule's emotions (and their summed probability reaches the rule's ``threshold``, when it
    sets one)."""
    if sample.shown_label not in rule.states:
        return False
    return rule.threshold is None or score(sample, rule.indices) >= rule.threshold


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



@dataclass(frozen=True)
class Trigger:
    """A rule whose state held over the window ending at ``end``: the evidence."""

    rule: Rule
    start: float             # earliest start for which the state still held (the reason)
    end: float
    window_start: float      # the rule's own window (min_duration)
    share: float             # share of face samples "in the state" over the window
    coverage: float          # share of samples with a face
    shares: dict[str, float]  # share of face samples per shown label
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


def _window(timeline: Sequence[Point], start: float, end: float,
            max_gap: float) -> Sequence[Point] | None:
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


def _holds(rule: Rule, window: Sequence[Point], min_coverage: float) -> tuple[bool, float, float]:
    faces = [s for s in window if s.face]
    coverage = len(faces) / len(window)
    if not faces or coverage < min_coverage:
        return False, 0.0, coverage
    share = sum(in_state(s, rule) for s in faces) / len(faces)
    if share < rule.min_share:
        return False, share, coverage
    if rule.max_changes is not None:
        labels = [s.shown_label for s in faces]
        changes = sum(a != b for a, b in zip(labels, labels[1:]))
        if changes > rule.max_changes:
            return False, share, coverage
    return True, share, coverage


def detect_state(rule: Rule, policy: Policy, timeline: Sequence[Point],
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
    labels = [s.shown_label for s in faces]
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    last_label = labels[0] if labels else None
    while i >= 0 and timeline[i].t >= limit:
        s = timeline[i]
        if prev_t - s.t > policy.max_gap:
            break
        prev_t = s.t
        if rule.max_changes is not None and s.face:
            changes += s.shown_label != last_label
            last_label = s.shown_label
            if changes > rule.max_changes:
                break
        if s.face and in_state(s, rule):
            earliest = s.t
        elif earliest - s.t > tolerance:
            break
        i -= 1
    counts = {e: 0 for e in EMOTIONS}
    sums = {e: 0.0 for e in EMOTIONS}
    for s in faces:
        if s.shown_label is not None:
            counts[s.shown_label] += 1
        for e, p in zip(EMOTIONS, s.probs):  # type: ignore[arg-type]
            sums[e] += p
    means = {e: sums[e] / len(faces) for e in EMOTIONS}
    # the feeling named is the rule's emotion shown most often (then the likelier one)
    main = max(rule.states, key=lambda e: (counts[e], means[e]))
    return Trigger(rule=rule, start=min(earliest, start), end=now, window_start=start,
                   share=share, coverage=coverage,
                   shares={e: counts[e] / len(faces) for e in EMOTIONS}, means=means,
                   feeling=policy.feelings.get(main, main), samples=len(window))

