"""ONNX Runtime inference over face crops: the runtime side of the exported model file.

The model contract (what ``export.py`` writes and this module checks):

- input ``pixels``: float32 ``[N, 1, S, S]``, grey values 0..255, not normalised (the model
  normalises inside); the batch ``N`` is dynamic;
- output ``probs``: float32 ``[N, 6]``, softmax probabilities in the order of
  :data:`multinet_emotion.emotions.EMOTIONS`;
- metadata key ``multinet_emotion``: JSON with ``version`` (1), ``labels``, ``input_size``,
  ``input`` ("grey"), ``value_range``, and optionally ``crop_scale``, ``arch``, ``disgust``,
  ``quantized``, ``tta_flip`` (done inside the graph; informational here). Absent optional
  keys get the defaults of :class:`ModelInfo`; unknown keys are kept in ``ModelInfo.extra``.

Only onnxruntime and NumPy are needed here (the metadata is read through ONNX Runtime, not the
``onnx`` package), so nothing in this module pulls in torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import options
from ..emotions import DEFAULT_FACE_SIZE, EMOTIONS
from ..errors import MultiNetError
from ..options import setting
from .faces import DEFAULT_CROP_SCALE, check_crop_scale

log = logging.getLogger(__name__)

METADATA_KEY = "multinet_emotion"
METADATA_VERSION = 1
INPUT_NAME = "pixels"
OUTPUT_NAME = "probs"


#: The models shipped in the package, by the name ``--model`` takes: the hybrid (ResNet50 +
#: VGG16, the reference) and the compact student distilled from it (MODEL_CARD.md).
SHIPPED_MODELS = {"hybrid": "model.onnx", "student": "student.onnx"}


def default_model_path() -> Path:
    """Where the default model ships: ``multinet_emotion/assets/model.onnx`` (the hybrid)."""
    return shipped_model_path("hybrid")


def shipped_model_path(name: str) -> Path:
    """The file of a shipped model (:data:`SHIPPED_MODELS`)."""
    return Path(__file__).resolve().parents[1] / "assets" / SHIPPED_MODELS[name]


def model_file(model: Path | str | None, default: str = "hybrid") -> Path:
    """The file ``--model`` names: a shipped model's name (hybrid, student), a path, or None
    for the shipped model ``default``."""
    if model is None:
        return default_model_path() if default == "hybrid" else shipped_model_path(default)
    if str(model) in SHIPPED_MODELS:
        return shipped_model_path(str(model))
    return Path(model)


@dataclass
class ModelInfo:
    """What the model file says about itself (its ``multinet_emotion`` metadata)."""

    path: Path
    labels: tuple[str, ...] = EMOTIONS
    input_size: int = DEFAULT_FACE_SIZE
    value_range: tuple[float, float] = (0.0, 255.0)
    crop_scale: float = DEFAULT_CROP_SCALE
    crop_scale_from_model: bool = False  # False: the default measured in faces.py
    arch: str = "unknown"
    disgust: str = "drop"
    quantized: bool = False
    tta_flip: bool = False  # the graph itself averages each face with its mirror image
    class_bias: tuple[float, ...] | None = None  # per-class logit offsets inside the graph
    version: int = METADATA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # metadata keys this version does not use


@dataclass
class ClassifierConfig:
    """How to run the model. ``threads`` = ONNX Runtime intra-op threads (0 = its default)."""

    threads: int = setting(1, min=0, help="ONNX Runtime threads (0 = its default)")
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    max_batch: int = setting(32, cli=False, min=1, help="larger batches are split")

    def __post_init__(self) -> None:
        options.check(self)


def parse_metadata(text: str | None, path: Path) -> ModelInfo:
    """Validate the metadata JSON of ``path``; MultiNetError naming the file when it is wrong."""
    info = ModelInfo(path=path)
    if text is None:
        log.warning("%s has no %r metadata; assuming 48x48 grey 0..255 input, the six labels "
                    "in the standard order and crop scale %.2f", path, METADATA_KEY,
                    DEFAULT_CROP_SCALE)
        return info
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MultiNetError(f"{path}: the {METADATA_KEY!r} metadata is not valid JSON ({e}); "
                            "re-export the model with multinet-emotion export") from None
    if not isinstance(meta, dict):
        raise MultiNetError(f"{path}: the {METADATA_KEY!r} metadata must be a JSON object")

    def bad(what: str) -> MultiNetError:
        return MultiNetError(f"{path}: {what}; re-export the model with multinet-emotion export "
                             "or use a model made for this version")

    version = meta.get("version", METADATA_VERSION)
    if not isinstance(version, int) or version > METADATA_VERSION:
        raise bad(f"metadata version {version!r} is newer than this program understands "
                  f"({METADATA_VERSION}); upgrade multinet-emotion")
    labels = meta.get("labels")
    if labels is None:
        raise bad("the metadata lists no labels")
    if tuple(labels) != EMOTIONS:
        raise bad(f"the model's labels {list(labels)} are not {list(EMOTIONS)} in this order")
    size = meta.get("input_size", 48)
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise bad(f"input_size {size!r} is not a whole number of pixels in 8..1024")
    kind = meta.get("input", "grey")
    if kind not in ("grey", "gray"):
        raise bad(f"input {kind!r} is not supported (only grey crops)")
    vr = meta.get("value_range", [0, 255])
    if (not isinstance(vr, (list, tuple)) or len(vr) != 2
            or not all(isinstance(v, (int, float)) for v in vr) or vr[0] == vr[1]):
        raise bad(f"value_range {vr!r} must be two different numbers")
    scale = meta.get("crop_scale")
    try:  # the one range of every crop scale (faces.CROP_SCALE_RANGE)
        check_crop_scale("crop_scale", scale)
    except MultiNetError as e:
        raise bad(str(e)) from None
    known = {"version", "labels", "input_size", "input", "value_range", "crop_scale", "arch",
             "disgust", "quantized", "tta_flip", "class_bias"}
    bias = meta.get("class_bias")
    if bias is not None and (not isinstance(bias, list) or len(bias) != len(EMOTIONS)
                             or not all(isinstance(b, (int, float)) for b in bias)):
        raise bad(f"class_bias {bias!r} must be {len(EMOTIONS)} numbers")
    return ModelInfo(
        path=path, labels=tuple(labels), input_size=size,
        value_range=(float(vr[0]), float(vr[1])),
        crop_scale=float(scale) if scale is not None else DEFAULT_CROP_SCALE,
        crop_scale_from_model=scale is not None,
        arch=str(meta.get("arch", "unknown")), disgust=str(meta.get("disgust", "drop")),
        quantized=bool(meta.get("quantized", False)), tta_flip=bool(meta.get("tta_flip", False)),
        class_bias=tuple(float(b) for b in bias) if bias is not None else None,
        version=version, extra={k: v for k, v in meta.items() if k not in known})


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies int8 pairs without 16-bit saturation (AVX-512 VNNI or
    AVX-VNNI). Other architectures (ARM) are assumed fine."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # cannot tell (not Linux): trust the runtime
    return "avx512_vnni" in text or "avx_vnni" in text


class EmotionClassifier:
    """An exported emotion model in ONNX Runtime: grey face crops in, probabilities out."""

    def __init__(self, path: Path | str, config: ClassifierConfig | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.config = config or ClassifierConfig()
        if not self.path.is_file():
            raise MultiNetError(f"model file {self.path} does not exist; pass --model PATH to "
                                "an exported .onnx model")
        session_options = ort.SessionOptions()
        if self.config.threads > 0:
            session_options.intra_op_num_threads = self.config.threads
            session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), session_options,
                                                providers=list(self.config.providers))
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises several exception types
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise MultiNetError(f"{self.path} is not an ONNX model ONNX Runtime can load "
                                f"({reason}); pass --model PATH to an exported .onnx model") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta.get(METADATA_KEY), self.path)
        if self.info.quantized and self.info.extra.get("weight_range") != "reduced" \
                and not cpu_has_vnni():
            # full-range int8 weights on a CPU without VNNI: ONNX Runtime's fused u8 x s8
            # kernels saturate there (`python bench/int8_kernels.py` on the previous shipped
            # file: 6% of faces changed emotion). Run the graph's exact arithmetic.
            session_options.add_session_config_entry("session.disable_quant_qdq", "1")
            self.session = ort.InferenceSession(str(self.path), session_options,
                                                providers=list(self.config.providers))
            log.info("%s: full-range int8 weights and no VNNI on this CPU: exact QDQ "
                     "arithmetic instead of the fused int8 kernels", self.path)
        self._check_io()
        lo, hi = self.info.value_range
        self._scale, self._offset = (hi - lo) / 255.0, lo

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise MultiNetError(
                f"{self.path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
                f"inputs {sorted(inputs)} and outputs {sorted(outputs)}; is this a "
                "multinet-emotion export?")
        shape = inputs[INPUT_NAME].shape
        size = self.info.input_size
        if len(shape) != 4 or any(isinstance(d, int) and d != want
                                  for d, want in zip(shape[1:], (1, size, size))):
            raise MultiNetError(f"{self.path}: input {INPUT_NAME!r} has shape {shape}, expected "
                                f"[N, 1, {size}, {size}] as the metadata says")
        out = outputs[OUTPUT_NAME].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != len(EMOTIONS)):
            raise MultiNetError(f"{self.path}: output {OUTPUT_NAME!r} has shape {out}, expected "
                                f"[N, {len(EMOTIONS)}]")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def crop_scale(self) -> float:
        return self.info.crop_scale

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, 6]`` (float32) for grey crops ``[N, S, S]`` (uint8 0..255 or
        float in that range). Faces are run as one batch (split at ``max_batch``)."""
        size = self.info.input_size
        crops = _as_crops(crops)
        if crops.ndim != 3 or crops.shape[1:] != (size, size):
            raise MultiNetError(f"face crops must be [N, {size}, {size}] grey images for "
                                f"{self.path.name}, got shape {crops.shape}")
        n = len(crops)
        if n == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        x = crops.astype(np.float32)[:, None]
        if (self._scale, self._offset) != (1.0, 0.0):
            x = x * np.float32(self._scale) + np.float32(self._offset)
        step = self._fixed_batch or max(1, self.config.max_batch)
        parts = [self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x[i:i + step])})[0]
                 for i in range(0, len(x), step)]
        probs = np.concatenate(parts).astype(np.float32, copy=False)
        if probs.shape != (n, len(EMOTIONS)):
            raise MultiNetError(f"{self.path}: the model returned shape {probs.shape} for {n} "
                                f"faces, expected ({n}, {len(EMOTIONS)})")
        return probs

    def __repr__(self) -> str:
        i = self.info
        return (f"EmotionClassifier({str(self.path)!r}, arch={i.arch}, input={i.input_size}, "
                f"crop_scale={i.crop_scale:.2f}, quantized={i.quantized})")


