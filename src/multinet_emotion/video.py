"""Frames in, emotion events out: the per-frame detector, sources, threaded capture, outputs.

- :class:`EmotionDetector` is the Python API: give it a frame, get one :class:`FaceResult`
  per face (track id, box, probabilities, raw, smoothed and stable label, confidence).
- Sources (:func:`open_source`): a camera index, a stream URL, a video file, an image or a
  folder of images. Cameras and streams are *live*: a capture thread keeps only the newest
  frame, so the analysis never builds a backlog; frames it overwrites are counted as dropped.
  A live source that stops delivering is reopened for ``retry_seconds`` before the run ends.
  Video files are read frame by frame with nothing skipped (unless ``frame_step`` > 1).
  Unreadable frames and images are skipped and counted.
- Outputs (:func:`run`): JSON Lines events, CSV, an annotated video, a window, and at the end a
  summary JSON (emotion shares per track) with a timeline plot PNG.

Nothing here imports torch: only OpenCV, NumPy, ONNX Runtime and (for the plot) matplotlib.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import cv2
import numpy as np

from .classifier import ClassifierConfig, EmotionClassifier, load_model
from .emotions import EMOTIONS
from .errors import MultiNetError
from .faces import Box, DetectorConfig, FaceDetector, crop_faces, make_detector
from .files import atomic_path, atomic_write_text
from .tracking import Timeline, Track, Tracker, TrackerConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}

#: Overlay colours (BGR) and plot colours (RGB hex) of the six emotions.
COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220), "fear": (160, 60, 150), "happy": (40, 200, 60),
    "neutral": (180, 180, 180), "sad": (200, 120, 40), "surprise": (0, 200, 240),
}
COLORS_HEX: dict[str, str] = {k: "#{:02x}{:02x}{:02x}".format(*v[::-1])
                              for k, v in COLORS_BGR.items()}


# --- the per-frame detector (the Python API) -----------------------------------------------

@dataclass
class PipelineConfig:
    """Per-frame analysis: which detector, how often, tracking and smoothing, the model."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    detect_every: int = 5  # scan the whole frame every N frames; follow known faces between
    refresh_hz: float = 0.0  # re-read each track's emotion at most this often (0 = every frame)
    crop_scale: float | None = None  # None = the model's metadata, else faces.DEFAULT_CROP_SCALE
    color: str = "bgr"  # channel order of colour frames given to process(): "bgr" or "rgb"

    def validate(self) -> PipelineConfig:
        if self.detect_every < 1:
            raise MultiNetError(f"--detect-every must be at least 1, got {self.detect_every}")
        if self.refresh_hz < 0:
            raise MultiNetError(f"--refresh-hz must be >= 0, got {self.refresh_hz}")
        if self.crop_scale is not None and not 0.5 <= self.crop_scale <= 4.0:
            raise MultiNetError(f"--crop-scale must be in 0.5..4, got {self.crop_scale}")
        if self.color not in ("bgr", "rgb"):
            raise MultiNetError(f"color must be 'bgr' or 'rgb', got {self.color!r}")
        self.tracker.validate()
        return self


@dataclass
class FaceResult:
    """One face in one frame.

    Three labels, from jumpy to steady: ``label`` is the top class of the latest raw reading,
    ``smoothed_label`` the top class of the smoothed probabilities, and ``stable_label`` the
    one to show people: the smoothed label after the tracker's minimum dwell time and
    hysteresis (``TrackerConfig.min_dwell`` / ``hysteresis``), so it does not flip between
    two close emotions. The probabilities are the same whichever label is read."""

    track_id: int
    box: Box
    probs: dict[str, float]  # the latest raw reading
    label: str  # argmax of probs
    smoothed: dict[str, float]
    smoothed_label: str  # argmax of smoothed
    confidence: float  # max of the smoothed probabilities
    fresh: bool  # True when the emotion was re-read on this frame (see refresh_hz)
    stable_label: str = ""  # the label to show (from_track fills it; "" = smoothed_label)

    def __post_init__(self) -> None:
        if not self.stable_label:
            self.stable_label = self.smoothed_label

    @classmethod
    def from_track(cls, track: Track, fresh: bool) -> FaceResult:
        return cls(track.id, track.box,
                   {k: float(v) for k, v in zip(EMOTIONS, track.probs)}, track.label,
                   {k: float(v) for k, v in zip(EMOTIONS, track.smoothed)},
                   track.smoothed_label, track.confidence, fresh,
                   track.stable_label or track.smoothed_label)

    def to_event(self, t: float, frame: int) -> dict[str, Any]:
        """The JSON Lines event for this face (the schema consumers rely on)."""
        return {"t": round(float(t), 4), "frame": int(frame), "track_id": self.track_id,
                "face": True, "box": self.box.as_list(),
                "probs": {k: round(v, 4) for k, v in self.probs.items()}, "label": self.label,
                "smoothed": {k: round(v, 4) for k, v in self.smoothed.items()},
                "smoothed_label": self.smoothed_label, "stable_label": self.stable_label,
                "confidence": round(self.confidence, 4)}


