"""OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``) from a local ``.onnx`` file
(``--detector yunet --detector-model PATH``); nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import MultiNetError
from .faces import Box, DetectorConfig, _check_frame, _rescale, _scaled


def _downscale(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The image scaled so its width is at most ``width``, and the factor used (<= 1)."""
    h, w = image.shape[:2]
    if width <= 0 or w <= width:
        return image, 1.0
    return _scaled(image, width / w), width / w


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
