"""Analysis in the learner's browser: the files the page needs, served by the app itself.

With ``serve --analysis browser`` (or ``auto``, where the browser can run it) the learner
page (``static/analysis.js``) finds the face and runs the emotion model itself, with
opencv.js and onnxruntime-web (WebAssembly), and sends only probabilities over the
WebSocket (the ``sample`` message): no picture leaves the learner's device. It repeats the
Python runtime step for step: the same Haar cascade file (the one the OpenCV wheel carries),
the same detector settings (:class:`~multinet_emotion.runtime.faces.DetectorConfig`), the same crop
(:func:`~multinet_emotion.runtime.faces.crop_faces`) and the model file's own metadata
(:class:`~multinet_emotion.runtime.classifier.ModelInfo`).

Served here, never from a CDN:

- ``/vendor/<sha256[:12]>/<name>``: opencv.js and onnxruntime-web, installed by
  ``scripts/setup_web.sh`` into ``static/vendor/`` (git-ignored) at the pinned versions and
  checked against ``web/vendor.sha256``; and the Haar cascade from the OpenCV wheel;
- ``/models/model.<sha256[:12]>.onnx``: the model file.

Both are named by their content, so they are cached for a year (``immutable``) and a
learner downloads them once. The model file is read and hashed when first asked for, and
again whenever it changes on disk (a new model shipped while the server runs): its old URL
then answers 404 and the page, reloaded, gets the new one.

The routes that serve them are in :mod:`.browser_routes`. The learner page is cross-origin
isolated when the server offers in-browser analysis
(:class:`~.browser_routes.CrossOriginIsolation`): that is what lets onnxruntime-web run the model on several
WebAssembly threads (SharedArrayBuffer).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import MultiNetError
from ..files import file_sha256
from ..runtime import blazeface
from ..runtime.classifier import METADATA_KEY, ModelInfo, default_model_path, parse_metadata
from ..runtime.detect import PipelineConfig
from ..runtime.faces import HAAR_CASCADE, DetectorConfig, tilt_turns
from ..runtime.tracking import TrackerConfig

log = logging.getLogger(__name__)

#: Where scripts/setup_web.sh puts the browser runtime (git-ignored).
VENDOR = Path(__file__).parent / "static" / "vendor"
#: The files it must hold; the page loads the first and the last, onnxruntime-web the rest.
VENDOR_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                "opencv.js", "opencv.wasm")
SETUP = "scripts/setup_web.sh"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
               ".xml": "application/xml", ".onnx": "application/octet-stream"}
#: Cross-origin isolation: SharedArrayBuffer, hence onnxruntime-web's WebAssembly threads.
#: COEP require-corp constrains only what the page loads (all of it from this origin, as
#: the CSP says), so nothing it loads is refused; COOP same-origin only parts the page from
#: windows of other origins that opened it or that it opens (the learner page uses neither:
#: its links open with noopener). In an LTI platform's frame COOP does not apply and the
#: page is not isolated (its parent is not): it works as before, on one thread.
ISOLATION_HEADERS = ((b"cross-origin-opener-policy", b"same-origin"),
                     (b"cross-origin-embedder-policy", b"require-corp"))
#: The pages isolated (only where the model runs: the learner page).
ISOLATED_PAGES = frozenset({"/learn"})
#: The face detectors the learner page runs (static/analysis.js).
BROWSER_DETECTORS = ("haar", "blazeface")
#: CLAHE of HaarDetector (faces.py): clip limit and tile grid.
CLAHE = {"clip_limit": 2.0, "tile_grid": 8}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """The top-level fields of a protobuf message: (number, wire type, value); length-
    delimited values as bytes (never parsed further here)."""
    out: list[tuple[int, int, bytes | int]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            out.append((number, wire, value))
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ValueError("truncated field")
            out.append((number, wire, data[i:i + n]))
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def model_metadata(data: bytes) -> str | None:
    """The ``multinet_emotion`` metadata of an ONNX file's bytes (``ModelProto``, field 14:
    ``metadata_props``), read without ONNX Runtime (loading a session takes ~0.6 s here);
    None when the file has none. ValueError when the bytes are not a protobuf message."""
    for number, wire, value in _fields(data):
        if number == 14 and wire == 2 and isinstance(value, bytes):
            entry = {n: cast(bytes, v) for n, w, v in _fields(value) if w == 2}  # wire type 2: bytes
            if entry.get(1, b"").decode("utf-8", "replace") == METADATA_KEY:
                return entry.get(2, b"").decode("utf-8")
    return None


@dataclass(frozen=True)
class ModelFile:
    """The model file as served to browsers: its content hash and what its metadata says."""

    path: Path
    sha256: str
    stat: tuple[int, int]  # size, mtime_ns when it was read
    info: ModelInfo

    @property
    def url(self) -> str:
        return f"/models/model.{self.sha256[:12]}.onnx"

    @classmethod
    def read(cls, path: Path) -> ModelFile:
        st = path.stat()
        data = path.read_bytes()
        try:
            text = model_metadata(data)
        except (ValueError, UnicodeDecodeError):
            raise MultiNetError(f"{path} is not an ONNX model file; pass --model PATH to an "
                                "exported .onnx model") from None
        return cls(path, hashlib.sha256(data).hexdigest(), (st.st_size, st.st_mtime_ns),
                   parse_metadata(text, path))


def missing_vendor_files(vendor: Path | None = None) -> list[str]:
    """The browser runtime files that are not installed (empty: all there)."""
    vendor = VENDOR if vendor is None else vendor
    return [name for name in VENDOR_FILES if not (vendor / name).is_file()]


def cascade_path() -> Path | None:
    """The OpenCV wheel's frontal-face Haar cascade, the one the Python detector uses."""
    import cv2
    data = getattr(cv2, "data", None)
    path = Path(data.haarcascades) / HAAR_CASCADE if data is not None else None
    return path if path is not None and path.is_file() else None


