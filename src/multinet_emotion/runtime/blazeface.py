"""BlazeFace: MediaPipe's small face-detection network, behind the detector interface.

``--detector blazeface`` (``DetectorConfig(kind="blazeface")``) runs one of the two ONNX
files vendored in ``assets/blazeface/`` (see its README: origin, licence, sha256):

- ``front`` (128x128 input, short range: a face near the camera, as a learner's);
- ``back`` (256x256 input, full range: smaller and farther faces, 4 times the work).

A frame is letterboxed into a square (black bars), resized to the network's input and
scaled to [-1, 1]; each of the 896 anchors gives a score and a box with six keypoints
(eyes, nose tip, mouth, ears); boxes over the score threshold are merged as MediaPipe does
(weighted by score among boxes that overlap by IoU >= ``nms_threshold``). BlazeFace's box
runs from the brows to the chin; it is turned into the square the runtime's crops expect
(the framing of FER2013's faces, which ``crop_scale`` was measured for) by :data:`FIT`.
With ``align`` the box carries the roll of the eye line (:attr:`~.faces.Box.angle`), so the
crop is turned upright before the model sees it.

One pass over the whole frame finds the faces that fill at least :data:`RELIABLE` of its
longer side. When ``min_face`` asks for smaller ones, overlapping square tiles of the frame
(each ``min_face / RELIABLE`` wide, so the smallest face asked for fills that share of a
tile) are passed too, and their detections merged with the whole frame's: a 320x240 frame
at the default ``min_face`` needs no tile, a 640x480 one needs four (:meth:`squares`).

``detect_near_all`` follows known faces: one pass of the short-range model on a region
three times the face around each (:data:`FOLLOW`); a face it misses there makes the caller
pass the whole frame again.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import MultiNetError
from .faces import Box, DetectorConfig, _check_frame

#: The vendored files and their sha256 (assets/blazeface/README.md).
MODELS: dict[str, tuple[str, int, str]] = {
    "front": ("front_128.onnx", 128,
              "d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51"),
    "back": ("back_256.onnx", 256,
             "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2"),
}
#: Per model: BlazeFace's box side times ``scale`` is the side of the face square the crops
#: expect, and its centre moves by ``shift`` times the box's height (up: negative), measured
#: with ``python bench/detection.py --blazeface-fit`` on FER2013 training faces at a score
#: threshold of 0.7 (at today's 0.6 it prints back 1.172/-0.101, front 1.189/-0.107).
FIT: dict[str, tuple[float, float]] = {"front": (1.180, -0.109), "back": (1.173, -0.104)}
#: Per model: the smallest face, as a share of the side of the square the network sees,
#: that one pass finds reliably (``python bench/detection.py --blazeface-fit``, FER2013
#: training faces on plain squares: back finds 43% at 0.10, 61% at 0.12, 87% at 0.17; front
#: 38% at 0.20, 73% at 0.25).
RELIABLE: dict[str, float] = {"front": 0.25, "back": 0.125}
#: The models whose whole-frame pass is tiled for small faces: on tiles of a frame the
#: short-range model invents faces (the reason it is not tiled; measured while choosing),
#: so it sees the whole frame only.
TILED = frozenset({"back"})
#: A followed face is looked for in a square region this many times its side around its
#: last box, by the FOLLOW model: the face then fills a third of what the network sees, the
#: short-range model's range, and a pass of it costs a fifth of the full-range one's
#: (``bench/detection.py --compare``: 1.3 against 6.2 ms). Against the whole frame's box,
#: its box is the same face (IoU 0.88 in the median) of the same size (x1.02;
#: ``bench/detection.py --blazeface-fit``).
REGION = 3.0
FOLLOW = "front"


def _anchors() -> np.ndarray:
    """The 896 anchor centres (x, y in [0, 1]): 2 per cell of a 16x16 grid, then 6 per
    cell of an 8x8 grid, row by row, as the network's outputs are ordered."""
    out = []
    for cells, per in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 2)
        out.append(np.repeat(centres, per, axis=0))
    return np.concatenate(out).astype(np.float64)


def model_path(file: str) -> Path:
    """Where the vendored model ``file`` (:data:`MODELS`) is installed."""
    return Path(str(resources.files("multinet_emotion") / "assets" / "blazeface" / file))


