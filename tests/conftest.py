"""Shared pytest fixtures. Keep fixtures generic and clearly named: several modules use them.

Runtime (detect) fixtures:
- ``make_emotion_onnx``: a factory writing tiny ONNX models that follow the model contract
  (input ``pixels`` [N,1,S,S] grey 0..255, output ``probs`` [N,6], ``multinet_emotion``
  metadata), built with ``onnx.helper`` (no torch). Their output depends on the mean
  brightness of the crop: dark faces come out ``sad``, bright faces ``happy``.
- ``brightness_onnx_model``: one such model, written once per session.
- ``drawn_face_clip`` / ``real_face_clip``: a 640x480 MJPG test clip with two faces pasted at
  known places and times (drawings, or FER2013 test faces when ../shared/data is present).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FER2013_DIR = SHARED_DATA / "fer2013"
RUNTIME_LABELS = ("angry", "fear", "happy", "neutral", "sad", "surprise")


# --- tiny ONNX emotion models ---------------------------------------------------------------

DEFAULT_MODEL_META = {"version": 1, "labels": list(RUNTIME_LABELS), "input_size": 48,
                      "input": "grey", "value_range": [0, 255], "arch": "test-brightness",
                      "disgust": "drop", "quantized": False}

#: class -> the crop brightness it wins for; the others never win on 0..255 input.
BRIGHTNESS_PROTOTYPES = {"sad": 50.0, "happy": 200.0}


def _write_brightness_onnx(path: Path, meta: dict | None = DEFAULT_MODEL_META, size: int = 48,
                           input_name: str = "pixels", output_name: str = "probs",
                           temperature: float = 400.0, n_out: int = 6,
                           extra_meta: dict[str, str] | None = None) -> Path:
    """pixels -> GlobalAveragePool -> Flatten -> Gemm -> Softmax -> probs.

    The logits are tangents of m^2/2 at each class's prototype brightness p (the others at
    -1000), so the winning class is the one whose prototype is nearest the crop's mean m."""
    import onnx
    from onnx import TensorProto, helper

    protos = np.full(n_out, -1000.0)
    for label, p in BRIGHTNESS_PROTOTYPES.items():
        idx = RUNTIME_LABELS.index(label)
        if idx < n_out:
            protos[idx] = p
    w = (protos / temperature).reshape(1, n_out).astype(np.float32)
    b = (-(protos ** 2) / (2 * temperature)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["raw_logits"]),
        helper.make_node("Softmax", ["raw_logits"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "brightness",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_out])],
        [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten()),
         helper.make_tensor("B", TensorProto.FLOAT, b.shape, b.flatten())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = dict(extra_meta or {})
    if meta is not None:
        props["multinet_emotion"] = meta if isinstance(meta, str) else json.dumps(meta)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_emotion_onnx(tmp_path):
    """Factory: ``make_emotion_onnx(name="m.onnx", meta=..., size=48, input_name=...,
    output_name=..., n_out=6)`` writes a tiny contract-following model into tmp_path."""
    def make(name: str = "model.onnx", **kwargs) -> Path:
        meta = kwargs.pop("meta", DEFAULT_MODEL_META)
        if isinstance(meta, dict) and "size" in kwargs:
            meta = {**meta, "input_size": kwargs["size"]}
        return _write_brightness_onnx(tmp_path / name, meta=meta, **kwargs)
    return make


@pytest.fixture(scope="session")
def brightness_onnx_model(tmp_path_factory) -> Path:
    """A contract-following ONNX model: dark crops (mean < 125) -> sad, bright -> happy."""
    return _write_brightness_onnx(tmp_path_factory.mktemp("models") / "brightness.onnx")


# --- a test clip with faces at known places and times ---------------------------------------

