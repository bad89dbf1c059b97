"""Face detectors behind one small interface, and the crops the classifier sees.

A detector is anything with ``detect(frame) -> list[Box]`` (see :class:`FaceDetector`); the
frame is a BGR (or grey) uint8 image and boxes come back in that frame's pixel coordinates.
Two ship here:

- ``haar``: OpenCV's frontal-face Haar cascade, which opencv-python(-headless) < 5 carries
  inside the wheel, so nothing is downloaded. It runs on a copy of the frame scaled down to
  ``detect_width`` pixels (a 640x480 frame costs several times less at 320 px wide), and
  further down when even the smallest face it looks for would be over ``scan_face_px`` (36)
  pixels there (:func:`scan_scale`).
- ``blazeface``: MediaPipe's BlazeFace network, vendored in ``assets/blazeface``
  (:mod:`.blazeface`): turned and tilted heads, small faces, an eye line for the crop.
- ``yunet``: OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``) from a local ``.onnx`` file
  the user points at with ``--detector-model``.

Others plug in with :func:`register_detector`. Faces smaller than ``min_face`` pixels (in
the original frame) are ignored by every detector.

Crops (:func:`crop_faces`) reproduce the framing of the training images: the detected box is
scaled by ``crop_scale`` about its centre, padded at the frame borders by repeating the edge,
turned grey and resized to the model's input size with ``cv2.INTER_AREA``.

A tilted head (``DetectorConfig.tilt``): the frontal Haar cascade finds few faces turned
20 degrees or more in the picture's plane (a head leant to one side, on a hand). When an
upright scan finds nobody, the Haar detector scans the frame turned by +tilt and then -tilt;
a face found so carries the angle (:attr:`Box.angle`), its local searches look in a region
turned alike, and its crop is turned upright, as the model was trained.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from . import options
from .emotions import DEFAULT_FACE_SIZE
from .errors import MultiNetError
from .options import setting

log = logging.getLogger(__name__)

#: Default crop scale, used when the model file's metadata gives none.
#: Measured with opencv-python-headless 4.14: 800 FER2013 test images (48x48, six classes,
#: random sample, seed 0) were upscaled to 150..200 px, pasted on a 640x480 grey gradient
#: and run through HaarDetector's steps (CLAHE, scaleFactor 1.1, minNeighbors 5) at 320 px
#: and at full width. The median of pasted_size / detected_box_width was 1.011 at 320 px
#: (1.005 at 640 px; interquartile range 0.94..1.10; 596 and 605 of 800 faces found), and
#: the box centre sat on the image centre to within 0.5% of the box width. FER2013 images
#: are framed almost exactly like a Haar box, so the crop is the box scaled by 1.01.
DEFAULT_CROP_SCALE = 1.01
#: The crop scales accepted wherever one is given (``detect --crop-scale``, ``export
#: --crop-scale``, a model file's metadata), as the range arguments of a setting.
CROP_SCALE_RANGE: dict[str, float] = {"min": 0.5, "max": 4.0}
EQUALIZE = ("clahe", "hist", "none")

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Box:
    """A face box in frame pixels: top-left corner, width, height, and a detector score.

    ``angle`` (degrees, counter-clockwise as OpenCV's ``getRotationMatrix2D``): the turn of
    the picture about the box's centre that stands the face upright; 0 for an upright face.
    The box is the face's square in that turned picture (same centre and size), so for a
    tilted face it only approximates the face's extent in the frame."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    angle: float = 0.0

    @property
    def area(self) -> int:
        return max(self.w, 0) * max(self.h, 0)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2.0, self.y + self.h / 2.0

    def iou(self, other: Box) -> float:
        """Intersection over union with another box (0 when they do not overlap)."""
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_list(self) -> list[int]:
        return [int(self.x), int(self.y), int(self.w), int(self.h)]


class FaceDetector(Protocol):
    """The detector interface: boxes of the faces in a BGR or grey uint8 frame.

    A detector may also offer ``detect_near(frame, box) -> Box | None``, a cheap search for
    a known face around its last box; the pipeline uses it between full detections (see
    ``PipelineConfig.detect_every``) and simply keeps the last box for detectors without it.
    A detector whose search looks at the whole frame anyway offers
    ``detect_near_all(frame, boxes) -> list[Box | None]`` instead: every known face in one
    pass.
    """

    def detect(self, frame: np.ndarray) -> list[Box]: ...


@dataclass
class DetectorConfig:
    """Which face detector to use and how. Filled from ``detect --detector ...``."""

    kind: str = setting("blazeface", flag="--detector", metavar="DETECTOR",  # or register_detector()
                        help="face detector: blazeface (MediaPipe's, built in: turned, "
                             "tilted, small and dim faces), haar (OpenCV's cascade, built "
                             "in) or yunet (needs --detector-model)")
    model_path: Path | None = setting(None, flag="--detector-model", metavar="DETECTOR_MODEL",
                                      help="the detector's model file (YuNet .onnx, or another "
                                           "Haar cascade)")
    detect_width: int = setting(320, min=0, unit="pixels",
                                help="detect faces on a copy at most this many pixels "
                                     "wide (0 = full size)")
    min_face: int = setting(48, min=0, unit="pixels",
                            help="ignore faces narrower than this many pixels")
    # tuning of the detectors, set in code only
    scale_factor: float = setting(1.1, cli=False, min=1, min_open=True,
                                  help="Haar: image pyramid step")
    min_neighbors: int = setting(5, cli=False, min=0,
                                 help="Haar: overlapping hits needed to keep a face")
    near_size_change: float = setting(1.25, cli=False, min=1, min_open=True,
                                      help="Haar: following a face, sizes from 1/this to "
                                           "this times its last are tried")
    scan_face_px: int = setting(36, cli=False, min=24, unit="pixels",
                                help="Haar: a whole-frame scan sees the smallest face "
                                     "(min_face) at most this wide (see scan_scale)")
    equalize: str = setting("clahe", cli=False, choices=EQUALIZE,
                            help="Haar: contrast step, clahe, hist (global) or none")
    tilt: float = setting(20.0, cli=False, min=0, max=45, unit="degrees",
                          help="Haar: when an upright scan finds nobody, scan the frame "
                               "turned this much each way too (0 = never)")
    score_threshold: float = setting(0.7, cli=False, min=0, max=1,
                                     help="YuNet: minimum face score")
    blazeface_score: float = setting(0.6, cli=False, min=0, max=1,
                                     help="BlazeFace: minimum face score (the lowest with "
                                          "no more false detections than Haar in "
                                          "bench/detection.py --compare)")
    nms_threshold: float = setting(0.3, cli=False, min=0, max=1,
                                   help="CNN detectors (BlazeFace, YuNet): non-maximum "
                                        "suppression overlap")
    blazeface: str = setting("back", choices=("front", "back"), flag="--blazeface-model",
                             help="BlazeFace: back (256-px input: faces small to near, the "
                                  "better on 320x240 frames in bench/detection.py --compare) "
                                  "or front (128 px, faces near the camera, a fifth of the "
                                  "work)")
    align: bool = setting(True, cli=False,
                          help="BlazeFace: turn each face's crop upright by its eye line")
    align_min: float = setting(5.0, cli=False, min=0, max=45, unit="degrees",
                               help="BlazeFace: eye lines tilted less than this count as level")

    def __post_init__(self) -> None:
        options.check(self)


def to_grey(frame: np.ndarray, color: str = "bgr") -> np.ndarray:
    """A uint8 single-channel copy of a grey, BGR(A) or RGB(A) frame."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        rgb = color.lower() == "rgb"
        if frame.shape[2] == 3:
            code = cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY
        else:
            code = cv2.COLOR_RGBA2GRAY if rgb else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(frame, code)
    raise MultiNetError(f"a frame must be HxW grey or HxWx3/4 colour, got shape {frame.shape}")


def turn_cos_sin(angle: float) -> tuple[float, float]:
    """Cosine and sine of a turn of ``angle`` degrees. The learner page is given these
    numbers (``tilt_turns``), not the angle, so both runtimes turn by the same matrix."""
    return math.cos(math.radians(angle)), math.sin(math.radians(angle))


def tilt_turns(tilt: float) -> list[tuple[float, float, float]]:
    """The turned scans of ``DetectorConfig.tilt``, in order: (angle, cos, sin) for +tilt
    then -tilt; none for 0."""
    if tilt <= 0:
        return []
    c, s = turn_cos_sin(tilt)
    return [(float(tilt), c, s), (-float(tilt), c, -s)]


def turn_matrix(cx: float, cy: float, cos: float, sin: float) -> np.ndarray:
    """``cv2.getRotationMatrix2D((cx, cy), angle, 1)`` from the angle's cosine and sine."""
    return np.array([[cos, sin, (1 - cos) * cx - sin * cy],
                     [-sin, cos, sin * cx + (1 - cos) * cy]], np.float64)


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


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise MultiNetError("a frame must be a non-empty HxW or HxWxC NumPy image array, got "
                            f"{type(frame).__name__} {getattr(frame, 'shape', '')}")
    if frame.dtype != np.uint8:
        raise MultiNetError(f"a frame must be uint8 (0..255), got {frame.dtype}; "
                            "convert with np.clip(frame, 0, 255).astype(np.uint8)")
    return frame


def _downscale(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The image scaled so its width is at most ``width``, and the factor used (<= 1)."""
    h, w = image.shape[:2]
    if width <= 0 or w <= width:
        return image, 1.0
    return _scaled(image, width / w), width / w


def _scaled(image: np.ndarray, s: float) -> np.ndarray:
    if s >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


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


class YuNetDetector:
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) from a local ONNX file."""

    def __init__(self, config: DetectorConfig, color: str = "bgr") -> None:
        self.config = config
        self.color = color
        path = config.model_path
        if path is None:
            raise MultiNetError("--detector yunet needs --detector-model PATH to a YuNet .onnx "
                                "file (e.g. face_detection_yunet_2023mar.onnx from the OpenCV "
                                "model zoo); nothing is downloaded")
        path = Path(path)
        if not path.is_file():
            raise MultiNetError(f"YuNet model {path} does not exist; pass --detector-model PATH")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise MultiNetError("this OpenCV build has no cv2.FaceDetectorYN (needs OpenCV >= 4.5.4)")
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 240),
                                                 config.score_threshold, config.nms_threshold)
        except cv2.error as e:
            raise MultiNetError(f"OpenCV cannot load {path} as a YuNet model: "
                                f"{str(e).strip().splitlines()[-1]}") from None
        self._size: tuple[int, int] | None = None

    def detect(self, frame: np.ndarray) -> list[Box]:
        frame = _check_frame(frame)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR if self.color == "rgb"
                                 else cv2.COLOR_BGRA2BGR)
        elif self.color == "rgb":
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        small, s = _downscale(frame, self.config.detect_width)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, faces = self.net.detect(small)
        rows = [] if faces is None else [(f[0], f[1], f[2], f[3], float(f[-1])) for f in faces]
        return _rescale(rows, s, self.config.min_face)


