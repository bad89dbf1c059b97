"""OpenCV's frontal-face Haar cascade as a face detector (``--detector haar``).

opencv-python(-headless) < 5 carries the cascade inside the wheel, so nothing is downloaded.
It runs on a copy of the frame scaled down to ``detect_width`` pixels (a 640x480 frame costs
several times less at 320 px wide), and further down when even the smallest face it looks
for would be over ``scan_face_px`` (36) pixels there (:func:`scan_scale`).

A tilted head (``DetectorConfig.tilt``): the frontal Haar cascade finds few faces turned
20 degrees or more in the picture's plane (a head leant to one side, on a hand). When an
upright scan finds nobody, the Haar detector scans the frame turned by +tilt and then -tilt;
a face found so carries the angle (:attr:`Box.angle`), its local searches look in a region
turned alike, and its crop is turned upright, as the model was trained.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from ..errors import MultiNetError
from .faces import (
    HAAR_CASCADE,
    Box,
    DetectorConfig,
    _check_frame,
    _rescale,
    _scaled,
    tilt_turns,
    to_grey,
    turn_cos_sin,
    turn_matrix,
)


def _unturn(m: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """The point that the turn ``m`` (turn_matrix, maybe shifted) sends to (x, y)."""
    a, b = float(m[0, 0]), float(m[0, 1])
    det = a * a + b * b
    dx, dy = x - float(m[0, 2]), y - float(m[1, 2])
    return (a * dx - b * dy) / det, (b * dx + a * dy) / det


def _turned(image: np.ndarray, cos: float, sin: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned about its centre, the same size (its corners cut, the corners left
    empty filled black: a scan costs what an upright one does, and a flat black area gives
    the cascade nothing to find), and the matrix that did it."""
    h, w = image.shape[:2]
    m = turn_matrix(w / 2, h / 2, cos, sin)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0), m


#: A whole-frame Haar scan sees the smallest face it looks for (``min_face``) at most this
#: many pixels wide (``DetectorConfig.scan_face_px``): 1.5 times the cascade's 24-pixel
#: window. Wider costs more and finds no more faces. The cascade steps 2 pixels at a time
#: over scales up to twice its window and 1 pixel beyond, so a 320x240 frame scanned at
#: 320 px (a 48-px face seen at 48) tries about twice the windows it does at 240 px.
#: ``python bench/detection.py`` measures both on FER2013 faces (docs/detect.md).
#: Frames wider than ``detect_width`` are scanned below this already (640 px at 320 wide:
#: a 48-px face seen at 24).
SCAN_FACE_PX = 36


def scan_scale(width: int, detect_width: int, min_face: int,
               face_px: int = SCAN_FACE_PX) -> float:
    """The factor (<= 1) a whole-frame Haar scan of a frame ``width`` pixels wide works at:
    at most ``detect_width`` pixels wide (0 = any), and the smallest face it looks for
    (``min_face``) at most ``face_px`` wide. The learner page computes the same."""
    s = detect_width / width if 0 < detect_width < width else 1.0
    if min_face * s > face_px:
        s = face_px / min_face
    return s


