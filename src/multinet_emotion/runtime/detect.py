"""Frames in, :class:`~multinet_emotion.emotions.Reading` s out: the per-frame detector.

:class:`EmotionDetector` is the Python API: give it a frame, get one ``Reading`` per face
(time, smoothed probabilities, confidence, track id, box, the raw reading and the stable
label). Faces are found (:mod:`.faces`), cropped and classified in one batch
(:mod:`.classifier`), and followed and smoothed across frames (:mod:`.tracking`).

Nothing here reads or writes video (that is :mod:`.video`) and nothing imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import options
from ..emotions import Reading
from ..options import setting
from .classifier import BatchingClassifier, ClassifierConfig, EmotionClassifier, load_model
from .faces import CROP_SCALE_RANGE, Box, DetectorConfig, FaceDetector, crop_faces, make_detector
from .tracking import Track, Tracker, TrackerConfig


@dataclass
class PipelineConfig:
    """Per-frame analysis: which detector, how often, tracking and smoothing, the model."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    detect_every: int = setting(5, min=1, unit="frames",
                                help="scan the whole frame for faces every N frames; in between, "
                                     "known faces are searched for only around their last box "
                                     "(1 = full every frame)")
    search_every: int = setting(1, min=1, unit="frames",
                                help="while nobody is in view, scan the whole frame every N "
                                     "frames (1 = every frame); the frames in between report "
                                     "nobody, as the last scan did")
    tilt_every: int = setting(8, min=1, unit="scans",
                              help="while nobody is in view, also scan the frame turned both "
                                   "ways (DetectorConfig.tilt) on every N-th whole-frame scan "
                                   "(1 = every scan); the first scan after faces were lost "
                                   "always does")
    refresh_hz: float = setting(0.0, min=0, unit="per second",
                                help="re-read each face's emotion at most this often (0 = every "
                                     "frame)")
    crop_scale: float | None = setting(  # None = the model's metadata, else DEFAULT_CROP_SCALE
        None, **CROP_SCALE_RANGE,
        help="face crop size relative to the detected box (default: the model's)")
    color: str = setting("bgr", cli=False, choices=("bgr", "rgb"),
                         help="channel order of colour frames given to process()")

    def __post_init__(self) -> None:
        options.check(self)

    def validate(self) -> PipelineConfig:
        """Check the settings and the nested configs again (they may have been changed)."""
        options.check(self)
        options.check(self.detector)
        options.check(self.classifier)
        self.tracker.validate()
        return self


def track_reading(track: Track, t: float, fresh: bool = True) -> Reading:
    """The reading of a classified track at time ``t``.

    Three labels, from jumpy to steady: ``raw_label`` is the top class of the latest raw
    reading, ``label`` the top class of the smoothed probabilities, and ``shown_label``
    the one to show people: the track's label filter (:mod:`.label_filter`), None while
    it is still reading a new face. The probabilities are the same whichever label is
    read."""
    if track.smoothed is None or track.probs is None:
        raise ValueError(f"track {track.id} has not been classified yet")
    b = track.box
    return Reading(t, tuple(track.smoothed.tolist()), track.confidence, track.id,
                   (b.x, b.y, b.w, b.h), tuple(track.probs.tolist()), track.shown_label,
                   fresh, b.angle)


