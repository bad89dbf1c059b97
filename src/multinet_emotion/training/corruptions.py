"""Webcam-like image corruptions of grey face crops, for robustness checks (bench/robustness.py).

Each corruption models one thing that goes wrong with a laptop webcam in a real room (a dim
room, side light, defocus, motion, heavy compression, sensor noise, a face far from the
camera, a turned or lowered head, a hand at the chin, glasses), at a severity a webcam really
produces, not an extreme one. All work on a batch of grey crops ``uint8 [N, S, S]`` and return
a new batch of the same shape and dtype; sizes in pixels are given for S = 48 (the model's
input) and scale with S. Random choices (a direction, a position) come from the
:class:`numpy.random.Generator` passed in, so a seed gives the same images every time.

NumPy and OpenCV only: this module is part of the runtime half (no torch).

    from multinet_emotion.training.corruptions import CORRUPTIONS, apply, describe
    dark = apply("dim", faces, seed=0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import MultiNetError

log = logging.getLogger(__name__)

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]

REFERENCE_SIZE = 48  # the sizes below are for 48x48 crops and scale with the crop size


def _px(images: np.ndarray, pixels: float) -> float:
    """``pixels`` at 48x48, scaled to the crop size of ``images``."""
    return pixels * images.shape[-1] / REFERENCE_SIZE


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --- light ---------------------------------------------------------------------------------

def dim(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dim room: gain 0.35, gamma 1.3, sensor noise ~5 grey levels.

    The darkened, crushed-shadow image a webcam gives in a dim room, with the noise that comes
    with it: read noise plus shot noise growing with the square root of the signal."""
    x = images.astype(np.float32) / 255.0
    signal = 255.0 * 0.35 * np.power(x, 1.3)
    sigma = np.sqrt(3.0 ** 2 + 0.4 * signal)  # read noise + shot noise (variance ~ signal)
    return _to_uint8(signal + sigma * rng.standard_normal(images.shape, dtype=np.float32))


