"""Face detectors behind one interface, and crops framed like the training images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime.faces import (
    DEFAULT_CROP_SCALE,
    Box,
    DetectorConfig,
    HaarDetector,
    crop_faces,
    expand_box,
    make_detector,
    register_detector,
    to_grey,
)


def _noise_frame(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_box_iou_and_helpers():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 10, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 5, 5)) == 0.0
    assert a.iou(a) == 1.0
    assert a.center == (5.0, 5.0) and a.as_list() == [0, 0, 10, 10]


def test_crop_is_the_grey_box_resized_with_inter_area():
    frame = _noise_frame()
    crops = crop_faces(frame, [Box(100, 80, 96, 96)], size=48, crop_scale=1.0)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    expected = cv2.resize(grey[80:176, 100:196], (48, 48), interpolation=cv2.INTER_AREA)
    assert crops.shape == (1, 48, 48) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], expected)


def test_crop_scale_expands_about_the_centre():
    assert expand_box(Box(200, 200, 50, 50), 2.0) == (175, 175, 100, 100)
    frame = _noise_frame()
    crop = crop_faces(frame, [Box(130, 90, 40, 40)], size=32, crop_scale=1.5)[0]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    expected = cv2.resize(grey[80:140, 120:180], (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)


def test_crop_pads_by_repeating_the_border_at_frame_edges():
    frame = _noise_frame()
    crop = crop_faces(frame, [Box(0, 0, 50, 50)], size=48, crop_scale=2.0)[0]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    padded = cv2.copyMakeBorder(grey, 25, 0, 25, 0, cv2.BORDER_REPLICATE)
    expected = cv2.resize(padded[0:100, 0:100], (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)


def test_crops_of_several_faces_and_of_none():
    frame = _noise_frame()
    boxes = [Box(10, 10, 60, 60), Box(200, 100, 80, 80), Box(300, 200, 60, 60)]
    crops = crop_faces(frame, boxes, size=48)
    assert crops.shape == (3, 48, 48)
    assert crop_faces(frame, [], size=48).shape == (0, 48, 48)


def test_colour_order_and_grey_input():
    red_bgr = np.zeros((100, 100, 3), np.uint8)
    red_bgr[..., 2] = 255
    box = [Box(10, 10, 50, 50)]
    as_bgr = crop_faces(red_bgr, box, 48, 1.0, color="bgr")[0, 0, 0]
    as_rgb = crop_faces(red_bgr, box, 48, 1.0, color="rgb")[0, 0, 0]
    assert as_bgr == 76 and as_rgb == 29  # red vs blue luminance
    grey = np.full((100, 100), 77, np.uint8)
    assert to_grey(grey) is grey
    assert crop_faces(grey, box, 48)[0].mean() == 77
    with pytest.raises(MultiNetError, match="uint8"):
        crop_faces(grey.astype(np.float32), box, 48)
    with pytest.raises(MultiNetError, match="shape"):
        to_grey(np.zeros((4, 4, 2), np.uint8))


def test_default_crop_scale_is_the_measured_one():
    assert DEFAULT_CROP_SCALE == pytest.approx(1.01)


def test_haar_finds_the_faces_at_their_known_boxes(face_clip):
    detector = make_detector(DetectorConfig())
    for i in (5, 15, 30, 50):
        boxes = detector.detect(face_clip.render(i))
        expected = face_clip.boxes(i)
        assert len(boxes) == len(expected), f"frame {i}"
        for e in expected:
            assert max(Box(*e).iou(b) for b in boxes) > 0.7, f"frame {i}: {boxes} vs {e}"


def test_full_size_and_downscaled_detection_agree(drawn_face_clip):
    frame = drawn_face_clip.render(30)
    small = HaarDetector(DetectorConfig(detect_width=320)).detect(frame)
    full = HaarDetector(DetectorConfig(detect_width=0)).detect(frame)
    assert len(small) == len(full) == 2
    for b in small:
        assert max(b.iou(f) for f in full) > 0.8


def test_faces_below_min_face_are_ignored(face_drawing):
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[50:130, 50:130] = face_drawing(80)[:, :, None]
    frame[150:350, 300:500] = face_drawing(200)[:, :, None]
    detect = HaarDetector(DetectorConfig(detect_width=0, min_face=40)).detect
    assert len(detect(frame)) == 2
    big = HaarDetector(DetectorConfig(detect_width=0, min_face=120)).detect(frame)
    assert len(big) == 1 and big[0].w > 150
    assert HaarDetector(DetectorConfig(min_face=300)).detect(frame) == []


def test_no_face_in_a_blank_frame():
    assert HaarDetector().detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_unknown_detector_and_bad_detector_files(tmp_path):
    with pytest.raises(MultiNetError, match="unknown face detector 'nope'"):
        make_detector(DetectorConfig(kind="nope"))
    with pytest.raises(MultiNetError, match="--detector-model"):
        make_detector(DetectorConfig(kind="yunet"))
    with pytest.raises(MultiNetError, match="does not exist"):
        make_detector(DetectorConfig(kind="yunet", model_path=tmp_path / "missing.onnx"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(MultiNetError, match="garbage.onnx"):
        make_detector(DetectorConfig(kind="yunet", model_path=garbage))
    with pytest.raises(MultiNetError, match="garbage.onnx"):
        make_detector(DetectorConfig(kind="haar", model_path=garbage))
    with pytest.raises(MultiNetError, match="equalize"):
        make_detector(DetectorConfig(equalize="sometimes"))


def test_other_detectors_plug_in_behind_the_same_interface():
    class Fixed:
        def __init__(self, config, color):
            self.config = config

        def detect(self, frame):
            return [Box(1, 2, 60, 60)]

    register_detector("fixed-test", Fixed)
    detector = make_detector(DetectorConfig(kind="fixed-test"))
    assert detector.detect(np.zeros((10, 10), np.uint8)) == [Box(1, 2, 60, 60)]


def test_detect_near_follows_a_known_face_cheaply(drawn_face_clip):
    detector = HaarDetector()
    (start,) = [b for b in detector.detect(drawn_face_clip.render(15)) if b.x < 300]
    moved = detector.detect_near(drawn_face_clip.render(20), start)  # 10 px further right
    x, y, s, _ = drawn_face_clip.faces[0].box(20)
    assert moved is not None and moved.iou(Box(x, y, s, s)) > 0.7
    assert detector.detect_near(drawn_face_clip.render(5), start) is None  # nobody there


def test_two_hits_on_one_face_are_merged():
    from multinet_emotion.runtime.faces import _rescale

    rows = [(216, 140, 192, 192, 1.0), (282, 140, 184, 184, 1.0), (500, 10, 60, 60, 1.0)]
    assert _rescale(rows, 1.0, 48) == [Box(216, 140, 192, 192), Box(500, 10, 60, 60)]


def test_a_whole_frame_scan_sees_the_smallest_face_at_most_scan_face_px():
    from multinet_emotion.runtime.faces import SCAN_FACE_PX, scan_scale
    assert SCAN_FACE_PX == DetectorConfig().scan_face_px == 36
    assert scan_scale(640, 320, 48) == 0.5  # detect_width already shrinks it: as before
    assert scan_scale(320, 320, 48) == pytest.approx(0.75)  # a learner page's frame
    assert scan_scale(320, 320, 24) == 1.0  # small faces wanted: the frame as it is
    assert scan_scale(1280, 0, 96) == pytest.approx(0.375)  # detect_width 0: only the rule
    assert scan_scale(320, 320, 48, face_px=48) == 1.0  # the rule before 0.9


def test_scanning_at_scan_face_px_finds_the_faces_full_size_scanning_does(face_drawing):
    frame = np.full((240, 320, 3), 110, np.uint8)
    frame[20:90, 20:90] = face_drawing(70)[:, :, None]
    frame[60:220, 140:300] = face_drawing(160)[:, :, None]
    now = HaarDetector().detect(frame)
    before = HaarDetector(DetectorConfig(scan_face_px=48)).detect(frame)
    assert len(now) == len(before) == 2
    for b in now:
        assert max(b.iou(f) for f in before) > 0.7


def test_detectors_share_parsed_cascades_and_concurrent_scans_get_their_own(face_drawing):
    import threading

    a = HaarDetector()
    pool = a.cascades
    made = pool.parsed
    b = HaarDetector()
    assert b.cascades is pool and pool.parsed == made  # a new detector parses nothing
    frame = np.full((240, 320, 3), 110, np.uint8)
    frame[60:220, 140:300] = face_drawing(160)[:, :, None]
    expected = a.detect(frame)
    assert len(expected) == 1
    lent: list = []
    inside = threading.Barrier(4, timeout=10)

    def scan() -> None:  # four threads, each holding a cascade at the same time
        with pool.borrow() as cascade:
            lent.append(cascade)
            inside.wait()
        for _ in range(10):
            lent.append(b.detect(frame) == expected)

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cascades = [x for x in lent if not isinstance(x, bool)]
    assert len({id(c) for c in cascades}) == 4  # never one cascade in two scans at once
    assert [x for x in lent if isinstance(x, bool)] == [True] * 40
    assert pool.parsed <= made + 4  # copies are reused, not parsed per scan or per thread
    parsed = pool.parsed
    fresh = threading.Thread(target=lambda: lent.append(HaarDetector().detect(frame)))
    fresh.start()
    fresh.join()
    assert lent[-1] == expected
    assert pool.parsed == parsed  # a new thread's detector and scan reuse a parsed copy


def test_prepare_parses_the_copies_concurrent_scans_need_up_front():
    from contextlib import ExitStack

    d = HaarDetector()
    want = d.cascades.parsed + 3
    d.prepare(want)
    assert d.cascades.parsed == want
    with ExitStack() as held:  # as many scans at once as prepared: nothing is parsed then
        copies = [held.enter_context(d.cascades.borrow()) for _ in range(want)]
    assert len({id(c) for c in copies}) == want and d.cascades.parsed == want
    d.prepare(2)  # fewer than there are: nothing more
    assert d.cascades.parsed == want


def test_detect_near_searches_the_region_its_margin_makes(face_drawing):
    detector = HaarDetector()
    face = face_drawing(100)

    def frame_at(x: int) -> np.ndarray:
        frame = np.full((240, 320), 110, np.uint8)
        frame[60:160, x:x + 100] = face
        return frame

    (start,) = detector.detect(frame_at(60))
    moved_far = frame_at(60 + 35)  # 35 px: beyond a 0.2 margin (about 20 px), within 0.5
    assert detector.detect_near(moved_far, start, margin=0.2) is None
    found = detector.detect_near(moved_far, start)  # the default margin, 0.5
    assert found is not None and found.iou(Box(95, 60, 100, 100)) > 0.6
    assert detector.detect_near(frame_at(60 + 5), start, margin=0.2) is not None


def _tilted(face: np.ndarray, angle: float, x: int = 100, y: int = 60) -> tuple[np.ndarray, Box]:
    """A 320x240 frame with ``face`` at (x, y), the frame turned ``angle`` degrees about the
    face's centre (counter-clockwise, OpenCV's sense), and the face's upright box."""
    side = face.shape[0]
    frame = np.tile(np.linspace(70, 170, 320).astype(np.uint8), (240, 1))
    frame[y:y + side, x:x + side] = face
    m = cv2.getRotationMatrix2D((x + side / 2, y + side / 2), angle, 1.0)
    return cv2.warpAffine(frame, m, (320, 240), borderMode=cv2.BORDER_REPLICATE), Box(x, y, side, side)


