"""Face tracks across frames, temporal smoothing of their emotions, and timelines.

- :class:`Tracker` gives each face a stable id by greedy IoU matching of the new boxes to the
  boxes of live tracks (with a centre-distance fallback for faces that moved quickly). A track
  whose face is not found for ``max_missed`` detection rounds in a row ends.
- Each track smooths its probabilities over emotion updates: an exponential moving average
  (``ema``, weight ``alpha`` on the newest), a mean over the last ``window`` updates
  (``window``), or ``none``. The smoothed label is the argmax of the smoothed probabilities,
  so it does not flicker with single-frame noise.
- On top of that, :class:`StableLabel` decides the label *shown to people* (``stable_label``):
  it moves to another emotion only once that emotion has been the top smoothed class for
  ``min_dwell`` seconds (the readings' own timestamps, so a video file behaves the same at
  any speed) and its smoothed probability beats the shown label's by ``hysteresis``. Two
  close emotions that trade places every few tenths of a second keep one label. The
  probabilities are never changed by it; ``min_dwell=0, hysteresis=0`` makes the stable
  label the smoothed label.
- :class:`Timeline` collects (time, track, shown label) and turns them into a summary:
  per track, its duration and the share of time spent in each emotion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import options
from .emotions import EMOTIONS
from .faces import Box
from .options import setting

SMOOTHING = ("ema", "window", "none")
#: Largest ``min_dwell`` (seconds) and ``hysteresis`` (exclusive) accepted, for every front end.
MAX_MIN_DWELL = 60.0
MAX_HYSTERESIS = 1.0


@dataclass
class TrackerConfig:
    """Tracking and smoothing. Filled from ``detect --smoothing/--alpha/--window/...``."""

    smoothing: str = setting("ema", choices=SMOOTHING,
                             help="how each face's probabilities are smoothed over time: ema "
                                  "(moving average, --alpha), window (mean of the last --window "
                                  "readings) or none")
    alpha: float = setting(0.3, min=0, min_open=True, max=1,  # 1 = no smoothing
                           help="EMA weight of the newest reading")
    window: int = setting(10, min=1, help="window smoothing: number of readings averaged")
    iou_threshold: float = setting(0.3, cli=False, min=0, max=1, max_open=True,
                                   help="minimum overlap to continue a track")
    max_missed: int = setting(5, min=0,
                              help="detection rounds without a face before its track ends")
    min_dwell: float = setting(1.0, min=0, max=MAX_MIN_DWELL, unit="seconds",
                               help="seconds (media time) a new emotion must stay on top before "
                                    "the shown label (stable_label) changes to it (0 = at once)")
    hysteresis: float = setting(0.1, min=0, max=MAX_HYSTERESIS, max_open=True,
                                help="how much the new emotion's smoothed probability must "
                                     "exceed the shown label's before it changes (0 with "
                                     "--min-dwell 0 = the top class)")

    def __post_init__(self) -> None:
        options.check(self)

    def validate(self) -> TrackerConfig:
        """Check the settings again (they may have been changed since the config was made)."""
        options.check(self)
        return self


class Smoother:
    """Temporal smoothing of one track's probability vectors."""

    def __init__(self, config: TrackerConfig) -> None:
        self.kind = config.smoothing
        self.alpha = config.alpha
        self.history: deque[np.ndarray] = deque(maxlen=config.window)
        self.value: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, np.float64)
        if self.kind == "ema" and self.value is not None:
            self.value = self.alpha * probs + (1.0 - self.alpha) * self.value
        elif self.kind == "window":
            self.history.append(probs)
            self.value = np.mean(self.history, axis=0)
        else:  # "none", or the first EMA update
            self.value = probs.copy()
        return self.value