def uneven_light(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side light: linear gain ramp 0.3 -> 1.2 across the face.

    A window or lamp on one side (left or right, +-20 deg): one half of the face lit, the other
    in shade."""
    n, s = images.shape[0], images.shape[-1]
    side = rng.choice([0.0, math.pi], size=n)  # light from the right or from the left
    angle = side + np.deg2rad(rng.uniform(-20.0, 20.0, size=n))
    t = np.linspace(-1.0, 1.0, s, dtype=np.float32)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    along = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
    along /= np.abs(along).max(axis=(1, 2), keepdims=True)  # -1 .. 1 across the crop
    gain = 0.75 + 0.45 * along
    return _to_uint8(images.astype(np.float32) * gain)


# --- optics and motion ---------------------------------------------------------------------

def blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus: Gaussian blur, sigma 1.2 px.

    A webcam whose fixed focus misses the face (too close), or slight motion."""
    sigma = _px(images, 1.2)
    return np.stack([cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
                     for img in images])


def _line_kernel(length: float, angle: float, oversample: int = 8) -> np.ndarray:
    """A normalised anti-aliased line of ``length`` px at ``angle`` (radians)."""
    k = int(math.ceil(length)) | 1  # odd size
    big = np.zeros((k * oversample, k * oversample), np.float32)
    c = (k * oversample - 1) / 2.0
    half = (length - 1) / 2.0 * oversample
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    shift = 4  # sub-pixel precision of cv2.line
    p0 = (round((c - dx) * (1 << shift)), round((c - dy) * (1 << shift)))
    p1 = (round((c + dx) * (1 << shift)), round((c + dy) * (1 << shift)))
    cv2.line(big, p0, p1, 1.0, thickness=oversample, lineType=cv2.LINE_AA, shift=shift)
    kernel = cv2.resize(big, (k, k), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def motion_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Head motion: 5 px line blur, random direction.

    The smear of a moving head at webcam exposure times (1/30 s)."""
    length = max(2.0, _px(images, 5.0))
    angles = rng.uniform(0.0, math.pi, size=len(images))
    return np.stack([cv2.filter2D(img, -1, _line_kernel(length, a),
                                  borderType=cv2.BORDER_REFLECT_101)
                     for img, a in zip(images, angles)])


# --- the camera pipeline -------------------------------------------------------------------

def jpeg(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Compression: JPEG quality 20.

    A video call or a low-bandwidth stream (blocking and ringing)."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 20])
        if not ok:  # pragma: no cover - OpenCV always encodes a grey uint8 image
            raise MultiNetError("OpenCV could not JPEG-encode a face crop")
        out[i] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Gaussian, sigma 10 grey levels.

    A cheap sensor at high gain."""
    return _to_uint8(images + 10.0 * rng.standard_normal(images.shape, dtype=np.float32))


def low_res(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distance: face at 16x16 px, bilinear upscale.

    A student sitting back from the laptop: the face covers only ~16 px of the frame (area
    downscale, as the sensor integrates), upscaled back bilinearly to the model's input."""
    s = images.shape[-1]
    small = max(2, round(_px(images, 16.0)))
    return np.stack([cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA),
                                (s, s), interpolation=cv2.INTER_LINEAR) for img in images])


# --- head pose -----------------------------------------------------------------------------

def _rotated_plane_warp(images: np.ndarray, degrees: np.ndarray, axis: str,
                        distance: float = 4.0) -> np.ndarray:
    """Each face as a plane rotated by ``degrees`` about its vertical (``axis="y"``: yaw) or
    horizontal (``"x"``: pitch) centre line, seen by a pinhole camera ``distance`` half-face-widths
    away, re-framed so that the foreshortened direction fills the crop again (as a face detector
    would box it). The other direction keeps the projective scale, so the near side of the face
    grows past the crop and the far side shrinks."""
    s = images.shape[-1]
    corners = np.asarray([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)  # (x, y), y down
    src = ((corners + 1) / 2 * (s - 1)).astype(np.float32)
    out = np.empty_like(images)
    for i, (img, deg) in enumerate(zip(images, degrees)):
        a = math.radians(float(deg))
        x, y = corners[:, 0], corners[:, 1]
        if axis == "y":  # yaw: x recedes, positive angle turns the right side away
            z = distance + x * math.sin(a)
            u, v = distance * x * math.cos(a) / z, distance * y / z
            span = u.max() - u.min()
            u = (u - (u.max() + u.min()) / 2) * 2 / span
            v = v * 2 / span
        else:  # pitch: y recedes, positive angle turns the chin away (looking down)
            z = distance + y * math.sin(a)
            u, v = distance * x / z, distance * y * math.cos(a) / z
            span = v.max() - v.min()
            v = (v - (v.max() + v.min()) / 2) * 2 / span
            u = u * 2 / span
        dst = ((np.stack([u, v], 1) + 1) / 2 * (s - 1)).astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst)
        out[i] = cv2.warpPerspective(img, m, (s, s), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
    return out


def yaw(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Head turned 25 deg left or right (perspective).

    The far side of the face foreshortened.

    Looking at a second screen or a notebook beside the laptop."""
    degrees = 25.0 * rng.choice([-1.0, 1.0], size=len(images))
    return _rotated_plane_warp(images, degrees, "y")


def pitch(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Looking down 20 deg (perspective).

    The chin side foreshortened, the forehead nearer.

    Reading the keyboard or notes on the desk."""
    return _rotated_plane_warp(images, np.full(len(images), 20.0), "x")


# --- occluders -----------------------------------------------------------------------------

def occlusion_hand(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hand at the chin: skin-grey ellipse over ~17% of the crop.

    A soft-edged, shaded ellipse on the mouth-chin side (random place, size, tilt).

    Resting the chin or cheek on a hand, or a hand in front of the mouth."""
    s = images.shape[-1]
    out = np.empty_like(images)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1)  # 0..1, y down
    for i, img in enumerate(images):
        cx = rng.uniform(0.38, 0.62)
        cy = rng.uniform(0.78, 0.86)
        ax, ay = rng.uniform(0.27, 0.31), rng.uniform(0.18, 0.21)
        theta = np.deg2rad(rng.uniform(-25.0, 25.0))
        dx, dy = xx - cx, yy - cy
        ru = (dx * np.cos(theta) + dy * np.sin(theta)) / ax
        rv = (-dx * np.sin(theta) + dy * np.cos(theta)) / ay
        inside = (ru ** 2 + rv ** 2 <= 1.0).astype(np.float32)
        alpha = cv2.GaussianBlur(inside, (0, 0), _px(images, 0.8))  # a soft edge
        # skin grey: the face's own mid-tone (the central region), a little lighter or darker;
        # a rounded surface lit from above (darker towards the rim and the bottom), the creases
        # between the fingers (which lie along the ellipse's long axis), faint skin texture
        centre = img[s // 4: 3 * s // 4, s // 4: 3 * s // 4]
        skin = float(np.median(centre)) * rng.uniform(0.9, 1.15)
        skin = min(max(skin, 60.0), 210.0)
        shade = 1.0 - 0.18 * np.minimum(ru ** 2 + rv ** 2, 1.0) - 0.08 * rv
        width = _px(images, 0.6) / (ay * (s - 1))  # crease half-width in units of the minor axis
        creases = sum(np.exp(-(((rv - c) / width) ** 2)) for c in (-0.4, 0.05, 0.5))
        texture = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0),
                                   _px(images, 1.0)) * 3.0
        hand = skin * shade * (1.0 - 0.08 * creases) + texture
        out[i] = _to_uint8((1.0 - alpha) * img + alpha * hand)
    return out


def glasses(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Glasses: dark 1.3 px frames at eye height (38% from top).

    Ordinary dark-rimmed spectacles: two rings, a bridge and the temples, drawn anti-aliased."""
    s = images.shape[-1]
    over = 8  # draw at 8x and area-downscale: anti-aliased coverage
    big = s * over
    out = np.empty_like(images)
    shift = 4
    for i, img in enumerate(images):
        eye_y = rng.uniform(0.36, 0.40)
        centre_x = 0.5 + rng.uniform(-0.02, 0.02)
        gap = rng.uniform(0.165, 0.185)  # lens centre to face centre
        rx, ry = rng.uniform(0.12, 0.14), rng.uniform(0.085, 0.10)
        tilt = rng.uniform(-4.0, 4.0)
        thick = max(1, round(_px(images, 1.3) * over))
        dark = rng.uniform(15.0, 45.0)
        mask = np.zeros((big, big), np.uint8)

        def pt(x: float, y: float) -> tuple[int, int]:
            return round(x * big * (1 << shift)), round(y * big * (1 << shift))

        for side in (-1, 1):
            cx = centre_x + side * gap
            cv2.ellipse(mask, pt(cx, eye_y), pt(rx, ry), tilt, 0, 360, 255, thick,
                        cv2.LINE_AA, shift)
            # temple: from the outer edge of the rim towards the ear
            cv2.line(mask, pt(cx + side * rx, eye_y - 0.02), pt(cx + side * (rx + 0.12), eye_y - 0.03),
                     255, thick, cv2.LINE_AA, shift)
        cv2.line(mask, pt(centre_x - gap + rx, eye_y - 0.02), pt(centre_x + gap - rx, eye_y - 0.02),
                 255, thick, cv2.LINE_AA, shift)
        alpha = cv2.resize(mask, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        out[i] = _to_uint8((1.0 - alpha) * img + alpha * dark)
    return out


# --- the registry --------------------------------------------------------------------------

CORRUPTIONS: dict[str, Corruption] = {
    "dim": dim,
    "uneven_light": uneven_light,
    "blur": blur,
    "motion_blur": motion_blur,
    "jpeg": jpeg,
    "noise": noise,
    "low_res": low_res,
    "yaw": yaw,
    "pitch": pitch,
    "occlusion_hand": occlusion_hand,
    "glasses": glasses,
}


def get(name: str) -> Corruption:
    """The corruption called ``name``; MultiNetError listing the valid names if unknown."""
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise MultiNetError(f"unknown corruption {name!r}; choose from: "
                            f"{', '.join(CORRUPTIONS)}") from None


def describe(name: str) -> str:
    """The severity of corruption ``name`` in one line (the first line of its docstring)."""
    doc = get(name).__doc__ or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else name


def apply(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Corruption ``name`` applied to grey face crops ``uint8 [N, S, S]``, deterministically for
    ``seed``; returns a new ``uint8 [N, S, S]`` array."""
    fn = get(name)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise MultiNetError(f"corruptions take grey uint8 face crops [N, S, S], got "
                            f"{images.dtype} {images.shape}")
    if images.shape[-1] < 8:
        raise MultiNetError(f"face crops of {images.shape[-1]} px are too small (8 px at least)")
    log.debug("corruption %s on %d crops of %d px, seed %d", name, len(images),
              images.shape[-1], seed)
    if len(images) == 0:
        return images.copy()
    return fn(np.ascontiguousarray(images), np.random.default_rng(seed))