def no_face_event(t: float, frame: int) -> dict[str, Any]:
    """The event for an analysed frame without any face: no emotion is invented."""
    return {"t": round(float(t), 4), "frame": int(frame), "track_id": None, "face": False}


class EmotionDetector:
    """Faces, their track ids and their (smoothed) emotions, frame after frame.

    >>> detector = EmotionDetector()              # the default model, or a path to a .onnx
    >>> for face in detector.process(frame):      # a BGR uint8 frame (color="rgb" for RGB)
    ...     print(face.track_id, face.box, face.stable_label, face.confidence)

    Faces of a frame are classified in one batch. ``t`` (seconds) drives smoothing, the
    stable label's dwell time and the refresh rate; without it the wall clock since
    construction is used. Call :meth:`reset` between unrelated images so their faces do not
    share tracks.
    """

    def __init__(self, model: EmotionClassifier | str | Path | None = None,
                 config: PipelineConfig | None = None,
                 detector: FaceDetector | None = None) -> None:
        self.config = (config or PipelineConfig()).validate()
        if isinstance(model, EmotionClassifier):
            self.classifier = model
        else:
            self.classifier = load_model(model, self.config.classifier)
        self.face_detector = detector or make_detector(self.config.detector, self.config.color)
        self.tracker = Tracker(self.config.tracker)
        self.crop_scale = self.config.crop_scale or self.classifier.crop_scale
        self.frames = 0
        self._t0 = time.monotonic()
        self.timings = {"detect": 0.0, "classify": 0.0, "faces_classified": 0,
                        "full_detections": 0}

    def process(self, frame: np.ndarray, t: float | None = None) -> list[FaceResult]:
        """Detect, track and classify the faces in ``frame``; [] when there is none."""
        if t is None:
            t = time.monotonic() - self._t0
        visible = self.tracker.visible()
        full = self.frames % self.config.detect_every == 0 or not visible
        self.frames += 1
        start = time.perf_counter()
        tracks: list[Track] | None = None
        if not full:  # between full detections: follow the known faces only
            near = getattr(self.face_detector, "detect_near", None)
            if near is None:
                tracks = visible  # carry the boxes of the last detection
            else:
                found = [near(frame, tr.box) for tr in visible]
                if all(box is not None for box in found):
                    tracks = self.tracker.follow(visible, found, t)
                # else a face was lost: look at the whole frame now
        if tracks is None:
            tracks = self.tracker.update(self.face_detector.detect(frame), t)
            self.tracker.pop_ended()  # nothing here needs ended tracks: do not keep them
            self.timings["full_detections"] += 1
        self.timings["detect"] += time.perf_counter() - start
        due = [tr for tr in tracks if tr.due(t, self.config.refresh_hz)]
        if due:
            start = time.perf_counter()
            crops = crop_faces(frame, [tr.box for tr in due], self.classifier.input_size,
                               self.crop_scale, self.config.color)
            for track, probs in zip(due, self.classifier.predict(crops)):
                track.set_probs(probs, t)
            self.timings["classify"] += time.perf_counter() - start
            self.timings["faces_classified"] += len(due)
        fresh = {id(tr) for tr in due}
        return [FaceResult.from_track(tr, id(tr) in fresh) for tr in tracks]

    __call__ = process

    def reset(self) -> None:
        """End every track (ids keep counting up)."""
        self.tracker.end_all()
        self.tracker.pop_ended()


# --- sources ------------------------------------------------------------------------------

@dataclass
class Frame:
    image: np.ndarray
    index: int  # position in the source (live: capture counter, so gaps show drops)
    t: float  # media time (files), seconds since start (live), image number (images)
    captured_at: float  # time.monotonic() when the frame arrived