class EmotionDetector:
    """Faces, their track ids and their (smoothed) emotions, frame after frame.

    >>> detector = EmotionDetector()              # the default model, or a path to a .onnx
    >>> for face in detector.process(frame):      # a BGR uint8 frame (color="rgb" for RGB)
    ...     print(face.track_id, face.box, face.shown_label, face.share)

    Faces of a frame are classified in one batch. ``t`` (seconds) is the frame's time: it
    is the readings' ``t`` and drives smoothing, the shown label's filter and the refresh
    rate; without it the wall clock since construction is used. A new face is reported once
    its track is confirmed (``TrackerConfig.confirm_hits`` frames in a row), and its label
    reads None until the filter has evidence. Call :meth:`reset` between unrelated images
    so their faces do not share tracks, and pass ``still=True`` for a still image: its
    faces are reported and labelled at once. ``scan_phase`` shifts the whole-frame scans
    (every ``detect_every`` frames) by that many frames.
    """

    def __init__(self, model: EmotionClassifier | BatchingClassifier | str | Path | None = None,
                 config: PipelineConfig | None = None,
                 detector: FaceDetector | None = None, scan_phase: int = 0) -> None:
        self.config = (config or PipelineConfig()).validate()
        if isinstance(model, (EmotionClassifier, BatchingClassifier)):
            self.classifier = model
        else:
            self.classifier = load_model(model, self.config.classifier)
        self.face_detector = detector or make_detector(self.config.detector, self.config.color)
        self.tracker = Tracker(self.config.tracker)
        self.crop_scale = self.config.crop_scale or self.classifier.crop_scale
        # frames are counted from scan_phase: detectors started together (a server's
        # learners) then scan the whole frame on different frames, not all at once
        self.frames = scan_phase % self.config.detect_every
        self._since_search = self.config.search_every  # frames since the last scan
        self._bare_scans = 0  # whole-frame scans in a row that found nobody
        #: False: no turned scans (tilted heads) for now; a busy server sheds them so
        self.turn_scans = True
        self._t0 = time.monotonic()
        self.timings = {"detect": 0.0, "classify": 0.0, "faces_classified": 0,
                        "full_detections": 0}

    def process(self, frame: np.ndarray, t: float | None = None,
                still: bool = False) -> list[Reading]:
        """Detect, track and classify the faces in ``frame``: the readings of its confirmed
        faces; [] when there is none. ``still``: ``frame`` is a still image, unrelated to
        the frames before and after it (call :meth:`reset` first)."""
        if t is None:
            t = time.monotonic() - self._t0
        visible = self.tracker.visible()
        full = self.frames % self.config.detect_every == 0 or not visible
        self.frames += 1
        if not visible and self._since_search + 1 < self.config.search_every:
            self._since_search += 1  # nobody at the last scan: this frame is not scanned
            return []
        start = time.perf_counter()
        tracks: list[Track] | None = None
        if not full:  # between full detections: follow the known faces only
            near = getattr(self.face_detector, "detect_near", None)
            near_all = getattr(self.face_detector, "detect_near_all", None)
            if near is None and near_all is None:
                tracks = visible  # carry the boxes of the last detection
            else:
                boxes = [tr.box for tr in visible]
                if near_all is not None:
                    found = near_all(frame, boxes)
                else:
                    assert near is not None  # one of the two (checked above)
                    found = [near(frame, box) for box in boxes]
                if all(box is not None for box in found):
                    tracks = self.tracker.follow(visible, found, t)
                # else a face was lost: look at the whole frame now
        if tracks is None:
            tracks = self.tracker.update(self._scan(frame, visible), t)
            if still:
                self.tracker.confirm_all()
            self.tracker.pop_ended()  # nothing here needs ended tracks: do not keep them
            self.timings["full_detections"] += 1
            self._since_search = 0
        self.timings["detect"] += time.perf_counter() - start
        due = [tr for tr in tracks if tr.due(t, self.config.refresh_hz)]
        if due:
            start = time.perf_counter()
            crops = crop_faces(frame, [tr.box for tr in due], self.classifier.input_size,
                               self.crop_scale, self.config.color)
            for track, probs in zip(due, self.classifier.predict(crops)):
                track.set_probs(probs, t, settle=still)
            self.timings["classify"] += time.perf_counter() - start
            self.timings["faces_classified"] += len(due)
        fresh = {id(tr) for tr in due}
        return [track_reading(tr, t, id(tr) in fresh) for tr in tracks if tr.confirmed]

    __call__ = process

    def _scan(self, frame: np.ndarray, visible: list[Track]) -> list[Box]:
        """A whole-frame scan, spending as little as it can on tilted heads. A Haar
        detector's turned scans triple the CPU of a scan that finds nobody, so: the upright
        scan first; a followed face that was tilted (``Box.angle``) and that it missed is
        searched for near its last box, turned alike; the turned scans run only when that
        leaves nobody, and while nobody is in view only on every ``tilt_every``-th scan
        (the first scan after faces were lost always); never while ``turn_scans`` is
        False."""
        upright = getattr(self.face_detector, "detect_upright", None)
        if upright is None:
            return self.face_detector.detect(frame)
        boxes: list[Box] = upright(frame)
        near = getattr(self.face_detector, "detect_near", None)
        for track in visible:
            if track.box.angle and near is not None \
                    and not any(b.iou(track.box) > 0.3 for b in boxes):
                found = near(frame, track.box)
                if found is not None:
                    boxes.append(found)
        turned = getattr(self.face_detector, "detect_turned", None)
        if not boxes and turned is not None and self.turn_scans \
                and self._bare_scans % self.config.tilt_every == 0:
            boxes = turned(frame)
        self._bare_scans = 0 if boxes else self._bare_scans + 1
        return boxes

    def reset(self) -> None:
        """End every track (ids keep counting up)."""
        self.tracker.end_all()
        self.tracker.pop_ended()
        self._since_search = self.config.search_every  # the next frame is scanned
        self._bare_scans = 0  # ... and turned too when nobody is upright