class BrowserAnalysis:
    """What the learner page needs to analyse in the browser, and the files it loads.

    Made by :meth:`create` when everything is there; the hashes are taken when first asked
    for (not at start-up: hashing ~65 MB costs ~0.5 s), the model's again when it changes."""

    def __init__(self, model: Path, vendor: Path, cascade: Path):
        self.model_path, self.vendor, self.cascade = model, vendor, cascade
        self._lock = threading.Lock()
        self._model: ModelFile | None = None
        self._files: dict[str, tuple[Path, str]] | None = None  # name -> (path, sha256)

    @classmethod
    def create(cls, model: Path | None, vendor: Path | None = None
               ) -> tuple[BrowserAnalysis | None, str]:
        """The in-browser analysis, or None and why it cannot be offered. Never raises."""
        vendor = VENDOR if vendor is None else vendor
        missing = missing_vendor_files(vendor)
        if missing:
            return None, (f"the in-browser analysis files are not installed ({', '.join(missing)}"
                          f" missing in {vendor}); run {SETUP}")
        path = Path(model) if model is not None else default_model_path()
        if not path.is_file():
            return None, f"no emotion model at {path}; pass --model PATH"
        try:
            cascade = cascade_path()
        except ImportError:
            cascade = None
        if cascade is None:
            return None, f"this OpenCV build ships no {HAAR_CASCADE}"
        return cls(path, vendor, cascade), "in-browser analysis with the emotion model"

    def files(self) -> dict[str, tuple[Path, str]]:
        with self._lock:
            if self._files is None:
                paths = {name: self.vendor / name for name in VENDOR_FILES}
                paths[HAAR_CASCADE] = self.cascade
                for file, _size, _digest in blazeface.MODELS.values():
                    paths[f"blazeface-{file}"] = blazeface.model_path(file)
                self._files = {name: (p, file_sha256(p)) for name, p in paths.items()}
            return self._files

    def model(self) -> ModelFile:
        """The model file now: read again when its size or time changed since last read."""
        st = self.model_path.stat()
        with self._lock:
            if self._model is None or self._model.stat != (st.st_size, st.st_mtime_ns):
                self._model = ModelFile.read(self.model_path)
                log.info("in-browser analysis serves %s as %s", self.model_path, self._model.url)
            return self._model

    def url(self, name: str) -> str:
        return f"/vendor/{self.files()[name][1][:12]}/{name}"

    def page_config(self, detect_every: int | None = None,
                    search_every: int | None = None, detector: str | None = None
                    ) -> dict[str, Any]:
        """What ``static/analysis.js`` needs: where the files are, and every setting of the
        Python runtime's detection, crop, model input and smoothing; ``detect_every``,
        ``search_every`` and the face ``detector`` (haar or blazeface) as the server's own
        analysis uses them (None: the runtime's)."""
        m = self.model()
        det, track, pipe = DetectorConfig(), TrackerConfig(), PipelineConfig()
        if detector is not None:
            det.kind = detector
        if det.kind not in BROWSER_DETECTORS:
            raise MultiNetError(f"the learner page cannot run the {det.kind} face detector "
                                f"(it runs {' or '.join(BROWSER_DETECTORS)})")
        file, size, _digest = blazeface.MODELS[det.blazeface]
        return {
            "detector": det.kind,
            "blazeface": {"model": self.url(f"blazeface-{file}"), "size": size,
                          "fit": list(blazeface.FIT[det.blazeface]),
                          "reliable": blazeface.RELIABLE[det.blazeface],
                          "tiled": det.blazeface in blazeface.TILED,
                          "region": blazeface.REGION, "score": det.blazeface_score,
                          "follow": {"model": self.url(
                              f"blazeface-{blazeface.MODELS[blazeface.FOLLOW][0]}"),
                              "size": blazeface.MODELS[blazeface.FOLLOW][1],
                              "fit": list(blazeface.FIT[blazeface.FOLLOW])},
                          "nms": det.nms_threshold, "min_face": det.min_face,
                          "align": det.align, "align_min": det.align_min},
            "ort": self.url("ort.wasm.min.js"), "ort_mjs": self.url("ort-wasm-simd-threaded.mjs"),
            "ort_wasm": self.url("ort-wasm-simd-threaded.wasm"), "opencv": self.url("opencv.js"),
            "opencv_wasm": self.url("opencv.wasm"),
            "cascade": self.url(HAAR_CASCADE), "model": m.url, "model_bytes": m.stat[0],
            "input_size": m.info.input_size, "value_range": list(m.info.value_range),
            "crop_scale": m.info.crop_scale, "labels": list(m.info.labels),
            "detect_width": det.detect_width, "min_face": det.min_face,
            "scan_face_px": det.scan_face_px,
            "scale_factor": det.scale_factor, "min_neighbors": det.min_neighbors,
            "tilt_turns": tilt_turns(det.tilt), "near_size_change": det.near_size_change,
            "detect_every": detect_every or pipe.detect_every,
            "search_every": search_every or pipe.search_every, "tilt_every": pipe.tilt_every,
            "clahe": CLAHE, "smoothing_alpha": track.alpha if track.smoothing == "ema" else 1.0,
            "confirm_hits": track.confirm_hits, "max_missed": track.max_missed,
            "label": asdict(track.label),
        }


