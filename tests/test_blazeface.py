"""BlazeFace behind the detector interface (``--detector blazeface``): the vendored files and
their checksums, boxes framed as the crops expect, the eye line's roll, following a face,
and a whole ``detect`` run with it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FER2013_DIR

from multinet_emotion.cli import main
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime import blazeface
from multinet_emotion.runtime.faces import Box, DetectorConfig, make_detector


def _fer_faces(n: int) -> list[np.ndarray]:
    paths = sorted((FER2013_DIR / "train" / "happy").glob("*.jpg"))
    faces = [f for p in paths[:200] if (f := cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) is not None
             and f.std() > 35]
    if len(faces) < n:
        pytest.skip("FER2013 training faces are not available")
    return faces[:n]


def _scene(face: np.ndarray, x: int, y: int, side: int, turn: float = 0.0) -> np.ndarray:
    frame = np.tile(np.linspace(70, 150, 320).astype(np.uint8), (240, 1))
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if turn:
        m = cv2.getRotationMatrix2D((x + side / 2, y + side / 2), turn, 1.0)
        frame = cv2.warpAffine(frame, m, (320, 240), borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def test_the_vendored_models_are_the_ones_named_with_their_licence():
    root = Path(blazeface.__file__).parents[1] / "assets" / "blazeface"
    assert "Apache License" in (root / "LICENSE").read_text()
    readme = (root / "README.md").read_text()
    for file, size, digest in blazeface.MODELS.values():
        assert (root / file).is_file() and digest in readme and f"{size}x{size}" in readme


def test_a_damaged_model_file_is_refused_with_a_clear_message(monkeypatch, tmp_path):
    (tmp_path / "assets" / "blazeface").mkdir(parents=True)
    (tmp_path / "assets" / "blazeface" / "back_256.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(blazeface.resources, "files", lambda _pkg: tmp_path)
    blazeface._session.cache_clear()
    try:
        with pytest.raises(MultiNetError, match="damaged .*reinstall"):
            make_detector(DetectorConfig(kind="blazeface"))
    finally:
        blazeface._session.cache_clear()


@pytest.mark.parametrize("model", ["back", "front"])
def test_faces_are_found_and_framed_as_the_crops_expect(model):
    det = make_detector(DetectorConfig(kind="blazeface", blazeface=model, align=False))
    found, ious = 0, []
    for i, face in enumerate(_fer_faces(12)):
        side = 90 + 5 * i
        truth = Box(40 + 7 * i, 30, side, side)
        boxes = det.detect(_scene(face, truth.x, truth.y, side))
        if boxes:
            found += 1
            ious.append(max(b.iou(truth) for b in boxes))
    assert found >= 8
    assert np.median(ious) > 0.7  # blazeface.FIT: the face's square, not BlazeFace's own box
    assert det.detect(_scene(np.full((48, 48), 120, np.uint8), 100, 60, 100)) == []


def test_a_rolled_face_carries_the_eye_lines_angle_and_is_cropped_upright():
    det = make_detector(DetectorConfig(kind="blazeface"))
    for turn in (30.0, -30.0):  # the picture turned counter-clockwise by `turn`...
        diffs = []
        for face in _fer_faces(8):
            upright = det.detect(_scene(face, 110, 60, 110))
            rolled = det.detect(_scene(face, 110, 60, 110, turn))
            if upright and rolled:
                diffs.append(rolled[0].angle - upright[0].angle)
        # ... is stood upright by turning it back: the boxes' angle is about -turn
        assert len(diffs) >= 5 and np.median(diffs) == pytest.approx(-turn, abs=6), diffs
    level = make_detector(DetectorConfig(kind="blazeface", align=False))
    assert level.detect(_scene(_fer_faces(1)[0], 110, 60, 110, 30.0))[0].angle == 0.0


def test_a_followed_face_is_found_again_and_an_empty_region_is_not():
    det = make_detector(DetectorConfig(kind="blazeface"))
    face = _fer_faces(1)[0]
    (first,) = det.detect(_scene(face, 100, 60, 110))
    moved = det.detect_near(_scene(face, 108, 64, 106), first)
    assert moved is not None and moved.iou(first) > 0.6
    assert det.detect_near(np.full((240, 320, 3), 128, np.uint8), first) is None


def test_detect_runs_with_blazeface(drawn_face_clip, brightness_onnx_model, tmp_path, capsys):
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--detector", "blazeface", "--summary",
               str(tmp_path / "s.json")])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["settings"]["detector"]["kind"] == "blazeface"
    assert summary["settings"]["detector"]["blazeface"] == "back"


def test_followed_faces_cost_a_small_pass_each(monkeypatch):
    from multinet_emotion.runtime.detect import EmotionDetector, PipelineConfig

    det = make_detector(DetectorConfig(kind="blazeface"))
    faces = _fer_faces(2)
    frame = np.tile(np.linspace(70, 150, 320).astype(np.uint8), (240, 1))
    for face, x in zip(faces, (20, 180)):
        frame[60:180, x:x + 120] = cv2.resize(face, (120, 120), interpolation=cv2.INTER_CUBIC)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)

    class Model:
        input_size, crop_scale, path = 44, 1.0, Path("m.onnx")

        def predict(self, crops: np.ndarray) -> np.ndarray:
            return np.full((len(crops), 6), 1 / 6)

    from multinet_emotion.runtime import detect as detect_module
    monkeypatch.setattr(detect_module, "EmotionClassifier", Model)
    pipeline = EmotionDetector(Model(), PipelineConfig(detect_every=5), detector=det)
    passes = []
    real = det._run
    monkeypatch.setattr(det, "_run", lambda *a: passes.append(a[4:]) or real(*a))
    for i in range(5):
        faces_now = pipeline.process(frame, i / 10)
    assert len(faces_now) == 2 and len({f.track_id for f in faces_now}) == 2
    # one whole-frame pass of the full-range model, then the short-range one on a region
    # around each followed face (a fifth of the work each)
    assert passes == [()] + [(blazeface.FOLLOW,)] * 8


def test_the_whole_frame_pass_is_tiled_only_for_faces_smaller_than_it_finds():
    det = make_detector(DetectorConfig(kind="blazeface"))  # min_face 48
    assert det.squares(320, 240) == [(0.0, -40.0, 320.0)]  # 48 px is 15% of 320: one pass
    squares = det.squares(640, 480)  # 48 px is 7.5% of 640: tiles of 384 px, overlapping
    assert squares[0] == (0.0, -80.0, 640.0) and len(squares) == 5
    assert all(s == 384.0 for _, _, s in squares[1:])
    assert {(x, y) for x, y, _ in squares[1:]} == {(0.0, 0.0), (256.0, 0.0), (0.0, 96.0),
                                                  (256.0, 96.0)}
    assert make_detector(DetectorConfig(kind="blazeface", min_face=0)).squares(640, 480) == \
        [(0.0, -80.0, 640.0)]


def test_a_small_face_is_found_in_a_tile_and_followed_in_a_region(monkeypatch):
    face = _fer_faces(1)[0]
    frame = np.tile(np.linspace(70, 150, 640).astype(np.uint8), (480, 1))
    frame[300:332, 420:452] = cv2.resize(face, (32, 32), interpolation=cv2.INTER_AREA)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    truth = Box(420, 300, 32, 32)
    whole = make_detector(DetectorConfig(kind="blazeface", min_face=0))  # one pass
    tiled = make_detector(DetectorConfig(kind="blazeface", min_face=26))
    assert not any(b.iou(truth) > 0.3 for b in whole.detect(frame))
    (found,) = [b for b in tiled.detect(frame) if b.iou(truth) > 0.3]
    passes = []
    real = tiled._run
    monkeypatch.setattr(tiled, "_run", lambda *a: passes.append(a[1:]) or real(*a))
    moved = np.roll(frame, 3, axis=1)
    (near,) = tiled.detect_near_all(moved, [found])
    assert near is not None and near.iou(Box(423, 300, 32, 32)) > 0.5
    assert len(passes) == 1 and passes[0][2] == pytest.approx(3 * found.w)  # its region


@pytest.mark.parametrize("axis, peak", [("y", 60), ("roll", 40)])
def test_a_turning_head_keeps_its_track(axis, peak, monkeypatch):
    """A face turning ``peak`` degrees and back (yaw: the face as a plane turned about its
    vertical line; roll: in the picture), then leaving for longer than a track waits and
    returning: one track for the turn, a new one after the return."""
    from multinet_emotion.runtime.detect import EmotionDetector, PipelineConfig
    from multinet_emotion.training.corruptions import _rotated_plane_warp

    face = _fer_faces(1)[0]
    angles = list(np.linspace(0, peak, 8)) + [peak] * 3 + list(np.linspace(peak, 0, 8))

    def frame(angle: float) -> np.ndarray:
        if axis == "roll":
            return _scene(face, 100, 60, 110, angle)
        turned = _rotated_plane_warp(face[None], np.array([angle]), "y")[0] if angle else face
        return _scene(turned, 100, 60, 110)

    class Model:
        input_size, crop_scale, path = 44, 1.0, Path("m.onnx")

        def predict(self, crops: np.ndarray) -> np.ndarray:
            return np.full((len(crops), 6), 1 / 6)

    from multinet_emotion.runtime import detect as detect_module
    monkeypatch.setattr(detect_module, "EmotionClassifier", Model)
    pipeline = EmotionDetector(Model(), PipelineConfig(detect_every=5))
    assert pipeline.config.detector.kind == "blazeface"  # the default
    ids = []
    for i, angle in enumerate(angles):
        ids.append({r.track_id for r in pipeline.process(frame(angle), t=i / 10)})
    empty = np.full((240, 320, 3), 110, np.uint8)
    for i in range(len(angles), len(angles) + 12):  # gone for 1.2 s
        assert pipeline.process(empty, t=i / 10) == []
    back = [{r.track_id for r in pipeline.process(frame(0), t=(len(angles) + 12 + i) / 10)}
            for i in range(5)]
    turning = set().union(*ids)
    assert len(turning) == 1, ids  # never split into two tracks
    assert sum(bool(x) for x in ids) >= len(angles) - 3, ids  # reported all along
    assert back[-1] and back[-1].isdisjoint(turning)  # a new track after a long absence