def _rescale(rows: Sequence[tuple[float, float, float, float, float]], s: float,
             min_face: int, angle: float = 0.0) -> list[Box]:
    """Boxes from detector coordinates (scaled by ``s``) back to frame pixels, big enough,
    largest first, each with ``angle``. A box whose centre lies inside a larger kept box is
    a second hit on the same face (the Haar cascade does this now and then) and is
    dropped."""
    boxes = []
    for x, y, w, h, score in rows:
        box = Box(round(x / s), round(y / s), round(w / s), round(h / s),
                  float(score), angle)
        if min(box.w, box.h) >= min_face:
            boxes.append(box)
    boxes.sort(key=lambda b: (-b.area, b.x, b.y))
    kept: list[Box] = []
    for box in boxes:
        cx, cy = box.center
        if not any(k.x <= cx <= k.x + k.w and k.y <= cy <= k.y + k.h for k in kept):
            kept.append(box)
    return kept


DetectorFactory = Callable[[DetectorConfig, str], FaceDetector]
#: A factory, or "module:name" of one, imported when first used (a detector module that
#: builds on this one, as blazeface does, is named here, not imported).
_FACTORIES: dict[str, DetectorFactory | str] = {
    "haar": HaarDetector, "yunet": YuNetDetector,
    "blazeface": "multinet_emotion.blazeface:BlazeFaceDetector"}


