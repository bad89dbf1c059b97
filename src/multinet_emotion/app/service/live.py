"""The in-memory view of a live session, and the readings it is made of.

Every sample is a :class:`~multinet_emotion.emotions.Reading`, from the detector or a client
alike: taken as it is, given its shown label, averaged per ``sample_interval`` into the one
reading stored for it (:func:`average`), and kept as it is in the live timeline the
recommender reads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from ...emotions import EMOTIONS, Reading
from ...runtime.label_filter import LabelFilter
from ..store import LearningSession, RecommendationRow


def client_reading(t: float, probs: Mapping[Any, float] | None,  # keyed by emotion name (str or Literal)
                   confidence: float | None = None, label: str | None = None) -> Reading:
    """A sample from a client that classified on its own, over the HTTP API or the WebSocket
    alike: its probabilities (validated to sum to about 1) normalised to sum exactly 1, in
    EMOTIONS order, and the label it showed (None: none, or still reading); no
    probabilities = no face."""
    if not probs:
        return Reading(t, None)
    total = sum(probs[e] for e in EMOTIONS)
    return Reading(t, tuple(probs[e] / total for e in EMOTIONS), confidence,
                   shown_label=label)


def average(readings: Sequence[Reading]) -> Reading:
    """The one reading stored for a sample interval, at the time of its last reading: the
    mean of its face readings (probabilities and confidence) with the label shown for most
    of them (a tie: the later), or no face when nobody was in view for at least half of
    its readings."""
    faces = [r for r in readings if r.probs is not None]
    t = readings[-1].t
    if not faces or len(faces) * 2 <= len(readings):  # nobody there half the time or more
        return Reading(t, None)
    n = len(faces)
    sums = [0.0] * len(EMOTIONS)
    for r in faces:
        sums = [a + b for a, b in zip(sums, r.probs)]  # type: ignore[arg-type]
    confidence = sum(r.confidence or 0.0 for r in faces)
    counts: dict[str, int] = {}
    for r in faces:
        if r.shown_label is not None:
            counts[r.shown_label] = counts.get(r.shown_label, 0) + 1
    label = None
    for r in faces:  # in time order, so a tie goes to the label shown later
        if r.shown_label is not None and (label is None or
                                          counts[r.shown_label] >= counts[label]):
            label = r.shown_label
    return Reading(t, tuple(x / n for x in sums), confidence / n, shown_label=label)


class LiveSession:
    """The in-memory view of one session. Read and change it under ``lock`` (with several
    processes: :meth:`.shared_live.LiveSync.guard`)."""

    def __init__(self, row: LearningSession, horizon: float,
                 labeler: LabelFilter | None = None):
        self.row = row
        self.id, self.learner_id, self.class_id = row.id, row.learner_id, row.class_id
        # what the recommender reads: the stored readings of the last `horizon` seconds
        self.timeline: deque[Reading] = deque()
        self.horizon = horizon
        # the readings of the sample interval `interval` not stored yet (see average)
        self.interval: int | None = None
        self.pending: list[Reading] = []
        self.last_raw_t: float | None = None
        self.current: Reading | None = None  # the latest reading, with the label shown
        # labels the samples that come without a shown label (clients other than the page)
        self.labeler = labeler or LabelFilter()
        self.main_track: Any = None
        self.open_rec: RecommendationRow | None = None
        self.last_recommended_at: float | None = None
        self.last_by_rule: dict[str, float] = {}
        self.recent_items: list[str] = []
        self.pending_outcomes: list[RecommendationRow] = []
        self.last_seen = 0.0
        self.ended = row.ended_at is not None
        self.lock = threading.RLock()
        # with several processes (.shared_live): the version of the shared live state this
        # cache reflects (None: re-read it), and whether this thread holds the session
        self.version: int | None = None
        self.held = False

    def append(self, r: Reading) -> None:
        self.timeline.append(r)
        while self.timeline and self.timeline[0].t < r.t - self.horizon:
            self.timeline.popleft()

    def is_live(self, now: float, live_seconds: float) -> bool:
        """Not ended, and a sample came within the last ``live_seconds``."""
        return not self.ended and now - self.last_seen <= live_seconds