@dataclass
class SourceConfig:
    """How to read the source. Filled from ``detect --live/--retry-seconds/--frame-step``."""

    live: str = "auto"  # "auto" (cameras and URLs live), "on" (also files, at their rate), "off"
    retry_seconds: float = 10.0  # how long to reopen a live source that stopped
    frame_step: int = 1  # files: analyse every Nth frame (1 = every frame)
    max_bad_frames: int = 100  # files: consecutive unreadable frames before giving up
    open_timeout: float = 10.0  # streams: seconds to wait when opening / reading


class CaptureLike(Protocol):
    """What the capture thread needs from a cv2.VideoCapture (tests and benches fake it)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


class Source:
    """Base of all sources: iterate for frames, then ``close()``; counters for the summary."""

    kind = "source"
    live = False
    independent = False  # frames are unrelated images (new tracks for each)

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps: float | None = None
        self.frames_read = 0
        self.unreadable = 0
        self.dropped = 0
        self.lost = False  # a live source stopped and did not come back within the retry time
        self.reconnects = 0
        self.labels: list[str] = []  # image sources: file name of each frame index

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFileSource(Source):
    """A video file, frame by frame; unreadable frames are skipped and counted."""

    kind = "video"

    def __init__(self, path: Path, config: SourceConfig | None = None) -> None:
        super().__init__(str(path))
        self.config = config or SourceConfig()
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise MultiNetError(f"cannot open video {path}: OpenCV cannot read it (damaged, or "
                                "an unsupported format); check the file or convert it to .mp4")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 else None

    def _time(self, index: int) -> float:
        if self.fps:
            return index / self.fps
        msec = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        return msec / 1000.0 if msec and msec > 0 else float(index)

    def __iter__(self) -> Iterator[Frame]:
        step = max(1, self.config.frame_step)
        index, pending_bad = 0, 0
        while True:
            if index % step:
                ok = self.cap.grab()  # skipped on purpose: not decoded
                image = None
            else:
                ok, image = self.cap.read()
                ok = ok and image is not None and image.size > 0
            if not ok:
                if self.frame_count is not None and index >= self.frame_count:
                    break
                pending_bad += 1
                if pending_bad > self.config.max_bad_frames:
                    break
                index += 1
                continue
            if pending_bad:
                log.warning("%s: %d unreadable frame(s) before frame %d skipped", self.name,
                            pending_bad, index)
                self.unreadable += pending_bad
                pending_bad = 0
            if image is not None:
                self.frames_read += 1
                yield Frame(image, index, self._time(index), time.monotonic())
            index += 1
        if pending_bad and self.frame_count is not None:  # bad frames before the known end
            bad = min(pending_bad, max(self.frame_count - (index - pending_bad), 0))
            if bad:
                log.warning("%s: %d unreadable frame(s) at the end skipped", self.name, bad)
                self.unreadable += bad

    def close(self) -> None:
        self.cap.release()


class ImageSource(Source):
    """One image or a folder of images (sorted by name); unreadable ones skipped and counted."""

    kind = "images"
    independent = True

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.paths:
                raise MultiNetError(f"folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            self.kind = "image"
            self.paths = [path]
        self.labels = [p.name for p in self.paths]

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = read_image(path)
            if image is None:
                self.unreadable += 1
                log.warning("%s: unreadable image, skipped", path)
                continue
            self.frames_read += 1
            yield Frame(image, index, float(index), time.monotonic())


def read_image(path: Path) -> np.ndarray | None:
    """A BGR uint8 image, or None when the file cannot be decoded (OpenCV, then Pillow)."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is not None and image.size:
        return image
    try:
        from PIL import Image
        with Image.open(path) as im:
            return cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)
    except Exception:  # noqa: BLE001 - any decoder failure means the same: unreadable
        return None