def register_detector(name: str, factory: DetectorFactory) -> None:
    """Make ``make_detector(DetectorConfig(kind=name))`` build ``factory(config, color)``."""
    _FACTORIES[name] = factory


def detector_names() -> list[str]:
    return sorted(_FACTORIES)


def make_detector(config: DetectorConfig | None = None, color: str = "bgr") -> FaceDetector:
    """Build the detector the config names; MultiNetError for an unknown name or a bad file."""
    config = config or DetectorConfig()
    options.check(config)  # also a config changed after it was made
    factory = _FACTORIES.get(config.kind)
    if factory is None:
        raise MultiNetError(f"unknown face detector {config.kind!r}; choose one of "
                            f"{', '.join(detector_names())}")
    if isinstance(factory, str):
        module, name = factory.split(":")
        factory = _FACTORIES[config.kind] = getattr(importlib.import_module(module), name)
    return factory(config, color)


def check_crop_scale(where: str, value: float | None) -> None:
    """The check of a crop scale given outside a PipelineConfig (export's option, a model
    file's metadata), by the same range (:data:`CROP_SCALE_RANGE`) and message; None = not
    given."""
    options.check_value(where, value, options.Spec(**CROP_SCALE_RANGE), optional=True)


def expand_box(box: Box, scale: float) -> tuple[int, int, int, int]:
    """The crop window ``(x, y, w, h)``: ``box`` scaled by ``scale`` about its centre."""
    cx, cy = box.center
    w, h = box.w * scale, box.h * scale
    x0, y0 = round(cx - w / 2), round(cy - h / 2)
    return x0, y0, max(1, round(w)), max(1, round(h))


