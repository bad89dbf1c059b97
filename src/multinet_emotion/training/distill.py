"""Distillation: a compact student trained towards an exported teacher's probabilities.

``train --teacher MODEL.onnx`` runs the teacher file (through the runtime's own classifier, so
its input size, value range, in-graph mirror averaging and class offsets are the file's) over
every training face and over its mirror image, once: the outputs are cached as a ``.npy``
under the cache folder (``MULTINET_CACHE``, default ``~/.cache/multinet-emotion``), named by
the teacher file's sha256 and the faces' own sha256, and written in chunks as they finish, so
an interrupted pass continues where it stopped.

The target of a training face is then ``mix * teacher_T + (1 - mix) * target``, where
``target`` is what the run trains towards without a teacher (targets.py: FER+ votes, FER2013
labels or their mix) and ``teacher_T`` the teacher's probabilities softened at temperature
``T`` (``p^(1/T)``, renormalised: its logits divided by ``T``) after undoing any per-class
offsets built into the file (``class_bias``: a deployment choice, fitted on validation, not
the teacher's knowledge). An augmented view that augment.py mirrored takes the teacher's
output for the mirrored face.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..emotions import EMOTIONS
from ..errors import MultiNetError
from ..files import atomic_path, atomic_write_text, cache_dir, file_sha256
from ..progress import bar
from ..runtime.classifier import ClassifierConfig, load_model

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK = 2048  # faces per cache chunk (each written as it finishes)
BATCH = 256  # faces per teacher call


def resize_for(images: np.ndarray, size: int) -> np.ndarray:
    """Grey faces ``[N, S, S]`` at ``size`` x ``size``, resized as datasets.py reads an image
    file at that size (PIL bilinear), so a teacher trained on faces read at its own size sees
    the same pixels here."""
    if images.shape[1:] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), np.uint8) for im in images])


def faces_sha256(faces: np.ndarray) -> str:
    """The identity of a set of faces: their shape and pixels, in order."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, list(faces.shape), str(faces.dtype)]).encode())
    h.update(np.ascontiguousarray(faces).tobytes())
    return h.hexdigest()


def cache_path(teacher_sha: str, faces_sha: str) -> Path:
    return cache_dir() / "teacher" / f"{teacher_sha[:16]}-{faces_sha[:16]}.npy"


def teacher_outputs(teacher: Path, images: np.ndarray, threads: int = 1,
                    chunk: int = CHUNK) -> tuple[np.ndarray, dict]:
    """The teacher file's probabilities ``[N, 2, 6]`` for each face of ``images`` ``[N, S, S]``
    (``[:, 0]``) and its mirror image (``[:, 1]``), and a description of them (teacher, sha256s,
    class offsets, cache file). Read from the cache when there; otherwise computed chunk by
    chunk, each chunk kept as it finishes, so a second call after an interruption runs only
    the chunks still missing."""
    teacher = Path(teacher)
    if not teacher.is_file():
        raise MultiNetError(f"{teacher}: --teacher model not found (an exported .onnx file)")
    if teacher.suffix != ".onnx":
        raise MultiNetError(f"{teacher}: --teacher takes an exported .onnx model; export a "
                            "checkpoint first with multinet-emotion export")
    clf = load_model(teacher, ClassifierConfig(threads=threads, max_batch=BATCH))
    faces = resize_for(images, clf.input_size)
    teacher_sha, faces_sha = file_sha256(teacher), faces_sha256(faces)
    path = cache_path(teacher_sha, faces_sha)
    info = {"teacher": str(teacher), "teacher_sha256": teacher_sha, "faces_sha256": faces_sha,
            "faces": len(faces), "input_size": clf.input_size, "tta_flip": clf.info.tta_flip,
            "class_bias": list(clf.info.class_bias) if clf.info.class_bias else None,
            "cache": str(path)}
    out = _load(path, len(faces))
    if out is not None:
        log.info("teacher outputs for %d faces (and their mirror images) from the cache %s",
                 len(faces), path)
        return out, info
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    began = time.time()
    starts = range(0, len(faces), chunk)
    todo = [s for s in starts if _load(_part(parts, s, min(s + chunk, len(faces))),
                                       min(chunk, len(faces) - s)) is None]
    done = len(faces) - sum(min(chunk, len(faces) - s) for s in todo)
    if done:
        log.info("teacher outputs: continuing in %s (%d of %d faces done)", parts, done,
                 len(faces))
    pbar = bar(2 * len(faces), f"teacher {teacher.name}", unit="img", initial=2 * done)
    for s in todo:
        e = min(s + chunk, len(faces))
        probs = np.zeros((e - s, 2, len(EMOTIONS)), np.float32)
        for i in range(s, e, BATCH):
            j = min(i + BATCH, e)
            probs[i - s:j - s, 0] = clf.predict(faces[i:j])
            probs[i - s:j - s, 1] = clf.predict(faces[i:j, :, ::-1])
            pbar.update(2 * (j - i))
        with atomic_path(_part(parts, s, e)) as tmp:
            np.save(tmp, probs)
    pbar.close()
    out = np.concatenate([np.load(_part(parts, s, min(s + chunk, len(faces))))
                          for s in starts]) if len(faces) else np.zeros((0, 2, len(EMOTIONS)), np.float32)
    with atomic_path(path) as tmp:
        np.save(tmp, out)
    seconds = time.time() - began
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {**info, "computed_faces": len(faces) - done, "seconds": round(seconds, 1)}, indent=2))
    shutil.rmtree(parts, ignore_errors=True)
    log.info("teacher outputs for %d faces and their mirror images in %.0f s (%.0f faces/s), "
             "cached in %s", len(faces) - done, seconds,
             2 * (len(faces) - done) / max(seconds, 1e-9), path)
    return out, info