def in_browser(mode: str, model: Path | None, injected: bool = False,
               vendor: Path | None = None) -> tuple[BrowserAnalysis | None, str]:
    """The in-browser analysis for ``serve --analysis MODE``, or None and why not.

    ``browser`` without the files it needs is an error (the operator asked that no picture
    leave the learner's device); ``auto`` without them logs why and the server analyses.
    ``injected``: the app was given its own server analyzer (tests), which ``auto`` keeps."""
    if mode in ("off", "server"):
        return None, f"in-browser analysis is switched off (--analysis {mode})"
    if injected and mode != "browser":
        return None, "the server analyses pictures (an analyzer was given to the app)"
    browser, note = BrowserAnalysis.create(model, vendor)
    if browser is None:
        if mode == "browser":
            raise MultiNetError(f"--analysis browser: {note}, or serve with --analysis auto "
                                "or server")
        log.warning("in-browser analysis unavailable: %s; pictures are analysed on the server",
                    note)
    return browser, note


def analysis_mode(requested: str, browser: BrowserAnalysis | None, server: Any) -> str:
    """Where pictures are analysed: ``browser`` (only there), ``server`` (only there), ``auto``
    (in the browser where it can run the model, else on the server) or ``off``."""
    if browser is not None and server is not None:
        return "auto" if requested == "auto" else "browser"
    if browser is not None:
        return "browser"
    return "server" if server is not None else "off"