def crop_faces(frame: np.ndarray, boxes: Sequence[Box], size: int = DEFAULT_FACE_SIZE,
               crop_scale: float = DEFAULT_CROP_SCALE, color: str = "bgr") -> np.ndarray:
    """Grey ``size`` x ``size`` crops (uint8 ``[N, size, size]``) of the boxes, framed like
    the training images: each box scaled by ``crop_scale`` about its centre, the parts
    outside the frame filled by repeating the border pixels, resized with INTER_AREA. A
    tilted face's window (``box.angle``) is cut from the frame turned upright about the
    box's centre (bilinear)."""
    out = np.empty((len(boxes), size, size), np.uint8)
    if not boxes:
        return out
    grey = to_grey(_check_frame(frame), color)
    fh, fw = grey.shape
    for i, box in enumerate(boxes):
        x0, y0, w, h = expand_box(box, crop_scale)
        if box.angle:
            m = turn_matrix(*box.center, *turn_cos_sin(box.angle))
            m[:, 2] -= (x0, y0)
            patch = cv2.warpAffine(grey, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
            continue
        x1, y1 = x0 + w, y0 + h
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
        if cx1 <= cx0 or cy1 <= cy0:  # entirely outside: nothing real to show
            out[i] = 0
            continue
        patch = grey[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1,
                                       cv2.BORDER_REPLICATE)
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out