class StableLabel:
    """The label shown to people for one track (or one learner): a small state machine over
    the smoothed probabilities, with a minimum dwell time and a hysteresis margin.

    The first reading takes its top class at once. After that the label moves to another
    emotion only when that emotion has been the top smoothed class in every reading for at
    least ``min_dwell`` seconds (reading time ``t``, not the wall clock) *and* its smoothed
    probability is at least ``hysteresis`` above the current label's. Whenever the top
    class returns to the current label, or another emotion takes the top, the dwell starts
    again. ``min_dwell=0, hysteresis=0`` follows the top class exactly."""

    _EPS = 1e-9  # float slack, so 0.6 - 0.5 counts as a margin of 0.1

    def __init__(self, config: TrackerConfig) -> None:
        self.min_dwell = config.min_dwell
        self.hysteresis = config.hysteresis
        self.index: int | None = None  # the shown label, as an index into EMOTIONS
        self.candidate: int | None = None  # another top class, waiting out the dwell
        self.since: float | None = None  # when the candidate became the top class

    @property
    def label(self) -> str | None:
        return None if self.index is None else EMOTIONS[self.index]

    def reset(self) -> None:
        """Forget the shown label (the face left): the next reading is taken at once."""
        self.index = self.candidate = self.since = None

    def update(self, smoothed: Sequence[float] | np.ndarray, t: float) -> str:
        """Take the smoothed probabilities (EMOTIONS order) read at time ``t`` (seconds);
        return the label to show now."""
        p = np.asarray(smoothed, np.float64)
        top = int(np.argmax(p))
        if self.index is None or top == self.index:
            self.index = top if self.index is None else self.index
            self.candidate = self.since = None
            return EMOTIONS[self.index]
        if top != self.candidate:  # a new contender: its dwell starts now
            self.candidate, self.since = top, t
        assert self.since is not None
        held = t - self.since >= self.min_dwell - self._EPS
        margin = p[top] - p[self.index] >= self.hysteresis - self._EPS
        if held and margin:
            self.index = top
            self.candidate = self.since = None
        return EMOTIONS[self.index]


@dataclass
class Track:
    """One face followed over time."""

    id: int
    box: Box
    first_t: float
    last_t: float
    smoother: Smoother
    hits: int = 1  # detections matched to this track
    missed: int = 0  # detection rounds in a row without it
    probs: np.ndarray | None = None  # last raw probabilities
    smoothed: np.ndarray | None = None
    updated_t: float | None = None  # time of the last emotion update
    updates: int = 0
    # the shown label's state machine; Tracker gives it the tracker's settings
    labeler: StableLabel = field(default_factory=lambda: StableLabel(TrackerConfig()))

    @property
    def label(self) -> str | None:
        return None if self.probs is None else EMOTIONS[int(np.argmax(self.probs))]

    @property
    def smoothed_label(self) -> str | None:
        """The top class of the smoothed probabilities."""
        return None if self.smoothed is None else EMOTIONS[int(np.argmax(self.smoothed))]

    @property
    def stable_label(self) -> str | None:
        """The label to show people: the smoothed label after dwell and hysteresis."""
        return self.labeler.label

    @property
    def confidence(self) -> float:
        return 0.0 if self.smoothed is None else float(np.max(self.smoothed))

    def set_probs(self, probs: np.ndarray, t: float) -> None:
        """A new emotion reading for this face: store it and update the smoothed value and
        the shown label."""
        self.probs = np.asarray(probs, np.float32)
        self.smoothed = self.smoother.update(self.probs).astype(np.float32)
        self.labeler.update(self.smoothed, t)
        self.updated_t = t
        self.updates += 1

    def due(self, t: float, refresh_hz: float) -> bool:
        """Whether the emotion should be re-read at time ``t`` (``refresh_hz`` 0 = always)."""
        if self.updated_t is None or refresh_hz <= 0:
            return True
        return t - self.updated_t >= 1.0 / refresh_hz - 1e-6