@pytest.mark.parametrize("angle", [30, -35])
def test_a_tilted_head_is_found_by_the_turned_scans_and_cropped_upright(face_drawing, angle):
    face = face_drawing(110)
    frame, truth = _tilted(face, angle)
    # the frontal cascade alone misses a head leant this far
    assert HaarDetector(DetectorConfig(tilt=0)).detect(frame) == []
    (box,) = HaarDetector().detect(frame)  # default tilt 20: turned -20 (for +30), then +20
    assert box.angle == (-20.0 if angle > 0 else 20.0)
    assert box.iou(truth) > 0.6  # the box sits on the face: same centre, same size
    assert box.as_list() == [box.x, box.y, box.w, box.h]  # reported as before, the angle apart
    # the crop is turned upright by the box's angle: nearer the upright face than the same
    # window cut without turning
    upright = crop_faces(face, [Box(0, 0, 110, 110)], 48, DEFAULT_CROP_SCALE)[0].astype(float)
    turned = crop_faces(frame, [box], 48, DEFAULT_CROP_SCALE)[0].astype(float)
    flat = crop_faces(frame, [Box(box.x, box.y, box.w, box.h)], 48,
                      DEFAULT_CROP_SCALE)[0].astype(float)
    err_turned, err_flat = np.abs(turned - upright).mean(), np.abs(flat - upright).mean()
    assert err_turned < 0.6 * err_flat, (err_turned, err_flat)