def draw_face(size: int) -> np.ndarray:
    """A grey cartoon face (ellipse, eyes, brows, nose, mouth) the Haar cascade finds."""
    import cv2

    s = size
    img = np.full((s, s), 60, np.uint8)
    c = s // 2
    cv2.ellipse(img, (c, int(s * 0.52)), (int(s * 0.36), int(s * 0.46)), 0, 0, 360, 200, -1)
    for ex in (int(s * 0.34), int(s * 0.66)):
        cv2.ellipse(img, (ex, int(s * 0.40)), (int(s * 0.08), int(s * 0.045)), 0, 0, 360, 30, -1)
        cv2.line(img, (ex - int(s * 0.1), int(s * 0.31)), (ex + int(s * 0.1), int(s * 0.30)), 40,
                 max(2, s // 30))
    cv2.line(img, (c, int(s * 0.45)), (c - int(s * 0.04), int(s * 0.62)), 140, max(2, s // 40))
    cv2.ellipse(img, (c, int(s * 0.75)), (int(s * 0.14), int(s * 0.05)), 0, 0, 360, 70, -1)
    return cv2.GaussianBlur(img, (0, 0), s / 80)


@pytest.fixture
def face_drawing():
    """``face_drawing(size)``: a grey cartoon face the Haar cascade finds."""
    return draw_face


def _haar_finds(face: np.ndarray, size: int) -> bool:
    """Whether the default detector finds ``face`` pasted at ``size`` px, dark and bright."""
    import cv2

    from multinet_emotion.runtime.faces import HaarDetector

    detector = HaarDetector()
    for offset in (0, 140):
        frame = np.tile(np.linspace(60, 180, 640).astype(np.uint8), (480, 1))
        patch = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC) * 0.45 + offset
        frame[100:100 + size, 200:200 + size] = np.clip(patch, 0, 255).astype(np.uint8)
        if len(detector.detect(frame)) != 1:
            return False
    return True


@dataclass
class PastedFace:
    """A face shown from frame ``start`` to ``end`` (inclusive), ``size`` px, drifting
    ``dx`` px per frame from ``(x, y)``; ``tone`` "dark" or "bright" (see brightness model)."""

    image: np.ndarray  # grey, any size
    start: int
    end: int
    x: int
    y: int
    size: int
    dx: int = 0
    tone: str = "dark"

    def box(self, frame: int) -> tuple[int, int, int, int] | None:
        if not self.start <= frame <= self.end:
            return None
        return (self.x + self.dx * (frame - self.start), self.y, self.size, self.size)


@dataclass
class FaceClip:
    """A generated clip: ``render(i)`` makes frame i; ``path`` is the encoded MJPG .avi."""

    path: Path
    faces: list[PastedFace]
    n_frames: int = 60
    fps: float = 25.0
    width: int = 640
    height: int = 480
    kind: str = "drawn"
    _cache: dict = field(default_factory=dict, repr=False)

    def boxes(self, frame: int) -> list[tuple[int, int, int, int]]:
        return [b for f in self.faces if (b := f.box(frame)) is not None]

    def reported(self, frame: int, first: int = 0, hits: int = 3
                 ) -> list[tuple[int, int, int, int]]:
        """The boxes a detector reports on ``frame`` when it reads the clip from frame
        ``first``: those of faces in view on the last ``hits`` frames read (a face is
        reported once confirmed, TrackerConfig.confirm_hits)."""
        return [f.box(frame) for f in self.faces
                if all(f.box(j) is not None for j in range(frame - hits + 1, frame + 1))
                and frame - hits + 1 >= first]

    def render(self, i: int) -> np.ndarray:
        import cv2

        if i in self._cache:
            return self._cache[i].copy()
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        bg = (70 + 60 * xx / self.width + 20 * yy / self.height).astype(np.uint8)
        frame = np.stack([bg, bg, bg], axis=2)
        for face in self.faces:
            box = face.box(i)
            if box is None:
                continue
            x, y, s, _ = box
            patch = cv2.resize(face.image, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            patch = 0.45 * patch + (140 if face.tone == "bright" else 0)
            frame[y:y + s, x:x + s] = np.clip(patch, 0, 255).astype(np.uint8)[:, :, None]
        self._cache[i] = frame
        return frame.copy()

    def write(self) -> Path:
        import cv2

        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps,
                                 (self.width, self.height))
        assert writer.isOpened()
        for i in range(self.n_frames):
            writer.write(self.render(i))
        writer.release()
        return self.path


def _make_clip(path: Path, face_a: np.ndarray, face_b: np.ndarray, kind: str) -> FaceClip:
    """Frames 0-9 no face; face A (dark, drifting right) 10-44; face B (bright) 25-59."""
    clip = FaceClip(path, [PastedFace(face_a, 10, 44, 60, 110, 170, dx=2, tone="dark"),
                           PastedFace(face_b, 25, 59, 400, 170, 160, tone="bright")], kind=kind)
    clip.write()
    return clip


@pytest.fixture(scope="session")
def drawn_face_clip(tmp_path_factory) -> FaceClip:
    """The test clip with cartoon faces (always available)."""
    face = draw_face(160)
    return _make_clip(tmp_path_factory.mktemp("clips") / "drawn.avi", face, face, "drawn")


@pytest.fixture(scope="session")
def real_face_clip(tmp_path_factory) -> FaceClip:
    """The test clip with two FER2013 test faces the Haar cascade finds; skips without data."""
    import cv2

    test_dir = FER2013_DIR / "test"
    if not test_dir.is_dir():
        pytest.skip(f"FER2013 not present at {test_dir}")
    chosen = []
    for label in ("happy", "neutral", "surprise", "sad"):
        for path in sorted((test_dir / label).glob("*.jpg"))[:40]:
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is not None and img.std() > 30 and _haar_finds(img, 165):
                chosen.append(img)
                break
        if len(chosen) == 2:
            break
    if len(chosen) < 2:
        pytest.skip("no FER2013 test faces the Haar cascade finds")
    return _make_clip(tmp_path_factory.mktemp("clips") / "real.avi", chosen[0], chosen[1], "real")


@pytest.fixture(params=["drawn", "real"])
def face_clip(request) -> FaceClip:
    """Both clip variants in turn (the real-face one skips when FER2013 is absent)."""
    return request.getfixturevalue(f"{request.param}_face_clip")


# --- the web service under FastAPI's TestClient ---------------------------------------------

@pytest.fixture(autouse=True)
def _test_client_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's TestClient sends ``Host: testserver``: the service answers it as one of
    loopback's names (elsewhere, only the names it is told: ``allowed_hosts``)."""
    try:
        from multinet_emotion.app import guards
    except ImportError:  # the web stack is not installed
        return
    monkeypatch.setattr(guards, "LOOPBACK_HOSTS", guards.LOOPBACK_HOSTS | {"testserver"})