class Tracker:
    """Keeps face ids across frames by matching boxes; ends tracks of faces that are gone."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = (config or TrackerConfig()).validate()
        self.tracks: list[Track] = []
        # tracks that ended since the last pop_ended(); a caller that keeps a Tracker
        # running must pop them (EmotionDetector does), or they pile up
        self.ended: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Box], t: float) -> list[Track]:
        """Match this detection round's boxes to tracks; return the tracks seen now, in the
        order of ``boxes``. Unmatched boxes start tracks; tracks unmatched ``max_missed + 1``
        rounds in a row end (see :meth:`pop_ended`)."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            for bi, box in enumerate(boxes):
                iou = track.box.iou(box)
                if iou >= self.config.iou_threshold:
                    pairs.append((iou, ti, bi))
                else:  # a face that moved fast: near the old centre, similar size
                    (ax, ay), (bx, by) = track.box.center, box.center
                    dist = math.hypot(ax - bx, ay - by)
                    ratio = box.w / max(track.box.w, 1)
                    if dist < 0.5 * max(track.box.w, 1) and 0.67 < ratio < 1.5:
                        pairs.append((0.5 * self.config.iou_threshold * (1 - dist / track.box.w),
                                      ti, bi))
        pairs.sort(key=lambda p: -p[0])
        used_t: set[int] = set()
        assigned: dict[int, Track] = {}
        for _, ti, bi in pairs:
            if ti in used_t or bi in assigned:
                continue
            used_t.add(ti)
            track = self.tracks[ti]
            track.box, track.last_t = boxes[bi], t
            track.hits += 1
            track.missed = 0
            assigned[bi] = track
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                track.missed += 1
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                track = Track(self._next_id, box, t, t, Smoother(self.config),
                              labeler=StableLabel(self.config))
                self._next_id += 1
                self.tracks.append(track)
                assigned[bi] = track
        alive = [tr for tr in self.tracks if tr.missed <= self.config.max_missed]
        self.ended.extend(tr for tr in self.tracks if tr.missed > self.config.max_missed)
        self.tracks = alive
        return [assigned[bi] for bi in range(len(boxes))]

    def follow(self, tracks: Sequence[Track], boxes: Sequence[Box], t: float) -> list[Track]:
        """Move known tracks to boxes found for them individually (between full detections)."""
        for track, box in zip(tracks, boxes):
            track.box, track.last_t = box, t
            track.hits += 1
        return list(tracks)

    def visible(self) -> list[Track]:
        """Tracks whose face was found in the last detection round."""
        return [tr for tr in self.tracks if tr.missed == 0]

    def end_all(self) -> None:
        """End every track (a new unrelated image, or the end of the source)."""
        self.ended.extend(self.tracks)
        self.tracks = []

    def pop_ended(self) -> list[Track]:
        ended, self.ended = self.ended, []
        return ended


@dataclass
class _Span:
    first_t: float
    last_t: float
    samples: list[tuple[float, str]] = field(default_factory=list)


class Timeline:
    """Labels per track over time (the detector gives the shown, stable labels), summarised
    as shares of time per emotion.

    Each observation counts until the track's next one, capped at ``max_gap`` seconds; the
    last observation of a track counts for the track's typical interval. Frames without any
    face are counted too."""

    def __init__(self, max_gap: float = 1.0) -> None:
        self.max_gap = max_gap
        self.tracks: dict[int, _Span] = {}
        self.no_face: list[float] = []
        self.frames = 0

    def add_frame(self, t: float, labels: dict[int, str]) -> None:
        """Record one analysed frame: ``{track_id: label}`` (empty = no face)."""
        self.frames += 1
        if not labels:
            self.no_face.append(t)
        for tid, label in labels.items():
            span = self.tracks.get(tid)
            if span is None:
                span = self.tracks[tid] = _Span(t, t)
            span.last_t = t
            span.samples.append((t, label))

    def _weights(self, times: np.ndarray) -> np.ndarray:
        if len(times) == 1:
            return np.ones(1)
        dt = np.minimum(np.diff(times), self.max_gap)
        typical = float(np.median(dt)) if len(dt) else 0.0
        return np.append(dt, typical)

    def summary(self) -> dict:
        """``{"tracks": {id: {...}}, "no_face_frames": n, "frames": n}`` with, per track,
        ``start``, ``end``, ``duration`` (seconds), ``samples``, ``shares`` (label -> fraction
        of the track's time, the six labels always present), ``dominant`` and ``segments``
        (runs of one label: [start, end, label])."""
        out: dict[str, dict] = {}
        for tid, span in sorted(self.tracks.items()):
            times = np.array([s[0] for s in span.samples], np.float64)
            labels = [s[1] for s in span.samples]
            w = self._weights(times)
            total = float(w.sum())
            shares = dict.fromkeys(EMOTIONS, 0.0)
            for weight, label in zip(w, labels):
                shares[label] += float(weight)
            if total > 0:
                shares = {k: round(v / total, 4) for k, v in shares.items()}
            else:  # all samples at one instant: count them
                shares = {k: round(labels.count(k) / len(labels), 4) for k in EMOTIONS}
            segments: list[list] = []
            for (t, label), weight in zip(span.samples, w):
                if segments and segments[-1][2] == label:
                    segments[-1][1] = round(t + float(weight), 4)
                else:
                    segments.append([round(t, 4), round(t + float(weight), 4), label])
            out[str(tid)] = {
                "start": round(span.first_t, 4), "end": round(span.last_t, 4),
                "duration": round(span.last_t - span.first_t + float(w[-1]), 4),
                "samples": len(span.samples), "shares": shares,
                "dominant": max(shares, key=lambda k: shares[k]), "segments": segments}
        return {"frames": self.frames, "no_face_frames": len(self.no_face), "tracks": out}
