"""Face tracks across frames, temporal smoothing of their emotions, and timelines.

- :class:`Tracker` gives each face a stable id by greedy IoU matching of the new boxes to the
  boxes of live tracks (with a centre-distance fallback for faces that moved quickly). A track
  whose face is not found for ``max_missed`` detection rounds in a row ends.
- Each track smooths its probabilities over emotion updates: an exponential moving average
  (``ema``, weight ``alpha`` on the newest), a mean over the last ``window`` updates
  (``window``), or ``none``. The smoothed label is the argmax of the smoothed probabilities,
  so it does not flicker with single-frame noise.
- The label *shown to people* (``shown_label``) comes from each track's
  :class:`~.label_filter.LabelFilter` over its raw readings (a sticky hidden-Markov filter
  driven by the readings' own timestamps, so a video file behaves the same at any speed).
- A new track is *tentative* until it has been found in ``confirm_hits`` frames in a row; a
  tentative track ends at its first miss. Only confirmed tracks are reported, so a lamp or
  a hand that looks like a face for a frame or two never becomes a "face".
- :class:`Timeline` collects (time, track, shown label) and turns them into a summary:
  per track, its real span and the share of time spent in each emotion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import options
from ..emotions import EMOTIONS
from ..options import setting
from .faces import Box
from .label_filter import FilterConfig, LabelFilter

SMOOTHING = ("ema", "window", "none")


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
    confirm_hits: int = setting(3, min=1, max=100, unit="frames",
                                help="a new face is reported once it has been found in this "
                                     "many frames in a row (1 = at once); until then a miss "
                                     "ends it")
    label: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        options.check(self)

    def validate(self) -> TrackerConfig:
        """Check the settings again (they may have been changed since the config was made)."""
        options.check(self)
        options.check(self.label)
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
    # the shown label's filter; Tracker gives it the tracker's settings
    labeler: LabelFilter = field(default_factory=LabelFilter)
    confirmed: bool = False  # found in TrackerConfig.confirm_hits frames in a row

    @property
    def label(self) -> str | None:
        return None if self.probs is None else EMOTIONS[int(np.argmax(self.probs))]

    @property
    def smoothed_label(self) -> str | None:
        """The top class of the smoothed probabilities."""
        return None if self.smoothed is None else EMOTIONS[int(np.argmax(self.smoothed))]

    @property
    def shown_label(self) -> str | None:
        """The label to show people (the track's LabelFilter); None while reading."""
        return self.labeler.label

    @property
    def confidence(self) -> float:
        return 0.0 if self.smoothed is None else float(np.max(self.smoothed))

    def set_probs(self, probs: np.ndarray, t: float, settle: bool = False) -> None:
        """A new emotion reading for this face: store it and update the smoothed value and
        the shown label (``settle``: decide the label now, see LabelFilter.update)."""
        self.probs = np.asarray(probs, np.float32)
        self.smoothed = self.smoother.update(self.probs).astype(np.float32)
        self.labeler.update(self.probs, t, settle)
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
                else:  # a face that moved fast, or a head turned away (a detector then
                    # boxes the half of the face it still sees): near the old centre, no
                    # less than 0.4 and no more than 2.5 times the old size
                    (ax, ay), (bx, by) = track.box.center, box.center
                    dist = math.hypot(ax - bx, ay - by)
                    ratio = box.w / max(track.box.w, 1)
                    side = max(track.box.w, box.w, 1)  # (the larger box's)
                    if dist < 0.5 * side and 0.4 < ratio < 2.5:
                        pairs.append((0.5 * self.config.iou_threshold * (1 - dist / side),
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
            self._hit(track)
            track.missed = 0
            assigned[bi] = track
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                track.missed += 1
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                track = Track(self._next_id, box, t, t, Smoother(self.config),
                              labeler=LabelFilter(self.config.label))
                track.confirmed = self.config.confirm_hits <= 1
                self._next_id += 1
                self.tracks.append(track)
                assigned[bi] = track
        alive = [tr for tr in self.tracks if not self._gone(tr)]
        self.ended.extend(tr for tr in self.tracks if self._gone(tr))
        self.tracks = alive
        return [assigned[bi] for bi in range(len(boxes))]

    def _hit(self, track: Track) -> None:
        track.hits += 1
        if track.hits >= self.config.confirm_hits:
            track.confirmed = True

    def _gone(self, track: Track) -> bool:
        """Missed too often: a confirmed track after max_missed rounds, a tentative one at
        its first miss."""
        return track.missed > (self.config.max_missed if track.confirmed else 0)

    def follow(self, tracks: Sequence[Track], boxes: Sequence[Box], t: float) -> list[Track]:
        """Move known tracks to boxes found for them individually (between full detections)."""
        for track, box in zip(tracks, boxes):
            track.box, track.last_t = box, t
            self._hit(track)
        return list(tracks)

    def confirm_all(self) -> None:
        """Take every live track as confirmed (a still image: one frame is all there is)."""
        for track in self.tracks:
            track.confirmed = True

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
    samples: list[tuple[float, str | None]] = field(default_factory=list)


class Timeline:
    """Labels per track over time (the detector gives the shown labels; None = still
    reading), summarised as shares of time per emotion.

    Each observation counts until the track's next one, capped at ``max_gap`` seconds; the
    last observation of a track counts for the source's typical frame interval (the median
    time between analysed frames). A track lasts from its first observation to its last
    plus that interval: its real span. Frames without any face are counted too."""

    def __init__(self, max_gap: float = 1.0) -> None:
        self.max_gap = max_gap
        self.tracks: dict[int, _Span] = {}
        self.no_face: list[float] = []
        self.frame_times: list[float] = []

    @property
    def frames(self) -> int:
        return len(self.frame_times)

    def add_frame(self, t: float, labels: dict[int, str | None]) -> None:
        """Record one analysed frame: ``{track_id: shown label}`` (empty = no face)."""
        self.frame_times.append(t)
        if not labels:
            self.no_face.append(t)
        for tid, label in labels.items():
            span = self.tracks.get(tid)
            if span is None:
                span = self.tracks[tid] = _Span(t, t)
            span.last_t = t
            span.samples.append((t, label))

    def frame_interval(self) -> float:
        """The median time between analysed frames (0 for fewer than two frames)."""
        if len(self.frame_times) < 2:
            return 0.0
        return float(np.median(np.minimum(np.diff(self.frame_times), self.max_gap)))

    def _weights(self, times: np.ndarray, step: float) -> np.ndarray:
        return np.append(np.minimum(np.diff(times), self.max_gap), step)

    def summary(self) -> dict[str, Any]:
        """``{"tracks": {id: {...}}, "no_face_frames": n, "frames": n}`` with, per track,
        ``start``, ``end``, ``duration`` (seconds: its real span), ``samples``, ``shares``
        (label -> fraction of the track's labelled time, the six labels always present),
        ``reading`` (seconds before its label was decided), ``dominant`` and ``segments``
        (runs of one label: [start, end, label])."""
        step = self.frame_interval()
        out: dict[str, dict[str, Any]] = {}
        for tid, span in sorted(self.tracks.items()):
            times = np.array([s[0] for s in span.samples], np.float64)
            labels = [s[1] for s in span.samples]
            w = self._weights(times, step)
            shares = dict.fromkeys(EMOTIONS, 0.0)
            reading = 0.0
            for weight, label in zip(w, labels):
                if label is None:
                    reading += float(weight)
                else:
                    shares[label] += float(weight)
            total = sum(shares.values())
            labelled = [x for x in labels if x is not None]
            if total > 0:
                shares = {k: round(v / total, 4) for k, v in shares.items()}
            elif labelled:  # all samples at one instant (an image): count them
                shares = {k: round(labelled.count(k) / len(labelled), 4) for k in EMOTIONS}
            segments: list[list[Any]] = []
            for (t, label), weight in zip(span.samples, w):
                if label is None:
                    continue
                if segments and segments[-1][2] == label:
                    segments[-1][1] = round(t + float(weight), 4)
                else:
                    segments.append([round(t, 4), round(t + float(weight), 4), label])
            out[str(tid)] = {
                "start": round(span.first_t, 4), "end": round(span.last_t, 4),
                "duration": round(span.last_t - span.first_t + step, 4),
                "samples": len(span.samples), "shares": shares,
                "reading": round(reading, 4),
                "dominant": max(shares, key=lambda k: shares[k]) if labelled else None,
                "segments": segments}
        return {"frames": self.frames, "no_face_frames": len(self.no_face), "tracks": out}
