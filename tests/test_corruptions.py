"""Webcam-like corruptions (multinet_emotion.training.corruptions) and bench/robustness.py end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synth import FER2013, FERPLUS

from multinet_emotion import MultiNetError
from multinet_emotion.runtime.classifier import default_model_path
from multinet_emotion.training.corruptions import CORRUPTIONS, apply, describe

ROOT = Path(__file__).resolve().parents[1]
S = 48


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Six 48x48 crops: a drawn face, its mirror, a darker and a brighter copy, and two
    textured ones (a smooth random texture, and the face with noise)."""
    import cv2
    from conftest import draw_face

    rng = np.random.default_rng(0)
    face = draw_face(S)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (S, S)).astype(np.float32), (0, 0), 1.5)
    texture = cv2.normalize(texture, None, 20, 235, cv2.NORM_MINMAX)
    noisy = np.clip(face + rng.normal(0, 12, (S, S)), 0, 255)
    batch = [face, face[:, ::-1], face * 0.6, np.clip(face * 1.2, 0, 255), texture, noisy]
    return np.stack([np.asarray(b).round().astype(np.uint8) for b in batch])


def high_frequency_energy(images: np.ndarray) -> float:
    """Spectral energy above a quarter of the sampling frequency (mean removed)."""
    x = images.astype(np.float64) - images.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    f = np.abs(np.fft.fftfreq(images.shape[-1]))
    high = (f[:, None] > 0.25) | (f[None, :] > 0.25)
    return float(power[:, high].sum())


def changed(a: np.ndarray, b: np.ndarray, levels: int = 8) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)) > levels


# --- every corruption ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_dtype_determinism_and_change(name, faces):
    before = faces.copy()
    out = apply(name, faces, seed=3)
    assert out.shape == faces.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(faces, before)  # the input is left alone
    np.testing.assert_array_equal(apply(name, faces, seed=3), out)  # same seed, same images
    diff = np.abs(out.astype(np.int16) - faces).mean(axis=(1, 2))
    assert (diff > 0.5).all(), f"{name} left an image (almost) unchanged: {diff}"
    bigger = np.stack([np.kron(f, np.ones((2, 2), np.uint8)) for f in faces[:2]])
    assert apply(name, bigger, seed=3).shape == bigger.shape  # other crop sizes work too


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_states_its_severity(name):
    line = describe(name)
    assert 10 < len(line) <= 70 and any(c.isdigit() for c in line), line
    assert CORRUPTIONS[name].__doc__.strip().startswith(line)


@pytest.mark.parametrize("name", ["dim", "uneven_light", "motion_blur", "noise", "yaw",
                                  "occlusion_hand", "glasses"])
def test_random_ones_depend_on_the_seed(name, faces):
    assert not np.array_equal(apply(name, faces, seed=0), apply(name, faces, seed=1))


def test_unknown_name_and_bad_input():
    with pytest.raises(MultiNetError, match="unknown corruption 'fog'.*dim.*glasses"):
        apply("fog", np.zeros((1, S, S), np.uint8))
    with pytest.raises(MultiNetError, match="uint8"):
        apply("blur", np.zeros((1, S, S), np.float32))
    with pytest.raises(MultiNetError, match=r"\[N, S, S\]"):
        apply("blur", np.zeros((S, S), np.uint8))
    assert apply("jpeg", np.zeros((0, S, S), np.uint8)).shape == (0, S, S)