def test_an_upright_face_never_costs_a_turned_scan(face_drawing, monkeypatch):
    import multinet_emotion.runtime.haar as haar

    turns: list[float] = []
    real = haar._turned
    monkeypatch.setattr(haar, "_turned", lambda img, c, s: (turns.append(s), real(img, c, s))[1])
    frame, truth = _tilted(face_drawing(110), 0)
    (box,) = HaarDetector().detect(frame)
    assert box.angle == 0.0 and box.iou(truth) > 0.8 and turns == []
    assert HaarDetector().detect(np.full((240, 320), 128, np.uint8)) == []
    assert len(turns) == 2  # nobody upright: +tilt, then -tilt
    turns.clear()
    assert HaarDetector(DetectorConfig(tilt=0)).detect(np.full((240, 320), 128, np.uint8)) == []
    assert turns == []


def test_detect_near_follows_a_tilted_face_in_its_turned_region(face_drawing):
    face = face_drawing(110)
    detector = HaarDetector()
    (start,) = detector.detect(_tilted(face, 30)[0])
    frame, truth = _tilted(face, 30, x=112, y=66)  # moved 12 px right, 6 down
    found = detector.detect_near(frame, start)
    assert found is not None and found.angle == start.angle
    assert found.iou(truth) > 0.6 and found.iou(truth) > start.iou(truth)
    # searched for upright in that region, the leaning face is not there
    assert detector.detect_near(frame, Box(start.x, start.y, start.w, start.h)) is None
    # and not in a region with no face
    assert detector.detect_near(np.full((240, 320), 128, np.uint8), start) is None