class _CascadePool:
    """Parsed copies of one Haar cascade file, each lent to one scan at a time.

    A ``CascadeClassifier`` keeps the state of the scan in progress, so two scans at once
    need two copies; parsing one costs about as much as a whole-frame scan
    (``python bench/detection.py``). The pool parses a copy only when every copy is in a
    scan, so a process holds as many as it ever ran scans at once, whichever threads run
    them: a server whose connections start in many threads parses a few, not one a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._free: list[cv2.CascadeClassifier] = []
        self._lock = threading.Lock()
        self.parsed = 0

    def _parse(self) -> cv2.CascadeClassifier:
        try:
            cascade = cv2.CascadeClassifier(self.path)
        except (cv2.error, SystemError):  # some builds raise on a malformed file
            cascade = None
        if cascade is None or cascade.empty():
            raise MultiNetError(f"{self.path} is not a Haar cascade OpenCV can read; pass "
                                "--detector-model PATH to a cascade XML file")
        with self._lock:
            self.parsed += 1
        return cascade

    def ensure(self, n: int) -> None:
        """Parse copies now until ``n`` have been parsed (the first one checks the file)."""
        while self.parsed < n:
            cascade = self._parse()
            with self._lock:
                self._free.append(cascade)

    @contextmanager
    def borrow(self) -> Iterator[cv2.CascadeClassifier]:
        with self._lock:
            cascade = self._free.pop() if self._free else None
        if cascade is None:
            cascade = self._parse()
        try:
            yield cascade
        finally:
            with self._lock:
                self._free.append(cascade)


_pools: dict[tuple[str, int, int], _CascadePool] = {}
_pools_lock = threading.Lock()


def _cascade_pool(key: tuple[str, int, int]) -> _CascadePool:
    """The pool of the cascade file ``key`` names (path, mtime, size: a file replaced on
    disk gets a new pool)."""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _CascadePool(key[0])
        return pool


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, run on a downscaled, contrast-equalised grey frame."""

    def __init__(self, config: DetectorConfig | None = None, color: str = "bgr") -> None:
        self.config = config or DetectorConfig(kind="haar")
        self.color = color
        path = self.config.model_path
        if path is None:
            data = getattr(cv2, "data", None)
            if data is None or not (Path(data.haarcascades) / HAAR_CASCADE).is_file():
                raise MultiNetError(
                    "this OpenCV build ships no Haar cascades (opencv-python >= 5 dropped "
                    "them): install opencv-python-headless<5, or pass --detector-model "
                    f"PATH to a {HAAR_CASCADE}, or use --detector yunet")
            path = Path(data.haarcascades) / HAAR_CASCADE
        path = Path(path)
        if not path.is_file():
            raise MultiNetError(f"Haar cascade {path} does not exist; pass --detector-model "
                                "PATH to a cascade XML file")
        # Local (CLAHE) rather than global equalisation: on FER2013 faces pasted darker or
        # brighter than the background, global equalizeHist lost 10-20% of the faces the
        # raw frame gives, and CLAHE found slightly more than the raw frame.
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        st = path.stat()  # once, not on every scan; a file replaced on disk is parsed again
        self.cascades = _cascade_pool((str(path), st.st_mtime_ns, st.st_size))
        self.cascades.ensure(1)  # checks the file now, once for every detector of this file

    def prepare(self, scans_at_once: int) -> None:
        """Parse the cascade copies that ``scans_at_once`` concurrent scans need now, not
        while the first busy moment (a class joining together) waits for them."""
        self.cascades.ensure(scans_at_once)

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Faces in the frame, largest first; when none is upright, those found in the
        frame turned by each of :func:`tilt_turns` (the first turn that finds any)."""
        return self._detect(frame, upright=True, turned=True)

    def detect_upright(self, frame: np.ndarray) -> list[Box]:
        """The upright scan of :meth:`detect` alone: a third of its CPU when nobody is
        there. The pipeline scans so, and turned (:meth:`detect_turned`) only now and then,
        while nobody is in view (``PipelineConfig.tilt_every``)."""
        return self._detect(frame, upright=True, turned=False)

    def detect_turned(self, frame: np.ndarray) -> list[Box]:
        """The turned scans of :meth:`detect` alone (the faces of the first turn that finds
        any)."""
        return self._detect(frame, upright=False, turned=True)

    def _detect(self, frame: np.ndarray, upright: bool, turned: bool) -> list[Box]:
        grey = to_grey(_check_frame(frame), self.color)
        s = scan_scale(grey.shape[1], self.config.detect_width, self.config.min_face,
                       self.config.scan_face_px)
        small = self._equalize(_scaled(grey, s))
        min_side = max(12, round(self.config.min_face * s))
        boxes = []
        if upright:
            boxes = _rescale([(x, y, w, h, 1.0) for (x, y, w, h) in self._scan(small, min_side)],
                             s, self.config.min_face)
        for angle, cos, sin in ([] if boxes or not turned else tilt_turns(self.config.tilt)):
            image, m = _turned(small, cos, sin)
            rows = []
            for x, y, w, h in self._scan(image, min_side):
                cx, cy = _unturn(m, x + w / 2, y + h / 2)
                rows.append((cx - w / 2, cy - h / 2, w, h, 1.0))
            boxes = _rescale(rows, s, self.config.min_face, angle)
            if boxes:
                break
        return boxes

    def _scan(self, image: np.ndarray, min_side: int) -> np.ndarray:
        """The cascade's hits (x, y, w, h rows) in an equalised grey image."""
        with self.cascades.borrow() as cascade:
            found = cascade.detectMultiScale(
                image, scaleFactor=self.config.scale_factor,
                minNeighbors=self.config.min_neighbors, minSize=(min_side, min_side))
        return np.asarray(found).reshape(-1, 4)

    def _equalize(self, image: np.ndarray) -> np.ndarray:
        if self.config.equalize == "clahe":
            return self._clahe.apply(image)
        if self.config.equalize == "hist":
            return cv2.equalizeHist(image)
        return image

    def detect_near(self, frame: np.ndarray, box: Box, margin: float = 0.5) -> Box | None:
        """The face that was at ``box`` in an earlier frame, searched for only around it.

        The region (``box`` grown by ``margin`` of its size on each side) is scaled so the
        face is about 48 px and only faces of 1/g..g times the old size are tried (g =
        ``near_size_change``, 1.25): about a fifth of a whole-frame scan's CPU (``python
        bench/detection.py`` prints both). A tilted face (``box.angle``) is searched for in
        the region turned upright about the box's centre, and keeps its angle. Returns None
        when the face is not there (gone, turned away, or missed)."""
        grey = to_grey(_check_frame(frame), self.color)
        fh, fw = grey.shape
        side = max(box.w, box.h)
        turn = None
        if box.angle:  # coordinates in the frame turned upright about the box's centre
            turn = turn_matrix(*box.center, *turn_cos_sin(box.angle))
            x0, y0 = int(box.x - margin * side), int(box.y - margin * side)
            x1, y1 = int(box.x + box.w + margin * side), int(box.y + box.h + margin * side)
        else:
            x0, y0 = max(int(box.x - margin * side), 0), max(int(box.y - margin * side), 0)
            x1 = min(int(box.x + box.w + margin * side), fw)
            y1 = min(int(box.y + box.h + margin * side), fh)
        if x1 - x0 < 24 or y1 - y0 < 24:
            return None
        s = min(1.0, 48.0 / max(side, 1))
        if turn is None:
            region = grey[y0:y1, x0:x1]
        else:
            shifted = turn.copy()
            shifted[:, 2] -= (x0, y0)
            region = cv2.warpAffine(grey, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        if s < 1.0:
            region = cv2.resize(region, (max(24, round((x1 - x0) * s)),
                                         max(24, round((y1 - y0) * s))),
                                interpolation=cv2.INTER_AREA)
        grow = self.config.near_size_change
        lo, hi = max(20, int(side * s / grow)), max(24, int(grow * side * s) + 1)
        equalized = self._equalize(region)
        with self.cascades.borrow() as cascade:
            found = cascade.detectMultiScale(
                equalized, scaleFactor=self.config.scale_factor,
                minNeighbors=self.config.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi))
        best, best_iou = None, 0.0
        for x, y, w, h in np.asarray(found).reshape(-1, 4):
            cand = Box(round(x0 + x / s), round(y0 + y / s), round(w / s),
                       round(h / s))
            iou = cand.iou(box)
            if iou > best_iou and min(cand.w, cand.h) >= self.config.min_face:
                best, best_iou = cand, iou
        if best is not None and turn is not None:  # back to the frame's coordinates
            cx, cy = _unturn(turn, *best.center)
            best = Box(round(cx - best.w / 2), round(cy - best.h / 2), best.w, best.h,
                       angle=box.angle)
        return best