def test_runtime_half_imports_no_torch():
    code = ("import sys, multinet_emotion.training.corruptions as c; "
            "c.apply('glasses', __import__('numpy').zeros((1, 48, 48), 'uint8')); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- severities --------------------------------------------------------------------------------

def test_dim_darkens_and_adds_noise(faces):
    out = apply("dim", faces)
    assert out.mean() < 0.45 * faces.mean()
    flat = np.full((4, S, S), 200, np.uint8)
    dark = apply("dim", flat).astype(np.float64)
    assert 55 < dark.mean() < 80  # 0.35 * 255 * (200/255)^1.3 = 65
    assert 3 < dark.std() < 10  # the noise dim light brings


def test_uneven_light_is_a_strong_side_gradient():
    flat = np.full((8, S, S), 150, np.uint8)
    out = apply("uneven_light", flat).astype(np.float64)
    left, right = out[:, :, : S // 3].mean(axis=(1, 2)), out[:, :, -S // 3:].mean(axis=(1, 2))
    ratio = np.maximum(left, right) / np.minimum(left, right)
    assert (ratio > 1.8).all() and (ratio < 4.5).all()
    top, bottom = out[:, : S // 3].mean(axis=(1, 2)), out[:, -S // 3:].mean(axis=(1, 2))
    assert (np.maximum(top, bottom) / np.minimum(top, bottom) < ratio).all()  # from the side


@pytest.mark.parametrize("name, keep", [("blur", 0.5), ("motion_blur", 0.7), ("low_res", 0.25)])
def test_blurs_remove_high_frequencies(name, keep, faces):
    assert high_frequency_energy(apply(name, faces)) < keep * high_frequency_energy(faces)


def test_low_res_keeps_16_px_of_detail():
    import cv2

    checker = (np.indices((S, S)).sum(0) % 2 * 255).astype(np.uint8)[None]  # 1-px checkerboard
    assert apply("low_res", checker).std() < 0.06 * checker.std()  # (all but) gone
    coarse = cv2.resize(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8),
                        (S, S), interpolation=cv2.INTER_LINEAR)[None]
    assert np.abs(apply("low_res", coarse).astype(int) - coarse).mean() < 6  # 8x8 detail survives


def test_noise_has_sigma_10():
    grey = np.full((4, S, S), 128, np.uint8)
    assert 9.0 < (apply("noise", grey).astype(np.float64) - 128).std() < 11.0


def test_jpeg_quality_20_is_lossy_but_recognisable(faces):
    err = apply("jpeg", faces).astype(np.float64) - faces
    psnr = 10 * np.log10(255 ** 2 / (err ** 2).mean())
    assert 22 < psnr < 40


def _slopes(profile: np.ndarray) -> tuple[float, float]:
    """Mean slope of a 1-D grey profile in its first and last third."""
    n = len(profile) // 3
    g = np.diff(profile.astype(np.float64))
    return float(g[:n].mean()), float(g[-n:].mean())


def test_yaw_foreshortens_one_side():
    ramp = np.tile(np.linspace(20, 235, S), (S, 1)).astype(np.uint8)  # grey ramp left to right
    out = apply("yaw", np.stack([ramp] * 6), seed=0)
    for img in out:
        a, b = _slopes(img[S // 2])
        assert max(a, b) / min(a, b) > 1.25  # the far side is compressed: a steeper ramp there
    sides = {_slopes(img[S // 2])[0] > _slopes(img[S // 2])[1] for img in apply("yaw", np.stack(
        [ramp] * 16), seed=0)}
    assert sides == {True, False}  # turned left and right


def test_pitch_foreshortens_the_chin_side():
    ramp = np.tile(np.linspace(20, 235, S)[:, None], (1, S)).astype(np.uint8)  # top to bottom
    top, bottom = _slopes(apply("pitch", ramp[None])[0][:, S // 2])
    assert bottom / top > 1.2  # chin side compressed (farther), forehead side stretched


def test_hand_covers_a_bounded_part_of_the_lower_face(faces):
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (16, S, S), dtype=np.uint8)
    for batch in (faces, texture):
        moved = changed(apply("occlusion_hand", batch, seed=2), batch)
        assert not moved[:, : S // 2].any()  # nothing above the middle of the face
    fraction = changed(apply("occlusion_hand", texture, seed=2), texture).mean(axis=(1, 2))
    assert (fraction > 0.10).all() and (fraction < 0.25).all(), fraction


def test_glasses_are_thin_dark_frames_at_eye_height(faces):
    out = apply("glasses", faces, seed=0)
    moved = changed(out, faces)
    fraction = moved.mean(axis=(1, 2))
    assert (fraction > 0.02).all() and (fraction < 0.15).all(), fraction
    rows = np.flatnonzero(moved.any(axis=(0, 2)))
    assert rows.min() >= 0.2 * S and rows.max() <= 0.55 * S  # a band around 38% from the top
    assert (out[moved].astype(int) < faces[moved]).mean() > 0.9  # darker


# --- bench/robustness.py -----------------------------------------------------------------------

def bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULTINET_PROGRESS": "0"}
    return subprocess.run([sys.executable, "bench/robustness.py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def test_bench_user_errors_are_one_line():
    r = bench("--corruptions", "blur", "fog")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: unknown corruption 'fog'") and r.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(not default_model_path().is_file(), reason="no default model shipped")
@pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 absent")
def test_bench_on_the_shipped_model(tmp_path):
    limit = 16  # faces: each is scored three times (clean, blur, jpeg) by the full int8 model
    out = tmp_path / "robustness.json"
    r = bench("--limit", str(limit), "--corruptions", "blur", "jpeg", "--threads", "1",
              "--json", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("corruption"))
    table = [line.split() for line in lines[header + 2:] if line and not line.startswith("-")]
    assert [row[0] for row in table[:3]] == ["clean", "blur", "jpeg"]
    assert lines[header].split()[:4] == ["corruption", "severity", "acc", "drop"]
    assert " ".join(table[3][:4]) == "mean over 2 corruptions"
    assert "Gaussian blur, sigma 1.2 px" in r.stdout and "JPEG quality 20" in r.stdout

    report = json.loads(out.read_text())
    assert report["n"] == limit and report["split"] == "test" and report["limit"] == limit
    rows = {row["corruption"]: row for row in report["rows"]}
    assert list(rows) == ["clean", "blur", "jpeg"]
    labels = ["original"] + (["ferplus"] if FERPLUS.is_dir() else [])
    assert ("ferplus" in rows["clean"]) == FERPLUS.is_dir()
    for kind in labels:
        clean = rows["clean"][kind]["accuracy"]
        assert 0.2 < clean <= 1.0  # the real model, not chance (1/6)
        for row in rows.values():
            assert row[kind]["drop_points"] == pytest.approx(100 * (clean - row[kind]["accuracy"]))
        mean = report["mean_over_corruptions"][kind]["drop_points"]
        assert mean == pytest.approx((rows["blur"][kind]["drop_points"]
                                      + rows["jpeg"][kind]["drop_points"]) / 2)
        # the printed figures are the JSON ones
        assert f"{rows['blur'][kind]['accuracy']:.4f}" in r.stdout
    assert rows["clean"]["original"]["n"] == limit
    assert f"{rows['clean']['original']['accuracy']:.4f}" in table[0]
