"""The six emotion labels, their fixed order, dataset aliases and the disgust policy, and
:class:`Reading`, the one value an emotion reading is from the detector to the database."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import MultiNetError

#: The side of a face crop before a model file says its own (``ModelInfo.input_size``):
#: FER2013's. Used only where no model is known yet (a new model's default, a dataset read
#: without one).
DEFAULT_FACE_SIZE = 48

#: The model's classes, in the order of its outputs. Never reorder: models depend on it.
EMOTIONS: tuple[str, ...] = ("angry", "fear", "happy", "neutral", "sad", "surprise")

#: How every page, plot and overlay draws each emotion (the pages get them from the server
#: as /static/emotions.js; nothing else states them).
COLORS: dict[str, str] = {"angry": "#dc2828", "fear": "#963ca0", "happy": "#3cc828",
                          "neutral": "#9aa3ad", "sad": "#2878c8", "surprise": "#e0b000"}
#: How a sentence names someone who shows each emotion ("you seem ... ").
ADJECTIVES: dict[str, str] = {"angry": "angry", "fear": "afraid", "happy": "happy",
                              "neutral": "neutral", "sad": "sad", "surprise": "surprised"}

#: Names used by datasets (FER2013, FER+, AffectNet-style folders, ...) for our labels.
ALIASES: dict[str, str] = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "neutral": "neutral", "calm": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "disgust": "disgust", "disgusted": "disgust",
}

#: FER2013 CSV integer codes (emotion column).
FER2013_CODES: dict[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}


class DisgustPolicy(str, Enum):
    """What to do with FER2013's rare 'disgust' class, which the product does not predict."""

    DROP = "drop"
    MERGE = "merge"  # merged into angry, as in several FER papers

    def __str__(self) -> str:  # shows as 'drop' in reports and metadata
        return self.value


def canonical(name: str) -> str | None:
    """Return the canonical label for a dataset label name, or None when unknown."""
    return ALIASES.get(name.strip().lower())


def to_index(name: str, disgust: DisgustPolicy = DisgustPolicy.DROP) -> int | None:
    """Map a dataset label to a class index.

    Returns None for disgust under the DROP policy. Raises MultiNetError for a label that is
    not an emotion we know, so callers decide whether to skip (and count) or fail.
    """
    label = canonical(name)
    if label is None:
        raise MultiNetError(
            f"unknown emotion label {name!r}; known labels: {', '.join(sorted(ALIASES))}"
        )
    if label == "disgust":
        if disgust == DisgustPolicy.DROP:
            return None
        label = "angry"
    return EMOTIONS.index(label)