@cache
def _session(name: str) -> Any:  # an onnxruntime.InferenceSession (onnxruntime is untyped)
    import onnxruntime as ort

    file, _size, digest = MODELS[name]
    path = model_path(file)
    if not path.is_file():
        raise MultiNetError(f"the BlazeFace model {path} is missing; reinstall the package")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise MultiNetError(f"the BlazeFace model {path} is damaged (its sha256 differs); "
                            "reinstall the package")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a server's concurrency is its frames
    options.log_severity_level = 3  # the converted graph has unused initializers: not news
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _merge(rows: np.ndarray, iou: float) -> list[np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: detections (score, cx, cy, w, h,
    12 keypoint coordinates) sorted by score; each cluster of boxes overlapping the best
    remaining one by at least ``iou`` becomes their score-weighted mean, with the best
    score."""
    order = rows[np.argsort(-rows[:, 0], kind="stable")]
    left = np.ones(len(order), bool)
    out = []
    for i in range(len(order)):
        if not left[i]:
            continue
        cand = order[i:][left[i:]]
        overlap = _iou(cand[0, 1:5], cand[:, 1:5])
        group = cand[overlap >= iou]
        w = group[:, :1]
        merged = (group[:, 1:] * w).sum(0) / w.sum()
        out.append(np.concatenate([[cand[0, 0]], merged]))
        idx = np.flatnonzero(left)
        idx = idx[idx >= i]
        left[idx[overlap >= iou]] = False
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (cx, cy, w, h) box with many."""
    ax0, ay0, ax1, ay1 = box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, \
        box[1] + box[3] / 2
    bx0, by0 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2
    bx1, by1 = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class BlazeFaceDetector:
    """MediaPipe BlazeFace (``front`` or ``back``, :data:`MODELS`) on a BGR, RGB or grey
    frame: boxes of the faces in frame pixels, largest first, each with its eye-line roll
    as ``angle`` when ``config.align``; ``keypoints`` of the last call's faces too."""

    def __init__(self, config: DetectorConfig | None = None, color: str = "bgr") -> None:
        self.config = config or DetectorConfig(kind="blazeface")
        self.color = color
        _session(self.config.blazeface)  # a missing or damaged file fails here, not later
        _session(FOLLOW)
        self.anchors = _anchors()  # the same for both models, as shares of the square
        self.keypoints: list[np.ndarray] = []  # per face of the last call: 6 x (x, y) px

    def _rgb(self, frame: np.ndarray) -> np.ndarray:
        frame = _check_frame(frame)
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_RGBA2RGB if self.color == "rgb"
                                else cv2.COLOR_BGRA2RGB)
        return frame if self.color == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _run(self, rgb: np.ndarray, x0: float, y0: float, side: float,
             model: str | None = None) -> list[np.ndarray]:
        """Detections of ``model`` (None: the configured one) in the square ``(x0, y0,
        side)`` of ``rgb`` (black outside the picture), as rows (score, cx, cy, w, h,
        keypoints...) in frame pixels."""
        name = model or self.config.blazeface
        session, n = _session(name), MODELS[name][1]
        s = n / side
        m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
        square = cv2.warpAffine(rgb, m, (n, n), flags=cv2.INTER_LINEAR if s > 1 else
                                cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = (square.astype(np.float32) / 127.5 - 1.0)[None]
        scores_a, scores_b, boxes_a, boxes_b = session.run(
            None, {session.get_inputs()[0].name: x})
        scores = np.concatenate([scores_a[0, :, 0], scores_b[0, :, 0]]).astype(np.float64)
        raw = np.concatenate([boxes_a[0], boxes_b[0]]).astype(np.float64)
        threshold = self.config.blazeface_score
        logit = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 \
            else (-math.inf if threshold <= 0 else math.inf)
        keep = np.flatnonzero(scores > logit)
        if not len(keep):
            return []
        r, a = raw[keep], self.anchors[keep]
        rows = np.empty((len(keep), 17))
        rows[:, 0] = 1.0 / (1.0 + np.exp(-np.clip(scores[keep], -100, 100)))
        rows[:, 1:3] = a + r[:, 0:2] / n
        rows[:, 3:5] = r[:, 2:4] / n
        rows[:, 5::2] = a[:, :1] + r[:, 4::2] / n
        rows[:, 6::2] = a[:, 1:] + r[:, 5::2] / n
        merged = _merge(rows, self.config.nms_threshold)
        for row in merged:  # from the square's [0, 1] to frame pixels
            row[1:] *= side
            row[1::2][[0, *range(2, 8)]] += x0  # cx and the keypoints' x (not the width)
            row[2::2][[0, *range(2, 8)]] += y0  # cy and the keypoints' y (not the height)
        return merged

    def _box(self, row: np.ndarray, model: str | None = None) -> Box | None:
        """The face square the crops expect, from a detection row of ``model`` (None: the
        configured one; None returned: too small)."""
        cx, cy, w, h = row[1:5]
        scale, shift = FIT[model or self.config.blazeface]
        side = max(w, h) * scale
        cy = cy + shift * h
        if side < self.config.min_face:
            return None
        angle = 0.0
        if self.config.align:  # the eye line's roll (keypoints 0 and 1: the two eyes)
            (ex0, ey0), (ex1, ey1) = row[5:7], row[7:9]
            angle = math.degrees(math.atan2(ey1 - ey0, ex1 - ex0))
            angle = 0.0 if abs(angle) < self.config.align_min else round(angle, 1)
        return Box(round(cx - side / 2), round(cy - side / 2), round(side), round(side),
                   float(row[0]), angle)

    def squares(self, width: int, height: int) -> list[tuple[float, float, float]]:
        """The squares (x0, y0, side) passed for a whole ``width`` x ``height`` frame: the
        frame letterboxed, then the tiles ``min_face`` needs (none when the whole frame's
        pass already finds a face that small, nor for a model not in :data:`TILED`). Tiles
        overlap by the largest face the whole frame's pass may miss, so each such face lies
        whole in one of them."""
        side = max(width, height)
        out = [((width - side) / 2, (height - side) / 2, float(side))]
        share = RELIABLE[self.config.blazeface]
        tile = self.config.min_face / share
        if self.config.min_face <= 0 or tile >= side or self.config.blazeface not in TILED:
            return out
        overlap = min(share * side, tile / 2)

        def starts(length: int) -> np.ndarray:
            if length <= tile:
                return np.array([(length - tile) / 2])
            count = math.ceil((length - overlap) / (tile - overlap))
            return np.linspace(0, length - tile, max(count, 2))

        out += [(float(x), float(y), tile) for y in starts(height) for x in starts(width)]
        return out

    def detect(self, frame: np.ndarray) -> list[Box]:
        rgb = self._rgb(frame)
        squares = self.squares(rgb.shape[1], rgb.shape[0])
        rows = self._run(rgb, *squares[0])
        if len(squares) > 1:
            tiles = [row for square in squares[1:] for row in self._run(rgb, *square)]
            rows += self._confirmed(rgb, rows, tiles)
            if rows:  # a face seen in two passes becomes one
                rows = _merge(np.array(rows), self.config.nms_threshold)
        return self._boxes(rows)

    def _confirmed(self, rgb: np.ndarray, whole: list[np.ndarray],
                   tiles: list[np.ndarray]) -> list[np.ndarray]:
        """The tiles' detections that are faces: those the whole frame's pass found too, and
        the others only when the :data:`FOLLOW` model finds a face on a region
        :data:`REGION` times theirs around them. An enlarged tile sees faces in coins and
        textures; the check keeps the small faces (``bench/detection.py --compare`` prints
        the false detections in real photographs at ``min_face`` 20 beside Haar's)."""
        if not tiles:
            return []
        seen = [b for r in whole if (b := self._box(r)) is not None]
        out = []
        for row in _merge(np.array(tiles), self.config.nms_threshold):
            box = self._box(row)
            if box is not None and (any(b.iou(box) > 0.3 for b in seen) or any(
                    a.iou(box) > 0.3 for a in self._region(rgb, box, REGION, FOLLOW))):
                out.append(row)
        return out

    def _boxes(self, rows: list[np.ndarray], model: str | None = None) -> list[Box]:
        """Face squares from detection rows, largest first; a box whose centre lies in a
        larger kept one is dropped (a part of a face, as a tile may see it)."""
        found = [(b, r) for r in rows if (b := self._box(r, model)) is not None]
        found.sort(key=lambda br: (-br[0].area, br[0].x, br[0].y))
        kept: list[tuple[Box, np.ndarray]] = []
        for box, row in found:
            cx, cy = box.center
            if not any(k.x <= cx <= k.x + k.w and k.y <= cy <= k.y + k.h for k, _ in kept):
                kept.append((box, row))
        self.keypoints = [r[5:17].reshape(6, 2) for _, r in kept]
        return [b for b, _ in kept]

    def detect_near_all(self, frame: np.ndarray, boxes: list[Box]) -> list[Box | None]:
        """The faces that were at ``boxes`` in an earlier frame: for each, the face found
        now that overlaps it most (IoU > 0.3; each face taken once, the best overlaps
        first), or None. Each is looked for by the :data:`FOLLOW` model in a square region
        :data:`REGION` times its side around its last box."""
        rgb = self._rgb(frame)
        found: list[Box] = []
        for box in boxes:
            found += self._region(rgb, box, REGION, FOLLOW)
        pairs = sorted(((old.iou(new), i, j) for i, old in enumerate(boxes)
                        for j, new in enumerate(found)), reverse=True)
        out: list[Box | None] = [None] * len(boxes)
        taken: set[int] = set()
        for iou, i, j in pairs:
            if iou > 0.3 and out[i] is None and j not in taken:
                out[i] = found[j]
                taken.add(j)
        return out

    def detect_near(self, frame: np.ndarray, box: Box) -> Box | None:
        """The face that was at ``box`` in an earlier frame (:meth:`detect_near_all`)."""
        return self.detect_near_all(frame, [box])[0]

    def _region(self, rgb: np.ndarray, box: Box, margin: float,
                model: str | None = None) -> list[Box]:
        side = max(box.w, box.h) * margin
        cx, cy = box.center
        return self._boxes(self._run(rgb, cx - side / 2, cy - side / 2, side, model), model)

    def detect_region(self, frame: np.ndarray, box: Box, margin: float = 2.0) -> list[Box]:
        """Faces in a square region ``margin`` times ``box``'s side around it, at the
        network's input size (for measurements: ``bench/detection.py --blazeface-fit``)."""
        return self._region(self._rgb(frame), box, margin)