def _part(parts: Path, start: int, end: int) -> Path:
    return parts / f"{start:08d}-{end:08d}.npy"


def _load(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        out = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable teacher cache %s: %s", path, e)
        return None
    if out.shape[:2] != (n, 2) or out.dtype != np.float32:
        log.warning("ignoring teacher cache %s: shape %s, expected (%d, 2, 6)", path,
                    out.shape, n)
        return None
    return out


def soften(probs: np.ndarray, temperature: float,
           class_bias: list[float] | tuple[float, ...] | None = None) -> np.ndarray:
    """Probabilities ``[..., C]`` at ``temperature``: ``p^(1/T)`` renormalised (softmax of the
    logits divided by T), after undoing per-class offsets built into the file (``p *
    exp(bias)`` renormalised is how export.py applies them)."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-8, None))
    if class_bias is not None:
        logp = logp - np.asarray(class_bias, np.float64)
    logp = logp / temperature
    logp -= logp.max(-1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def mixed_targets(base: np.ndarray, teacher: np.ndarray, mix: float, temperature: float,
                  class_bias=None) -> np.ndarray:
    """``[N, 2, C]``: for each face (``[:, 0]``) and its mirror image (``[:, 1]``),
    ``mix * soften(teacher) + (1 - mix) * base``; ``base`` ``[N, C]`` is the face's target
    without a teacher (the same for both views), ``teacher`` ``[N, 2, C]``."""
    if teacher.shape[0] != base.shape[0] or teacher.shape[2] != base.shape[1]:
        raise MultiNetError(f"teacher outputs {teacher.shape} do not fit targets {base.shape}")
    soft = soften(teacher, temperature, class_bias)
    return (mix * soft + (1 - mix) * base[:, None, :]).astype(np.float32)


def augment_flips(g, n: int) -> np.ndarray:
    """Which faces (bool ``[n]``) the next ``augment(x, g)`` of ``n`` faces mirrors, read
    without drawing from ``g``: augment.py's first draws are ``_warp``'s rotation, scale and
    flip, ``n`` uniform numbers each, a flip where the third is below 0.5
    (tests/test_distill.py checks this against augment itself)."""
    import torch

    peek = torch.Generator()
    peek.set_state(g.get_state())
    torch.rand(n, generator=peek)  # rotation
    torch.rand(n, generator=peek)  # scale
    return (torch.rand(n, generator=peek) < 0.5).numpy()
