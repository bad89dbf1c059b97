"""Frame analysis behind a small interface, so the service does not care who analyses.

The server decodes and checks each frame (in memory only; frames are never written or
logged), then hands the BGR array and the time it arrived to an :class:`Analyzer`: one per
learner connection, so face tracking and smoothing stay per learner. It gives back one
:class:`~multinet_emotion.emotions.Reading` per face, which the service takes as it is.
:class:`DetectorAnalyzer` wraps the runtime detector (:mod:`multinet_emotion.runtime.detect`; never
the video I/O of :mod:`multinet_emotion.runtime.video`); tests inject fakes.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..emotions import Reading
from ..errors import MultiNetError

if TYPE_CHECKING:
    from ..runtime.detect import EmotionDetector

log = logging.getLogger(__name__)

_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class FrameError(MultiNetError):
    """A frame that cannot be analysed: not an image, too large, wrong type."""


class Analyzer(Protocol):
    """Turns one decoded frame, received at ``t`` (the service clock's seconds), into one
    reading per face (each at time ``t``); [] when nobody is in view."""

    def analyze(self, frame_bgr: np.ndarray, t: float) -> list[Reading]: ...


AnalyzerFactory = Callable[[], Analyzer]


def image_type(data: bytes) -> str | None:
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def decode_frame(data: bytes, max_bytes: int, max_side: int) -> np.ndarray:
    """Check and decode an encoded frame (JPEG, PNG or WebP) into a BGR array in memory."""
    if len(data) > max_bytes:
        raise FrameError(f"frame of {len(data)} bytes is too large (at most {max_bytes}); "
                         "send a downscaled JPEG")
    kind = image_type(data)
    if kind is None:
        raise FrameError("frame is not a JPEG, PNG or WebP image")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
    except Image.DecompressionBombError as e:  # a small file that declares huge pixels
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        said = f" of {int(pixels.group(1)):,} pixels" if pixels else ""
        raise FrameError(f"frame{said} is too large: too many pixels (at most {max_side} on a "
                         "side)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise FrameError(f"frame is not a readable {kind} image") from None
    if max(w, h) > max_side:
        raise FrameError(f"frame of {w}x{h} pixels is too large (at most {max_side} on a "
                         "side)")
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise FrameError(f"frame is a damaged {kind} image")
    return img


class AnalysisSlots:
    """At most ``n`` frames analysed at once (``async with slots:``), counting those in
    progress (``running``). Read inside a slot, ``busy`` says that the other frames in
    progress already keep every core at work: this one only shares the cores with them."""

    def __init__(self, n: int, cores: int | None = None):
        self._free = asyncio.Semaphore(max(1, n))
        self.running = 0
        self.cores = max(1, cores or os.cpu_count() or 1)

    @property
    def busy(self) -> bool:
        return self.running > self.cores

    async def __aenter__(self) -> AnalysisSlots:
        await self._free.acquire()
        self.running += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.running -= 1
        self._free.release()


class DetectorAnalyzer:
    """The runtime EmotionDetector: one per connection, sharing one loaded classifier."""

    def __init__(self, detector: EmotionDetector):
        self.detector = detector

    def analyze(self, frame_bgr: np.ndarray, t: float) -> list[Reading]:
        return self.detector.process(frame_bgr, t)

    def pressed(self, busy: bool) -> None:
        """Whether other frames kept every core at work when this one's analysis began
        (:attr:`AnalysisSlots.busy`): then it skips the optional turned scans for tilted
        heads (they triple a scan that finds nobody), which a server at its limit cannot
        spare."""
        self.detector.turn_scans = not busy


def detector_factory(model: Path | None = None, detect_every: int | None = None,
                     search_every: int | None = None, frames_at_once: int = 1,
                     detector: str | None = None) -> tuple[AnalyzerFactory | None, str]:
    """A factory of per-connection analyzers over the real detector, or None and why not.

    ``detect_every`` and ``search_every`` (how often the whole frame is scanned while a face
    is followed, and while nobody is in view) and the face ``detector`` (haar, blazeface):
    None = the runtime's defaults
    (``PipelineConfig``); tracking and the shown label's filter are the runtime's
    (``TrackerConfig``), as in ``detect`` and the learner page. ``frames_at_once``: how
    many frames the server analyses at once; the face detector gets ready for that many
    scans at once now, at start-up. Every connection's analyzer shares one model, through a
    :class:`~multinet_emotion.runtime.classifier.BatchingClassifier`: the faces of frames analysed
    at the same time go through the model as one batch.

    Never raises: when the detector or the model is missing, the service runs without
    server-side analysis and the learner page says so.
    """
    try:
        from ..runtime.classifier import BatchingClassifier, load_model
        from ..runtime.detect import EmotionDetector, PipelineConfig
    except ImportError:
        return None, "the emotion detector is not installed in this version"
    try:
        # one ONNX Runtime thread: the server's concurrency is its frames, and a batch on
        # one core leaves the other to face detection
        classifier = BatchingClassifier(load_model(model))
    except MultiNetError as e:
        return None, f"no emotion model: {e}"
    except Exception as e:  # noqa: BLE001 - a broken model must not stop the server
        log.exception("loading the emotion model failed")
        return None, f"the emotion model could not be loaded ({type(e).__name__})"

    # one OpenCV thread per call, for the same reason: OpenCV's own pool, shared by every
    # frame being analysed, adds CPU and no throughput when the frames keep the cores busy
    # (bench/detection.py prints a whole-frame scan's CPU on one thread and on two)
    import cv2
    cv2.setNumThreads(1)
    phases = itertools.count()

    def make() -> DetectorAnalyzer:  # per connection: own face detector and tracks, shared model
        # Face detection dominates the cost of a frame; between full scans the detector
        # follows the known faces, and with nobody in view it scans every search_every-th
        # frame (None = the runtime's defaults).
        config = PipelineConfig()
        if detect_every is not None:
            config.detect_every = detect_every
        if search_every is not None:
            config.search_every = search_every
        if detector is not None:
            config.detector.kind = detector
        # learners who join together (a class starting) must not all scan the whole frame
        # on the same frame: each connection's scans start at a phase of its own
        phase = next(phases) % config.detect_every
        return DetectorAnalyzer(EmotionDetector(classifier, config.validate(),
                                                scan_phase=phase))

    try:
        prepare = getattr(make().detector.face_detector, "prepare", None)
        if prepare is not None:
            prepare(frames_at_once)
    except Exception as e:  # noqa: BLE001
        log.exception("creating the emotion detector failed")
        return None, f"the emotion detector could not start ({type(e).__name__})"
    return make, "server-side analysis with the emotion model"