def load_model(path: Path | str | None = None,
               config: ClassifierConfig | None = None) -> EmotionClassifier:
    """Load an exported emotion model: a path, a shipped model's name (``"student"``), or
    None for the default one shipped in the package (the hybrid).

    Raises MultiNetError when no default model is installed or the file is not a valid export.
    """
    shipped = path is None or str(path) in SHIPPED_MODELS
    path = model_file(path)
    if shipped and not path.is_file():
        raise MultiNetError(f"no default model is installed (expected {path}); pass "
                            "--model PATH (or load_model(PATH)) to an exported .onnx model")
    return EmotionClassifier(path, config)


def _as_crops(crops: npt.ArrayLike) -> np.ndarray:
    """One crop ``[S, S]`` or a batch ``[N, 1, S, S]`` as a batch ``[N, S, S]``; any other
    shape as it is (the caller refuses it)."""
    arr = np.asarray(crops)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 4 and arr.shape[1] == 1:
        return arr[:, 0]
    return arr


class _Job:
    __slots__ = ("crops", "probs", "error", "taken", "done")
    probs: np.ndarray | None
    error: Exception | None

    def __init__(self, crops: np.ndarray) -> None:
        self.crops, self.probs, self.error = crops, None, None
        self.taken = self.done = False


class BatchingClassifier:
    """One classifier shared by many threads, whose concurrent calls run as batches.

    A server analyses many learners' frames at once, one thread each. Called one face at a
    time the model wastes much of its work; in a batch it does more faces per CPU second
    (``python bench/realtime.py``: per-face time at batch 1, 4 and 8, one thread). A
    caller whose faces wait becomes a runner when fewer than ``runners`` batches are
    running: it takes the waiting callers' faces, oldest first and up to ``max_faces``,
    runs them as one batch and hands each caller its rows. Nobody waits for a batch to
    fill: a lone caller runs at once, and batches grow only while the model is busy, that
    is under load. ``runners`` batches at once keep that many cores on the model when
    every frame has a face. An error of the model reaches the callers of that batch only.

    It stands in for an :class:`EmotionClassifier` (``predict``, ``input_size``,
    ``crop_scale``, ``info``, ``path``); ``batches`` and ``faces`` count what ran.
    """

    def __init__(self, classifier: EmotionClassifier, max_faces: int = 32,
                 runners: int = 2) -> None:
        import threading

        if max_faces < 1 or runners < 1:
            raise ValueError("max_faces and runners must be at least 1")
        self.classifier, self.max_faces, self.runners = classifier, max_faces, runners
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._running = 0
        self.batches = 0
        self.faces = 0

    @property
    def info(self) -> ModelInfo:
        return self.classifier.info

    @property
    def path(self) -> Path:
        return self.classifier.path

    @property
    def input_size(self) -> int:
        return self.classifier.input_size

    @property
    def crop_scale(self) -> float:
        return self.classifier.crop_scale

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """As :meth:`EmotionClassifier.predict`, batched with the other threads' calls."""
        size = self.input_size
        crops = _as_crops(crops)
        if crops.ndim != 3 or crops.shape[1:] != (size, size):
            # the wrapped classifier words the error (never batched with others' faces)
            return self.classifier.predict(crops)
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        job = _Job(crops)
        with self._cond:
            self._queue.append(job)
            while not job.done:
                if job.taken or self._running >= self.runners:
                    self._cond.wait()  # a runner has these faces, or will take them
                    continue
                batch = self._take()
                self._running += 1
                self._cond.release()
                outcome: tuple[np.ndarray | None, Exception | None] = (
                    None, RuntimeError("the batch was interrupted"))
                try:
                    outcome = self._run(batch)
                finally:
                    self._cond.acquire()
                    self._deliver(batch, *outcome)
                    self._running -= 1
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        assert job.probs is not None  # delivered without an error
        return job.probs

    def _take(self) -> list[_Job]:
        """The waiting jobs, oldest first, up to max_faces (at least one); lock held."""
        batch: list[_Job] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].crops)
                               <= self.max_faces):
            job = self._queue.pop(0)
            job.taken = True
            batch.append(job)
            count += len(job.crops)
        return batch

    def _run(self, batch: list[_Job]) -> tuple[np.ndarray | None, Exception | None]:
        try:
            x = batch[0].crops if len(batch) == 1 else np.concatenate(
                [j.crops.astype(np.float32, copy=False) for j in batch])
            return self.classifier.predict(x), None
        except Exception as e:  # noqa: BLE001 - handed to every caller of this batch
            return None, e

    def _deliver(self, batch: list[_Job], probs: np.ndarray | None,
                 error: Exception | None) -> None:
        """Each job its rows (or the error); lock held."""
        start = 0
        for j in batch:
            if error is None:
                assert probs is not None  # a batch either ran or failed
                j.probs = probs[start:start + len(j.crops)]
                start += len(j.crops)
            else:
                j.error = error
            j.done = True
        self.batches += 1
        self.faces += start if error is None else 0
