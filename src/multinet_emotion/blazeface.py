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

``detect_near_all`` runs the whole frame again, once for every face followed, and keeps the
face that overlaps each last box: a pass costs less than the Haar cascade's local search,
and a pass on a zoomed region around a face gave boxes of unsteady size
(``bench/detection.py --blazeface-fit`` prints both).
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .errors import MultiNetError
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
#: with ``python bench/detection.py --blazeface-fit`` on FER2013 training faces.
FIT: dict[str, tuple[float, float]] = {"front": (1.152, -0.162), "back": (1.109, -0.153)}


def _anchors(size: int) -> np.ndarray:
    """The 896 anchor centres (x, y in [0, 1]): 2 per cell of a 16x16 grid, then 6 per
    cell of an 8x8 grid, row by row, as the network's outputs are ordered."""
    out = []
    for cells, per in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 2)
        out.append(np.repeat(centres, per, axis=0))
    return np.concatenate(out).astype(np.float64)


@cache
def _session(name: str):  # noqa: ANN202 - an onnxruntime.InferenceSession
    import onnxruntime as ort

    file, _size, digest = MODELS[name]
    path = Path(str(resources.files("multinet_emotion") / "assets" / "blazeface" / file))
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
        name = self.config.blazeface
        self.session = _session(name)
        self.size = MODELS[name][1]
        self.anchors = _anchors(self.size)
        self.input = self.session.get_inputs()[0].name
        self.keypoints: list[np.ndarray] = []  # per face of the last call: 6 x (x, y) px

    def _rgb(self, frame: np.ndarray) -> np.ndarray:
        frame = _check_frame(frame)
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_RGBA2RGB if self.color == "rgb"
                                else cv2.COLOR_BGRA2RGB)
        return frame if self.color == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _run(self, rgb: np.ndarray, x0: float, y0: float, side: float) -> list[np.ndarray]:
        """Detections in the square ``(x0, y0, side)`` of ``rgb`` (black outside the
        picture), as rows (score, cx, cy, w, h, keypoints...) in frame pixels."""
        n = self.size
        s = n / side
        m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
        square = cv2.warpAffine(rgb, m, (n, n), flags=cv2.INTER_LINEAR if s > 1 else
                                cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = (square.astype(np.float32) / 127.5 - 1.0)[None]
        scores_a, scores_b, boxes_a, boxes_b = self.session.run(None, {self.input: x})
        scores = np.concatenate([scores_a[0, :, 0], scores_b[0, :, 0]]).astype(np.float64)
        raw = np.concatenate([boxes_a[0], boxes_b[0]]).astype(np.float64)
        logit = math.log(self.config.score_threshold / (1 - self.config.score_threshold)) \
            if 0 < self.config.score_threshold < 1 else (-math.inf if
                                                           self.config.score_threshold <= 0
                                                           else math.inf)
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
            row[1::2] = x0 + row[1::2] * side
            row[2::2] = y0 + row[2::2] * side
        return merged

    def _box(self, row: np.ndarray) -> Box | None:
        """The face square the crops expect, from a detection row (None: too small)."""
        cx, cy, w, h = row[1:5]
        scale, shift = FIT[self.config.blazeface]
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

    def detect(self, frame: np.ndarray) -> list[Box]:
        rgb = self._rgb(frame)
        fh, fw = rgb.shape[:2]
        side = max(fh, fw)
        rows = self._run(rgb, (fw - side) / 2, (fh - side) / 2, side)
        return self._boxes(rows)

    def _boxes(self, rows: list[np.ndarray]) -> list[Box]:
        found = [(b, r) for r in rows if (b := self._box(r)) is not None]
        found.sort(key=lambda br: (-br[0].area, br[0].x, br[0].y))
        self.keypoints = [r[5:17].reshape(6, 2) for _, r in found]
        return [b for b, _ in found]

    def detect_near_all(self, frame: np.ndarray, boxes: list[Box]) -> list[Box | None]:
        """The faces that were at ``boxes`` in an earlier frame, from one pass over the
        frame: for each, the face found now that overlaps it most (IoU > 0.3; each face
        taken once, the best overlaps first), or None."""
        found = self.detect(frame)
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

    def detect_region(self, frame: np.ndarray, box: Box, margin: float = 2.0) -> list[Box]:
        """Faces in a square region ``margin`` times ``box``'s side around it, at the
        network's input size (for measurements: ``bench/detection.py --blazeface-fit``)."""
        side = max(box.w, box.h) * margin
        cx, cy = box.center
        return self._boxes(self._run(self._rgb(frame), cx - side / 2, cy - side / 2, side))
