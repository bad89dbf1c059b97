"""Where frames come from: a camera index, a stream URL, a video file, an image or a folder.

Cameras and streams are *live*: a capture thread keeps only the newest frame, so the
analysis never builds a backlog; frames it overwrites are counted as dropped. A live source
that stops delivering is reopened for ``retry_seconds`` before the run ends. Video files are
read frame by frame with nothing skipped (unless ``frame_step`` > 1). Unreadable frames and
images are skipped and counted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import cv2
import numpy as np

from ... import options
from ...errors import MultiNetError
from ...options import setting

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


@dataclass
class Frame:
    image: np.ndarray
    index: int  # position in the source (live: capture counter, so gaps show drops)
    t: float  # media time (files), seconds since start (live), image number (images)
    captured_at: float  # time.monotonic() when the frame arrived


@dataclass
class SourceConfig:
    """How to read the source. Filled from ``detect --live/--retry-seconds/--frame-step``."""

    live: str = setting("auto", choices=("auto", "on", "off"),
                        help="auto: cameras and URLs live (newest frame wins); on: also play "
                             "files at their frame rate; off: every frame of a stream")
    retry_seconds: float = setting(10.0, min=0, unit="seconds",
                                   help="how long to reconnect a camera/stream that stopped")
    frame_step: int = setting(1, min=1, help="video files: analyse every Nth frame (1 = all)")
    max_bad_frames: int = setting(100, cli=False, min=0,
                                  help="files: consecutive unreadable frames before giving up")
    open_timeout: float = setting(10.0, cli=False, min=0, min_open=True, unit="seconds",
                                  help="streams: seconds to wait when opening / reading")

    def __post_init__(self) -> None:
        options.check(self)


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

    def __exit__(self, *exc: object) -> None:
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
    options.check(config)  # also a config changed after it was made
    text = str(spec).strip()
    if isinstance(spec, int) or re.fullmatch(r"\d{1,3}", text):
        index = int(text)
        return LiveSource(lambda: cv2.VideoCapture(index), text, config.retry_seconds)
    if _URL.match(text) and not text.lower().startswith("file://"):
        ms = int(config.open_timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        def opener() -> cv2.VideoCapture:
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
