"""Face detectors behind one small interface, and the crops the classifier sees.

A detector is anything with ``detect(frame) -> list[Box]`` (see :class:`FaceDetector`); the
frame is a BGR (or grey) uint8 image and boxes come back in that frame's pixel coordinates.
Three ship with the package, each in its own module, built by :func:`make_detector`:

- ``haar``: OpenCV's frontal-face Haar cascade (:mod:`.haar`), inside the opencv wheel.
- ``blazeface``: MediaPipe's BlazeFace network, vendored in ``assets/blazeface``
  (:mod:`.blazeface`): turned and tilted heads, small faces, an eye line for the crop.
- ``yunet``: OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``) from a local ``.onnx`` file
  the user points at with ``--detector-model`` (:mod:`.yunet`).

Others plug in with :func:`register_detector`. Faces smaller than ``min_face`` pixels (in
the original frame) are ignored by every detector.

Crops (:func:`crop_faces`) reproduce the framing of the training images: the detected box is
scaled by ``crop_scale`` about its centre, padded at the frame borders by repeating the edge,
turned grey and resized to the model's input size with ``cv2.INTER_AREA``. A tilted face's
box carries its angle (:attr:`Box.angle`) and its crop is turned upright, as the model was
trained.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

import cv2
import numpy as np

from .. import options
from ..emotions import DEFAULT_FACE_SIZE
from ..errors import MultiNetError
from ..options import setting

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


class _Range(TypedDict):  # the range arguments of a setting (options.Spec's)
    min: float
    max: float


#: The crop scales accepted wherever one is given (``detect --crop-scale``, ``export
#: --crop-scale``, a model file's metadata), as the range arguments of a setting.
CROP_SCALE_RANGE: _Range = {"min": 0.5, "max": 4.0}
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


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise MultiNetError("a frame must be a non-empty HxW or HxWxC NumPy image array, got "
                            f"{type(frame).__name__} {getattr(frame, 'shape', '')}")
    if frame.dtype != np.uint8:
        raise MultiNetError(f"a frame must be uint8 (0..255), got {frame.dtype}; "
                            "convert with np.clip(frame, 0, 255).astype(np.uint8)")
    return frame


def _scaled(image: np.ndarray, s: float) -> np.ndarray:
    if s >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


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
    "haar": "multinet_emotion.runtime.haar:HaarDetector",
    "yunet": "multinet_emotion.runtime.yunet:YuNetDetector",
    "blazeface": "multinet_emotion.runtime.blazeface:BlazeFaceDetector"}


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


#: Names that moved to the detector modules, still importable from here: imported when first
#: asked for, as the detectors are (those modules build on this one).
_MOVED = {name: "multinet_emotion.runtime.haar" for name in (
    "HaarDetector", "SCAN_FACE_PX", "scan_scale", "_CascadePool", "_cascade_pool", "_pools",
    "_pools_lock", "_turned", "_unturn")} | {
    name: "multinet_emotion.runtime.yunet" for name in ("YuNetDetector", "_downscale")}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