def _probabilities(name: str, values: Sequence[float]) -> tuple[float, ...]:
    """``values`` as a tuple of six floats in EMOTIONS order, or MultiNetError."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise MultiNetError(f"reading: {name} must be {len(EMOTIONS)} numbers in the order "
                            f"{', '.join(EMOTIONS)}") from None
    if len(out) != len(EMOTIONS):
        raise MultiNetError(f"reading: {name} has {len(out)} values; give {len(EMOTIONS)}, in "
                            f"the order {', '.join(EMOTIONS)}")
    for label, p in zip(EMOTIONS, out):
        if not (math.isfinite(p) and -1e-6 <= p <= 1.0 + 1e-6):
            raise MultiNetError(f"reading: {name} of {label} must be between 0 and 1, got {p}")
    if abs(sum(out) - 1.0) > 0.05:  # as loose as the API (0.95..1.05): older rows pass
        raise MultiNetError(f"reading: {name} must sum to 1, got {sum(out):.4f}")
    return out


def _top(probs: tuple[float, ...]) -> str:
    return EMOTIONS[max(range(len(EMOTIONS)), key=probs.__getitem__)]


@dataclass(frozen=True)
class Reading:
    """One emotion reading: the value that travels, as it is, from the detector (or a client
    that classified on its own) through the service and the recommender into the store.

    ``probs`` are the (smoothed) probabilities the bars and charts show; ``None`` means
    nobody was in view at time ``t``, so no emotion is invented. ``shown_label`` is the
    label people are shown, from the face's :class:`~.label_filter.LabelFilter` (None with
    a face: still reading, nothing is shown yet); what is stored, summarised and judged by
    the recommendation rules is this label, and the percentage shown beside it is its own
    :attr:`share`. What only the detector knows is optional: ``raw_probs`` (the latest
    unsmoothed classifier output, when it differs), ``track_id``, ``box`` and ``fresh``
    (the emotion was re-read on this frame). JSON is made only at the edges:
    :meth:`face_json` (the detector's per-face events and WebSocket faces) and
    :meth:`sample_json` (a learner's timeline and live state).
    """

    t: float  # seconds: media time (files), since start (live) or UTC epoch (server)
    probs: tuple[float, ...] | None  # EMOTIONS order; None = no face in view
    confidence: float | None = None  # the detector's: the largest of probs
    track_id: int | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, w, h in frame pixels
    raw_probs: tuple[float, ...] | None = None  # the latest unsmoothed reading; None = probs
    shown_label: str | None = None  # the label people are shown; None = still reading
    fresh: bool = True  # the emotion was (re)read on this frame
    angle: float = 0.0  # the face's tilt (faces.Box.angle): the picture's turn that uprights it

    def __post_init__(self) -> None:
        t = float(self.t)
        if not math.isfinite(t):
            raise MultiNetError(f"reading: t must be a finite number of seconds, got {self.t}")
        object.__setattr__(self, "t", t)
        if self.probs is None:
            extra = [name for name in ("confidence", "track_id", "box", "raw_probs",
                                       "shown_label") if getattr(self, name) is not None]
            if self.angle:
                extra.append("angle")
            if extra:
                raise MultiNetError(f"reading at t={t}: no face, so no {', '.join(extra)}")
            return
        object.__setattr__(self, "probs", _probabilities("probs", self.probs))
        if self.raw_probs is not None:
            object.__setattr__(self, "raw_probs", _probabilities("raw_probs", self.raw_probs))
        if self.confidence is not None:
            c = float(self.confidence)
            if not (math.isfinite(c) and 0.0 <= c <= 1.0 + 1e-6):
                raise MultiNetError(f"reading: confidence must be between 0 and 1, got "
                                    f"{self.confidence}")
            object.__setattr__(self, "confidence", c)
        if self.shown_label is not None and self.shown_label not in EMOTIONS:
            raise MultiNetError(f"reading: shown_label {self.shown_label!r} is not one of "
                                f"{', '.join(EMOTIONS)}")
        if self.box is not None:
            box = tuple(int(v) for v in self.box)
            if len(box) != 4 or box[2] < 0 or box[3] < 0:
                raise MultiNetError(f"reading: box must be x, y, w, h (w, h >= 0), got "
                                    f"{self.box}")
            object.__setattr__(self, "box", box)
        if self.track_id is not None:
            object.__setattr__(self, "track_id", int(self.track_id))
        angle = float(self.angle)
        if not (math.isfinite(angle) and -180.0 <= angle <= 180.0):
            raise MultiNetError(f"reading: angle must be degrees between -180 and 180, got "
                                f"{self.angle}")
        object.__setattr__(self, "angle", angle)

    @property
    def face(self) -> bool:
        """Whether a face was in view (else there are no probabilities)."""
        return self.probs is not None

    @property
    def label(self) -> str | None:
        """The top class of ``probs`` (the smoothed label); None without a face."""
        return None if self.probs is None else _top(self.probs)

    @property
    def raw_label(self) -> str | None:
        """The top class of the latest unsmoothed reading."""
        if self.probs is None:
            return None
        return _top(self.raw_probs if self.raw_probs is not None else self.probs)

    @property
    def share(self) -> float | None:
        """The shown label's own probability (what a percentage beside it means); None
        without a face or while reading."""
        if self.probs is None or self.shown_label is None:
            return None
        return self.probs[EMOTIONS.index(self.shown_label)]

    def face_json(self) -> dict[str, Any]:
        """The detector's JSON for this face (``detect`` events and WebSocket ``faces``):
        ``probs``/``label`` are the raw reading, ``smoothed``/``smoothed_label`` the smoothed
        one, ``shown_label`` the label people are shown (None: still reading) and
        ``shown_share`` its own smoothed probability; ``confidence`` is the largest smoothed
        probability, whichever class it is (``smoothed_label``'s); probabilities rounded to
        4 places (the one place they are).
        ``angle``: a tilted face's box is its square turned by -angle about its centre."""
        if self.probs is None:
            raise ValueError("a reading without a face has no face JSON")
        raw = self.raw_probs if self.raw_probs is not None else self.probs
        return {"track_id": self.track_id,
                "box": None if self.box is None else list(self.box), "angle": self.angle,
                "probs": {e: round(p, 4) for e, p in zip(EMOTIONS, raw)},
                "label": self.raw_label,
                "smoothed": {e: round(p, 4) for e, p in zip(EMOTIONS, self.probs)},
                "smoothed_label": self.label, "shown_label": self.shown_label,
                "shown_share": _round(self.share),
                "confidence": _round(self.confidence)}

    def sample_json(self) -> dict[str, Any]:
        """The JSON of a learner's sample (timeline, live state, export): the probabilities
        as they are, the label shown (None with a face: still reading) and its own
        ``share``; ``confidence`` is the largest probability, whichever class it is."""
        return {"t": self.t, "face": self.face,
                "probs": None if self.probs is None else dict(zip(EMOTIONS, self.probs)),
                "label": self.shown_label, "share": self.share,
                "confidence": self.confidence}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def label_mix(readings: Sequence[Reading]) -> dict[str, Any]:
    """What a stretch of stored readings showed: ``shares`` (the six emotions' shares of the
    readings with a face and a shown label, all 0 when there is none), ``face_share`` (the
    share of readings with a face) and ``samples``. Every summary of what people saw (a
    learner's summary, the dashboard's mix, the learning records) is this one."""
    faces = [r for r in readings if r.face]
    labels = [r.shown_label for r in faces if r.shown_label is not None]
    shares = {e: round(labels.count(e) / len(labels), 4) if labels else 0.0 for e in EMOTIONS}
    return {"shares": shares,
            "face_share": round(len(faces) / len(readings), 4) if readings else 0.0,
            "samples": len(readings)}