class LiveSource(Source):
    """A camera or stream read by a thread that keeps only the newest frame.

    ``opener`` returns a fresh capture (a cv2.VideoCapture or anything like it); it is
    called again to reconnect when frames stop, for up to ``retry_seconds``. With
    ``pace_fps`` the thread delivers at most that many frames per second (a file played as
    if live); with ``eof_ends`` a failed read ends the source instead of reconnecting.
    """

    kind = "camera"
    live = True

    def __init__(self, opener: Callable[[], CaptureLike], name: str,
                 retry_seconds: float = 10.0, pace_fps: float | None = None,
                 eof_ends: bool = False, kind: str = "camera") -> None:
        super().__init__(name)
        self.kind = kind
        self._opener = opener
        self.retry_seconds = retry_seconds
        self.pace_fps = pace_fps
        self.eof_ends = eof_ends
        self.fps = pace_fps
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._captured = 0
        cap = self._open()
        if cap is None:
            what = f"camera {name}" if kind == "camera" else f"{kind} {name}"
            hint = ("no camera at that index, or it is busy; check the camera or try another "
                    "--source index" if kind == "camera"
                    else "check the address, the network and that the stream is running")
            raise MultiNetError(f"cannot open {what}: {hint}")
        if self.fps is None:
            fps = cap.get(cv2.CAP_PROP_FPS) if hasattr(cap, "get") else 0
            self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(cap,), daemon=True,
                                        name=f"capture:{name}")
        self._thread.start()

    def _open(self) -> CaptureLike | None:
        try:
            cap = self._opener()
        except (cv2.error, OSError) as e:
            log.debug("opening %s failed: %s", self.name, e)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        return cap

    def _publish(self, image: np.ndarray, now: float) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # the analysis never saw it: the newer frame wins
            self._latest = Frame(image, self._captured, now - self.t0, now)
            self._captured += 1
            self._cond.notify()

    def _run(self, cap: CaptureLike | None) -> None:
        period = 1.0 / self.pace_fps if self.pace_fps else 0.0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, image = cap.read() if cap is not None else (False, None)
                if ok and image is not None and image.size:
                    if period:
                        next_at += period
                        delay = next_at - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                        else:
                            next_at = time.monotonic()
                    self._publish(image, time.monotonic())
                    continue
                if cap is not None:
                    cap.release()
                    cap = None
                if self.eof_ends:
                    break
                cap = self._reconnect()
                if cap is None:
                    if not self._stop.is_set():
                        self.lost = True
                    break
        except Exception:  # a crash in the thread must still end the run cleanly
            log.exception("%s: capture thread failed", self.name)
            self.lost = True
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _reconnect(self) -> CaptureLike | None:
        log.warning("%s: no frames; reconnecting for up to %.0f s", self.name, self.retry_seconds)
        deadline = time.monotonic() + self.retry_seconds
        while not self._stop.is_set():
            cap = self._open()
            if cap is not None:
                self.reconnects += 1
                log.info("%s: reconnected", self.name)
                return cap
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._stop.wait(min(0.5, remaining))
        log.warning("%s: gave up after %.0f s without frames", self.name, self.retry_seconds)
        return None

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while self._latest is None and not self._ended:
                    self._cond.wait(0.1)  # short waits keep Ctrl-C responsive
                frame, self._latest = self._latest, None
            if frame is None:
                return
            self.frames_read += 1
            yield frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class MemoryCapture:
    """A cv2.VideoCapture look-alike over frames in memory (simulated cameras, benches)."""

    def __init__(self, frames: list[np.ndarray], loop: bool = False, fail_after: int | None = None):
        self.frames, self.loop, self.fail_after = frames, loop, fail_after
        self.i = 0
        self.opened = True

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened or (self.fail_after is not None and self.i >= self.fail_after):
            return False, None
        if not self.frames or (self.i >= len(self.frames) and not self.loop):
            return False, None
        frame = self.frames[self.i % len(self.frames)]
        self.i += 1
        return True, frame

    def release(self) -> None:
        self.opened = False


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def open_source(spec: str | int | Path, config: SourceConfig | None = None) -> Source:
    """The source ``spec`` names: a camera index, a URL, a video file, an image or a folder.

    MultiNetError (one line) when it does not exist or cannot be opened."""
    config = config or SourceConfig()
    if config.live not in ("auto", "on", "off"):
        raise MultiNetError(f"--live must be auto, on or off, got {config.live!r}")
    if config.frame_step < 1:
        raise MultiNetError(f"--frame-step must be at least 1, got {config.frame_step}")
    text = str(spec).strip()
    if isinstance(spec, int) or re.fullmatch(r"\d{1,3}", text):
        index = int(text)
        return LiveSource(lambda: cv2.VideoCapture(index), text, config.retry_seconds)
    if _URL.match(text) and not text.lower().startswith("file://"):
        ms = int(config.open_timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        def opener():
            return cv2.VideoCapture(text, cv2.CAP_ANY, params)
        if config.live == "off":
            cap = opener()
            if not cap.isOpened():
                raise MultiNetError(f"cannot open stream {text}: check the address, the "
                                    "network and that the stream is running")
            return _CaptureFileSource(cap, text, config)
        return LiveSource(opener, text, config.retry_seconds, kind="stream")
    path = Path(text[7:] if text.lower().startswith("file://") else text).expanduser()
    if not path.exists():
        raise MultiNetError(f"source {text} does not exist: give a camera index (0), a video "
                            "file, an image, a folder of images or a stream URL")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    if str(path).startswith("/dev/video"):
        return LiveSource(lambda: cv2.VideoCapture(str(path)), str(path), config.retry_seconds)
    if config.live == "on":
        probe = VideoFileSource(path, config)  # checks it opens, reads its frame rate
        fps = probe.fps or 30.0
        probe.close()
        return LiveSource(lambda: cv2.VideoCapture(str(path)), str(path), config.retry_seconds,
                          pace_fps=fps, eof_ends=True, kind="video")
    return VideoFileSource(path, config)


class _CaptureFileSource(VideoFileSource):
    """A stream read like a file (every frame, nothing dropped): ``--live off`` on a URL."""

    kind = "stream"

    def __init__(self, cap: cv2.VideoCapture, name: str, config: SourceConfig) -> None:
        Source.__init__(self, name)
        self.config, self.cap = config, cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.frame_count = None


# --- outputs ------------------------------------------------------------------------------

def annotate(frame: np.ndarray, faces: list[FaceResult], note: str = "") -> np.ndarray:
    """A copy of ``frame`` (BGR) with each face's box, id, stable label and confidence."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, min(out.shape[1] / 1280, 1.2))
    thick = max(1, round(2 * scale))
    for face in faces:
        b = face.box
        color = COLORS_BGR.get(face.stable_label, (255, 255, 255))
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), color, thick)
        text = f"#{face.track_id} {face.stable_label} {face.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale * 1.5, thick)
        y = b.y - 4 if b.y - th - base - 4 > 0 else b.y + b.h + th + 4
        cv2.rectangle(out, (b.x, y - th - base), (b.x + tw + 4, y + base), color, -1)
        cv2.putText(out, text, (b.x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale * 1.5,
                    (0, 0, 0), thick, cv2.LINE_AA)
    if note:
        cv2.putText(out, note, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale * 1.5,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out


class VideoSink:
    """An annotated video, written beside the target and renamed into place when closed."""

    FOURCC: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v",
                                        ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in self.FOURCC:
            raise MultiNetError(f"--video-out {path}: use a .mp4, .avi, .mkv or .mov file name")
        self.fps = fps
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*self.FOURCC[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                self.tmp.unlink(missing_ok=True)
                raise MultiNetError(f"cannot write video {self.path}: OpenCV has no encoder "
                                    "for it here; try a .avi file name")
        if (image.shape[1], image.shape[0]) != self.size:  # image folders of mixed sizes
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.tmp, self.path)


class Display:
    """An OpenCV window; MultiNetError up front when this OpenCV build or machine has no GUI."""

    def __init__(self, title: str = "multinet-emotion") -> None:
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY")):
            raise MultiNetError("--show needs a display, and none is available here (no DISPLAY); "
                                "write an annotated video with --video-out instead")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise MultiNetError("--show needs OpenCV with GUI support, and this one has none "
                                "(opencv-python-headless); install opencv-python instead, or "
                                "write an annotated video with --video-out") from None

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc or closed the window."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


CSV_FIELDS = (["t", "frame", "track_id", "face", "x", "y", "w", "h", "label", "smoothed_label",
               "stable_label", "confidence"]
              + [f"p_{k}" for k in EMOTIONS] + [f"s_{k}" for k in EMOTIONS])


def event_to_row(event: dict[str, Any]) -> dict[str, Any]:
    """A flat CSV row for an event (empty cells for a frame without a face)."""
    row: dict[str, Any] = {"t": event["t"], "frame": event["frame"],
                           "track_id": "" if event["track_id"] is None else event["track_id"],
                           "face": int(event["face"])}
    if event["face"]:
        row.update(zip("xywh", event["box"]))
        row.update(label=event["label"], smoothed_label=event["smoothed_label"],
                   stable_label=event.get("stable_label", event["smoothed_label"]),
                   confidence=event["confidence"])
        row.update({f"p_{k}": v for k, v in event["probs"].items()})
        row.update({f"s_{k}": v for k, v in event["smoothed"].items()})
    return row


def _open_output(path: Path, option: str, **kwargs):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", **kwargs)
    except OSError as e:
        raise MultiNetError(f"{option} {path}: cannot write there ({e.strerror}); choose "
                            "another path") from None


class EventWriter:
    """JSON Lines (``-`` = standard output) and/or CSV events, flushed after every frame, so
    a run that is stopped keeps everything written so far."""

    def __init__(self, jsonl: Path | None, csv_path: Path | None) -> None:
        self.jsonl = self.csv = None
        self._writer = None
        self._own_jsonl = jsonl is not None and str(jsonl) != "-"
        if jsonl is not None and not self._own_jsonl:
            self.jsonl = sys.stdout  # "-": events to standard output, for a pipe
        elif jsonl is not None:
            self.jsonl = _open_output(jsonl, "--jsonl")
        try:
            if csv_path is not None:
                self.csv = _open_output(csv_path, "--csv", newline="")
                self._writer = csv.DictWriter(self.csv, CSV_FIELDS)
                self._writer.writeheader()
        except BaseException:  # do not leave the JSON Lines file open
            self.close()
            raise

    def write(self, events: list[dict[str, Any]]) -> None:
        if self.jsonl is not None:
            self.jsonl.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
            self.jsonl.flush()
        if self._writer is not None:
            self._writer.writerows(event_to_row(e) for e in events)
            self.csv.flush()

    def close(self) -> None:
        if self.jsonl is not None and self._own_jsonl:
            self.jsonl.close()
        if self.csv is not None:
            self.csv.close()


#: Plot formats, chosen by the file's suffix (those matplotlib's Agg canvas writes).
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def check_plot_path(path: Path) -> None:
    """One clear error for a ``--plot`` path whose suffix names no image format."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "a file without a suffix"
        raise MultiNetError(f"--plot {path}: cannot draw the plot as {kind}; name it with one "
                            f"of {', '.join(PLOT_SUFFIXES)} (e.g. timeline.png)")


def plot_timeline(summary: dict[str, Any], path: Path) -> None:
    """A PNG (or another format of :data:`PLOT_SUFFIXES`, by ``path``'s suffix): per track,
    its shown (stable) emotion over time, and its shares of time per emotion."""
    check_plot_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: never touches the user's backend
    from matplotlib.patches import Patch

    tracks = summary.get("tracks", {})
    n = max(len(tracks), 1)
    fig = Figure(figsize=(10, 1.6 + 0.9 * n))
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    unit = "image" if summary.get("kind") in ("image", "images") else "time (s)"
    for row, (_tid, tr) in enumerate(tracks.items()):
        for start, end, label in tr["segments"]:
            ax.broken_barh([(start, max(end - start, 1e-3))], (row - 0.4, 0.8),
                           color=COLORS_HEX[label])
        left = 0.0
        for label in EMOTIONS:
            share = tr["shares"][label]
            if share > 0:
                ax2.barh(row, share, left=left, height=0.8, color=COLORS_HEX[label])
                left += share
    ax.set_yticks(range(len(tracks)), [f"track {t}" for t in tracks])
    ax.set_ylim(-0.6, n - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(f"emotion per track - {Path(str(summary.get('source', ''))).name}")
    if not tracks:
        ax.text(0.5, 0.5, "no faces found", ha="center", va="center", transform=ax.transAxes)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of time")
    fig.legend(handles=[Patch(color=COLORS_HEX[k], label=k) for k in EMOTIONS],
               loc="lower center", ncol=6, frameon=False)
    fig.tight_layout(rect=(0, 0.12 if n > 1 else 0.18, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


# --- a whole run --------------------------------------------------------------------------

@dataclass
class RunConfig:
    """One ``detect`` run: the source, the analysis and the outputs the user chose."""

    source: str
    model: Path | None = None  # None = the default model in the package
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    source_config: SourceConfig = field(default_factory=SourceConfig)
    jsonl: Path | None = None
    csv: Path | None = None
    video_out: Path | None = None
    video_fps: float | None = None  # None = the source's rate (15 for live sources)
    summary: Path | None = None
    plot: Path | None = None
    show: bool = False
    max_frames: int = 0  # stop after this many analysed frames (0 = no limit)
    max_seconds: float = 0.0  # stop after this many seconds of wall time (0 = no limit)


@dataclass
class RunReport:
    """What a run did: counts, speed, latency, and the summary written to disk."""

    summary: dict[str, Any]
    events: int = 0
    interrupted: bool = False


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "max": round(float(a.max()), 1)}


def quiet_opencv(verbose: bool = False) -> None:
    """Keep OpenCV's and FFmpeg's own warnings off the terminal; errors are ours to report."""
    if not verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:  # very old builds
            pass


def run(config: RunConfig, detector: EmotionDetector | None = None,
        source: Source | None = None,
        on_frame: Callable[[Frame, list[FaceResult]], None] | None = None) -> RunReport:
    """Analyse a whole source and write the outputs ``config`` asks for.

    Ctrl-C (KeyboardInterrupt) ends the run like the end of the source: every output is
    flushed and the summary is written; :attr:`RunReport.interrupted` tells it happened."""
    quiet_opencv(log.isEnabledFor(logging.DEBUG))
    if config.plot is not None:  # fail before any work, not after the run
        check_plot_path(config.plot)
    display = Display() if config.show else None  # fail before any work when there is no GUI
    detector = detector or EmotionDetector(config.model, config.pipeline)
    source = source or open_source(config.source, config.source_config)
    events_out = video = None
    timeline = Timeline(max_gap=1.0)
    latencies: list[float] = []
    n_events = analysed = 0
    interrupted = False
    started = time.time()
    t_start = time.monotonic()
    try:
        events_out = EventWriter(config.jsonl, config.csv)
        if config.video_out is not None:
            fps = config.video_fps or (source.fps / max(1, config.source_config.frame_step)
                                       if source.fps and not source.live else 15.0)
            video = VideoSink(config.video_out, fps)
        for frame in source:
            if source.independent:
                detector.reset()
            faces = detector.process(frame.image, t=frame.t)
            events = ([f.to_event(frame.t, frame.index) for f in faces]
                      or [no_face_event(frame.t, frame.index)])
            events_out.write(events)
            n_events += len(events)
            analysed += 1
            timeline.add_frame(frame.t, {f.track_id: f.stable_label for f in faces})
            if video is not None or display is not None:
                image = annotate(frame.image, faces)
                if video is not None:
                    video.write(image)
                if display is not None and not display.show(image):
                    break
            if on_frame is not None:
                on_frame(frame, faces)
            latencies.append(time.monotonic() - frame.captured_at)
            if config.max_frames and analysed >= config.max_frames:
                break
            if config.max_seconds and time.monotonic() - t_start >= config.max_seconds:
                break
    except KeyboardInterrupt:
        interrupted = True
        log.info("interrupted: saving what was analysed so far")
    finally:
        source.close()
        if events_out is not None:
            events_out.close()
        if video is not None:
            video.close()
        if display is not None:
            display.close()
    wall = time.monotonic() - t_start
    summary: dict[str, Any] = {
        "source": source.name, "kind": source.kind, "live": source.live,
        "model": str(detector.classifier.path),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(wall, 3),
        "frames_read": source.frames_read, "frames_analysed": analysed,
        "unreadable_frames": source.unreadable, "dropped_frames": source.dropped,
        "source_lost": source.lost, "reconnects": source.reconnects, "interrupted": interrupted,
        "analysis_fps": round(analysed / wall, 2) if wall > 0 else None,
        "latency_ms": _percentiles(latencies),
        "settings": _settings(config, detector),
        **timeline.summary(),
    }
    if source.labels:
        summary["images"] = source.labels
    for option, path, write in (
            ("--summary", config.summary,
             lambda p: atomic_write_text(p, json.dumps(summary, indent=2) + "\n")),
            ("--plot", config.plot, lambda p: plot_timeline(summary, p))):
        if path is not None:
            try:
                write(path)
            except OSError as e:
                raise MultiNetError(f"{option} {path}: cannot write there ({e.strerror}); the "
                                    "events written so far are kept") from None
    return RunReport(summary=summary, events=n_events, interrupted=interrupted)


def _settings(config: RunConfig, detector: EmotionDetector) -> dict[str, Any]:
    p = detector.config
    d = asdict(p.detector)
    d["model_path"] = None if d["model_path"] is None else str(d["model_path"])
    return {"detector": d, "tracker": asdict(p.tracker), "detect_every": p.detect_every,
            "refresh_hz": p.refresh_hz, "crop_scale": detector.crop_scale,
            "input_size": detector.classifier.input_size,
            "frame_step": config.source_config.frame_step, "live": config.source_config.live}
