"""The per-frame detector on a generated clip, sources, bad input, and a run's outputs."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from multinet_emotion import EmotionDetector
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime.faces import Box, DetectorConfig, make_detector
from multinet_emotion.runtime.tracking import TrackerConfig
from multinet_emotion.runtime.video import (
    ImageSource,
    LiveSource,
    MemoryCapture,
    PipelineConfig,
    RunConfig,
    SourceConfig,
    VideoFileSource,
    open_source,
    run,
)

EVENT_KEYS = {"t", "frame", "track_id", "face", "box", "angle", "probs", "label", "smoothed",
              "smoothed_label", "shown_label", "shown_share", "confidence"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the detector on the test clip ----------------------------------------------------------

def test_detector_finds_tracks_and_classifies_the_known_faces(face_clip, brightness_onnx_model):
    detector = EmotionDetector(brightness_onnx_model)
    ids: dict[str, set[int]] = {"A": set(), "B": set()}
    with VideoFileSource(face_clip.path) as source:
        for frame in source:
            faces = detector.process(frame.image, t=frame.t)
            expected = face_clip.reported(frame.index)  # each face from its third frame
            assert len(faces) == len(expected), f"frame {frame.index}"
            for name, face in zip("AB", face_clip.faces):
                box = face.box(frame.index)
                if box is None or box not in expected:
                    continue
                match = max(faces, key=lambda f: Box(*box).iou(Box(*f.box)))
                # (BlazeFace's box is FER2013's framing in the median, 0.8-1.2 times a
                # face's square from face to face: bench/detection.py --blazeface-fit)
                assert Box(*box).iou(Box(*match.box)) > 0.6, f"frame {frame.index}, face {name}"
                ids[name].add(match.track_id)
                assert match.t == frame.t  # the frame's own time, nothing made up
                # the dark face is classified sad and the bright one happy: the right crops
                assert match.raw_label == ("sad" if face.tone == "dark" else "happy")
                assert len(match.probs) == len(match.raw_probs) == len(EMOTIONS)
                assert match.confidence == pytest.approx(max(match.probs))
    assert source.frames_read == face_clip.n_frames and source.unreadable == 0
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]


class CountingHaar:
    """The Haar detector without its local search, noting the caller's frame number
    (``now``) at each whole-frame scan."""

    def __init__(self) -> None:
        self.haar, self.scans, self.now = make_detector(), [], 0

    def detect(self, frame):  # noqa: ANN001, ANN201
        self.scans.append(self.now)
        return self.haar.detect(frame)


def test_search_every_scans_an_empty_scene_every_nth_frame(drawn_face_clip,
                                                          brightness_onnx_model):
    counting = CountingHaar()
    detector = EmotionDetector(brightness_onnx_model,  # (about scans: faces reported at once)
                               PipelineConfig(search_every=3, detect_every=30,
                                              tracker=TrackerConfig(confirm_hits=1)),
                               detector=counting)
    empty = np.full_like(drawn_face_clip.render(20), 128)
    found = []
    for counting.now in range(7):
        found.append(detector.process(empty, t=counting.now / 25))
    assert found == [[]] * 7 and counting.scans == [0, 3, 6]
    # a face coming into view is found at the next scan, then followed on every frame
    found = []
    for counting.now in range(7, 12):
        found.append(detector.process(drawn_face_clip.render(19 + counting.now),
                                      t=counting.now / 25))
    assert [len(f) for f in found] == [0, 0, 2, 2, 2] and counting.scans == [0, 3, 6, 9]


def test_scan_phase_shifts_the_whole_frame_scans(drawn_face_clip, brightness_onnx_model):
    scanned = {}
    for phase in (0, 1, 4):
        counting = CountingHaar()
        detector = EmotionDetector(brightness_onnx_model, PipelineConfig(detect_every=3),
                                   detector=counting, scan_phase=phase)
        for counting.now in range(20, 29):
            detector.process(drawn_face_clip.render(counting.now), t=counting.now / 25)
        scanned[phase] = counting.scans
    # the first frame is always scanned (nobody known yet), then every 3rd from the phase
    assert scanned == {0: [20, 23, 26], 1: [20, 22, 25, 28], 4: [20, 22, 25, 28]}


def test_detect_every_n_frames_carries_boxes_between(drawn_face_clip, brightness_onnx_model):
    counting = CountingHaar()
    detector = EmotionDetector(brightness_onnx_model,  # (about scans: faces reported at once)
                               PipelineConfig(detect_every=3,
                                              tracker=TrackerConfig(confirm_hits=1)),
                               detector=counting)
    per_frame = []
    for counting.now in range(20, 32):
        per_frame.append(detector.process(drawn_face_clip.render(counting.now),
                                          t=counting.now / 25))
    assert counting.scans == [20, 23, 26, 29]
    assert all(len(faces) == 2 for faces in per_frame[6:])  # both faces from frame 26 on
    assert len({f.track_id for faces in per_frame for f in faces}) == 2


def test_refresh_rate_limits_classification_but_not_events(drawn_face_clip,
                                                           brightness_onnx_model):
    detector = EmotionDetector(brightness_onnx_model, PipelineConfig(refresh_hz=5))
    fresh = 0
    for i in range(30, 45):  # 15 frames at 25 fps with two faces: 0.6 s -> 3 readings each
        faces = detector.process(drawn_face_clip.render(i), t=i / 25)
        assert len(faces) == (2 if i >= 32 else 0)  # reported from their third frame
        fresh += sum(f.fresh for f in faces)
    # read at frames 30 (not yet reported), 35 and 40
    assert fresh == 4 and detector.timings["faces_classified"] == 6


def test_rgb_frames_and_an_api_call_without_time(brightness_onnx_model, drawn_face_clip):
    detector = EmotionDetector(brightness_onnx_model, PipelineConfig(color="rgb"))
    for _ in range(3):  # a face is reported once confirmed (its third frame)
        faces = detector(drawn_face_clip.render(30)[:, :, ::-1].copy())
    assert len(faces) == 2
    detector.reset()
    assert len(detector(drawn_face_clip.render(30)[:, :, ::-1].copy(), still=True)) == 2


# --- a whole run and its outputs ------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_run(drawn_face_clip, brightness_onnx_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = RunConfig(source=str(drawn_face_clip.path), model=brightness_onnx_model,
                       jsonl=out / "events.jsonl", csv=out / "events.csv",
                       video_out=out / "annotated.avi", summary=out / "summary.json",
                       plot=out / "timeline.png")
    return out, run(config)


def test_jsonl_events_follow_the_schema(clip_run, drawn_face_clip):
    out, report = clip_run
    events = _jsonl(out / "events.jsonl")
    assert len(events) == report.events
    by_frame: dict[int, list[dict]] = {}
    for e in events:
        by_frame.setdefault(e["frame"], []).append(e)
    assert sorted(by_frame) == list(range(drawn_face_clip.n_frames))
    for frame, evs in by_frame.items():
        expected = drawn_face_clip.reported(frame)
        if not expected:  # a "no face" event, never an invented emotion
            assert evs == [{"t": pytest.approx(frame / 25, abs=1e-3), "frame": frame,
                            "track_id": None, "face": False}]
            continue
        assert len(evs) == len(expected)
        for e in evs:
            assert set(e) == EVENT_KEYS and e["face"] is True
            assert e["t"] == pytest.approx(frame / 25, abs=1e-3)  # media time
            assert isinstance(e["track_id"], int) and len(e["box"]) == 4
            assert all(isinstance(v, int) for v in e["box"])
            assert sum(e["probs"].values()) == pytest.approx(1, abs=1e-3)
            assert e["confidence"] == max(e["smoothed"].values())
            if e["shown_label"] is not None:  # (None: still reading)
                assert e["shown_share"] == e["smoothed"][e["shown_label"]]  # its own
            assert e["smoothed_label"] in EMOTIONS and e["label"] in EMOTIONS


def test_summary_has_shares_per_track_and_the_counts(clip_run):
    out, report = clip_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(report.summary))
    # frames 0-9 have nobody; A comes at frame 10 and is reported from frame 12
    assert summary["frames_analysed"] == 60 and summary["no_face_frames"] == 12
    assert summary["unreadable_frames"] == 0 and summary["dropped_frames"] == 0
    assert not summary["source_lost"] and not summary["interrupted"]
    tracks = summary["tracks"]
    assert len(tracks) == 2
    first, second = (tracks[k] for k in sorted(tracks, key=int))
    assert first["dominant"] == "sad" and first["shares"]["sad"] == 1.0
    assert second["dominant"] == "happy" and second["shares"]["happy"] == 1.0
    assert first["duration"] == pytest.approx(33 / 25, abs=0.01)  # reported 12..44
    assert second["start"] == pytest.approx(27 / 25, abs=0.01)  # in view from frame 25
    assert summary["settings"]["crop_scale"] == pytest.approx(1.01)


def test_csv_plot_and_annotated_video(clip_run):
    out, report = clip_run
    with open(out / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report.events
    assert rows[0]["face"] == "0" and rows[0]["track_id"] == ""
    face_rows = [r for r in rows if r["face"] == "1"]
    assert {r["smoothed_label"] for r in face_rows} == {"sad", "happy"}
    assert float(face_rows[0]["p_sad"]) > 0.5
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cap = cv2.VideoCapture(str(out / "annotated.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    cap.release()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_frame_step_skips_frames_only_when_asked(drawn_face_clip, brightness_onnx_model):
    report = run(RunConfig(source=str(drawn_face_clip.path), model=brightness_onnx_model,
                           source_config=SourceConfig(frame_step=3)))
    assert report.summary["frames_analysed"] == 20


# --- bad input ------------------------------------------------------------------------------

def _corrupt_mjpg(src: Path, dst: Path, frames: list[int]) -> None:
    """Overwrite the start of the JPEG data of the given frames of an MJPG .avi."""
    data = bytearray(src.read_bytes())
    starts, pos = [], data.find(b"00dc")
    while pos >= 0:
        if data[pos + 8:pos + 10] == b"\xff\xd8":
            starts.append(pos + 8)
        pos = data.find(b"00dc", pos + 4)
    for i in frames:
        data[starts[i]:starts[i] + 600] = b"\x00" * 600
    dst.write_bytes(bytes(data))


def test_corrupt_frames_are_skipped_and_counted(drawn_face_clip, brightness_onnx_model,
                                                tmp_path):
    bad = tmp_path / "corrupt.avi"
    _corrupt_mjpg(drawn_face_clip.path, bad, [12, 13, 30, 59])
    report = run(RunConfig(source=str(bad), model=brightness_onnx_model,
                           jsonl=tmp_path / "e.jsonl"))
    assert report.summary["unreadable_frames"] == 4
    assert report.summary["frames_analysed"] == 56
    frames = {e["frame"] for e in _jsonl(tmp_path / "e.jsonl")}
    assert frames == set(range(60)) - {12, 13, 30, 59}


def test_missing_and_unopenable_sources_give_one_clear_error(tmp_path):
    with pytest.raises(MultiNetError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(MultiNetError, match="cannot open video .*junk.mp4"):
        open_source(junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MultiNetError, match="has no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(MultiNetError, match="cannot open camera"):
        LiveSource(lambda: MemoryCapture([]) if False else _closed(), "7")


def _closed() -> MemoryCapture:
    cap = MemoryCapture([])
    cap.release()
    return cap


def test_image_folder_with_unreadable_images_and_a_no_face_image(drawn_face_clip,
                                                                 brightness_onnx_model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_faces.png"), drawn_face_clip.render(30))
    cv2.imwrite(str(folder / "b_empty.jpg"), drawn_face_clip.render(0))
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cv2.imwrite(str(folder / "d_face.jpg"), drawn_face_clip.render(50))
    (folder / "notes.txt").write_text("not an image")
    source = open_source(folder)
    assert isinstance(source, ImageSource) and len(source.paths) == 4
    report = run(RunConfig(source=str(folder), model=brightness_onnx_model,
                           jsonl=tmp_path / "e.jsonl"), source=source)
    s = report.summary
    assert s["unreadable_frames"] == 1 and s["frames_analysed"] == 3
    assert s["images"] == ["a_faces.png", "b_empty.jpg", "c_broken.jpg", "d_face.jpg"]
    events = _jsonl(tmp_path / "e.jsonl")
    assert [e["frame"] for e in events] == [0, 0, 1, 3]
    assert events[2]["face"] is False
    assert len({e["track_id"] for e in events if e["face"]}) == 3  # no tracks across images


def test_a_single_image(drawn_face_clip, brightness_onnx_model, tmp_path):
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), drawn_face_clip.render(15))
    report = run(RunConfig(source=str(path), model=brightness_onnx_model))
    assert report.summary["kind"] == "image" and len(report.summary["tracks"]) == 1


# --- live sources ---------------------------------------------------------------------------

def test_live_capture_keeps_only_the_newest_frame(drawn_face_clip):
    frames = [drawn_face_clip.render(i) for i in (0, 30)]
    source = LiveSource(lambda: MemoryCapture(frames, loop=True), "sim", pace_fps=500)
    got = []
    try:
        for frame in source:
            got.append(frame.index)
            time.sleep(0.03)  # a slow analysis: the capture runs ahead
            if len(got) == 8:
                break
    finally:
        source.close()
    assert source.dropped > 0
    assert got == sorted(got) and got[-1] - got[0] > len(got)  # gaps: stale frames skipped


def test_a_live_source_that_stops_ends_the_run_with_outputs_saved(drawn_face_clip,
                                                                  brightness_onnx_model,
                                                                  tmp_path):
    frames = [drawn_face_clip.render(i) for i in range(20, 40)]
    opened = []

    def opener():
        opened.append(1)
        if len(opened) == 1:
            return MemoryCapture(frames, fail_after=20)
        return _closed()  # the camera never comes back

    source = LiveSource(lambda: _pace(opener()), "cam", retry_seconds=0.4)
    start = time.monotonic()
    run(RunConfig(source="cam", model=brightness_onnx_model, jsonl=tmp_path / "e.jsonl",
                  summary=tmp_path / "s.json"), source=source)
    assert time.monotonic() - start < 10
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["source_lost"] is True and s["live"] is True and len(opened) >= 2
    assert s["frames_analysed"] >= 1 and s["frames_analysed"] + s["dropped_frames"] == 20
    assert s["latency_ms"]["p50"] >= 0
    assert len(_jsonl(tmp_path / "e.jsonl")) >= s["frames_analysed"]


def _pace(cap, fps: float = 100.0):
    """Slow a capture down to about ``fps`` like a real camera."""
    if not cap.isOpened():
        return cap
    read = cap.read

    def paced():
        time.sleep(1 / fps)
        return read()

    cap.read = paced
    return cap


def test_a_live_source_reconnects_within_the_retry_time(drawn_face_clip):
    frames = [drawn_face_clip.render(30)] * 5
    calls = []

    def opener():
        calls.append(1)
        if len(calls) in (1, 3):
            return _pace(MemoryCapture(frames))  # 5 frames then a failed read
        return _closed()

    source = LiveSource(opener, "stream", retry_seconds=1.5, kind="stream")
    seen = sum(1 for _ in source)
    source.close()
    assert source.reconnects == 1 and source.lost
    assert seen + source.dropped == 10


def test_ctrl_c_saves_everything_so_far(drawn_face_clip, brightness_onnx_model, tmp_path):
    def interrupt(frame, faces):
        if frame.index == 20:
            raise KeyboardInterrupt

    report = run(RunConfig(source=str(drawn_face_clip.path), model=brightness_onnx_model,
                           jsonl=tmp_path / "e.jsonl", summary=tmp_path / "s.json",
                           plot=tmp_path / "t.png"), on_frame=interrupt)
    assert report.interrupted
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"] and summary["frames_analysed"] == 21  # frames 0..20
    assert max(e["frame"] for e in _jsonl(tmp_path / "e.jsonl")) == 20
    assert (tmp_path / "t.png").is_file()


def test_show_without_a_gui_says_so_before_any_work(brightness_onnx_model, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(MultiNetError, match="--show.*--video-out"):
        run(RunConfig(source="does-not-matter.mp4", model=brightness_onnx_model, show=True))


def test_a_file_played_live_drops_frames_it_cannot_keep_up_with(drawn_face_clip):
    source = open_source(drawn_face_clip.path, SourceConfig(live="on"))
    assert isinstance(source, LiveSource) and source.fps == pytest.approx(25)
    count = sum(1 for _ in source)
    source.close()
    assert count + source.dropped == 60 and not source.lost


def test_between_full_scans_faces_are_followed_and_a_leaving_face_is_not_invented(
        drawn_face_clip, brightness_onnx_model):
    detector = EmotionDetector(brightness_onnx_model, PipelineConfig(detect_every=7))
    counts = []
    for i in range(drawn_face_clip.n_frames):
        faces = detector.process(drawn_face_clip.render(i), t=i / 25)
        counts.append(len(faces))
        for face in faces:  # followed boxes stay on the moving face
            assert max(Box(*b).iou(Box(*face.box)) for b in drawn_face_clip.boxes(i)) > 0.7
    expected = [len(drawn_face_clip.reported(i)) for i in range(drawn_face_clip.n_frames)]
    # a new face waits at most for the next full scan (B appears at 25, scan at 28, and it
    # is reported once confirmed, at 30)...
    assert all(c == e for i, (c, e) in enumerate(zip(counts, expected)) if not 25 <= i < 30)
    # ...and a face that leaves (A after frame 44) is dropped at once, not carried
    assert counts[45] == 1
    assert detector.timings["full_detections"] < 35  # frames 0-9 have no face: scanned each


def test_ended_tracks_are_not_kept(drawn_face_clip, brightness_onnx_model):
    """Images of a folder (reset each time) and a long live run must not pile up tracks."""
    detector = EmotionDetector(brightness_onnx_model, PipelineConfig(detect_every=1))
    frame = drawn_face_clip.render(30)
    for i in range(20):
        assert len(detector.process(frame, t=float(i), still=True)) == 2
        detector.reset()
    assert detector.tracker.ended == [] and detector.tracker.tracks == []
    blank = np.zeros_like(frame)
    detector.process(frame, t=100.0)
    for i in range(10):  # the faces leave: their tracks end after max_missed rounds
        detector.process(blank, t=101.0 + i)
    assert detector.tracker.ended == [] and detector.tracker.tracks == []


def test_a_plot_path_without_an_image_suffix_fails_before_any_work(drawn_face_clip,
                                                                   brightness_onnx_model,
                                                                   tmp_path):
    from multinet_emotion.runtime.video import plot_timeline, run
    frames = []
    with pytest.raises(MultiNetError, match=r"--plot .*out.txt.*\.png"):
        run(RunConfig(str(drawn_face_clip.path), model=brightness_onnx_model,
                      plot=tmp_path / "out.txt"), on_frame=lambda f, faces: frames.append(f))
    assert frames == []
    with pytest.raises(MultiNetError, match="without a suffix"):
        plot_timeline({"tracks": {}}, tmp_path / "timeline")


def test_an_unwritable_csv_does_not_leave_the_jsonl_file_open(tmp_path, monkeypatch):
    from multinet_emotion.runtime.video import outputs as video_module
    opened = []
    real = video_module._open_output

    def recording(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(video_module, "_open_output", recording)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(MultiNetError, match="--csv"):
        video_module.EventWriter(tmp_path / "e.jsonl", tmp_path / "a-file" / "e.csv")
    assert len(opened) == 1 and opened[0].closed


class TurnCountingHaar:
    """The Haar detector, noting each upright scan ("u"), turned scans ("t") and local
    search of a tilted face ("n") the pipeline asks for."""

    def __init__(self) -> None:
        self.haar, self.calls = make_detector(DetectorConfig(kind="haar")), []

    def detect(self, frame):  # noqa: ANN001, ANN201 - the pipeline uses the parts below
        raise AssertionError("the pipeline scans upright and turned separately")

    def detect_upright(self, frame):  # noqa: ANN001, ANN201
        self.calls.append("u")
        return self.haar.detect_upright(frame)

    def detect_turned(self, frame):  # noqa: ANN001, ANN201
        self.calls.append("t")
        return self.haar.detect_turned(frame)

    def detect_near(self, frame, box):  # noqa: ANN001, ANN201
        if box.angle:
            self.calls.append("n")
        return self.haar.detect_near(frame, box)


def _leaning(face: np.ndarray, angle: float, dx: int = 0) -> np.ndarray:
    """A BGR 320x240 frame with the 110-px ``face`` at (100 + dx, 60), turned ``angle``
    degrees about its centre."""
    frame = np.tile(np.linspace(70, 170, 320).astype(np.uint8), (240, 1))
    frame[60:170, 100 + dx:210 + dx] = face
    m = cv2.getRotationMatrix2D((155 + dx, 115), angle, 1.0)
    return cv2.cvtColor(cv2.warpAffine(frame, m, (320, 240), borderMode=cv2.BORDER_REPLICATE),
                        cv2.COLOR_GRAY2BGR)


def test_turned_scans_only_now_and_then_while_nobody_is_in_view(brightness_onnx_model):
    counting = TurnCountingHaar()
    detector = EmotionDetector(brightness_onnx_model, PipelineConfig(tilt_every=3),
                               detector=counting)
    empty = np.full((240, 320, 3), 128, np.uint8)
    for i in range(7):
        assert detector.process(empty, t=i / 10) == []
    # every frame scanned upright; the turned scans on the 1st, 4th and 7th
    assert "".join(counting.calls) == "ut" + "u" + "u" + "ut" + "u" + "u" + "ut"
    counting.calls.clear()
    detector.turn_scans = False  # a busy server sheds them
    for i in range(7, 12):
        detector.process(empty, t=i / 10)
    assert set(counting.calls) == {"u"}
    # unrelated images (a folder): after reset() the next image gets its turned scans
    detector.turn_scans = True
    detector.process(empty, t=2.0)
    counting.calls.clear()
    detector.reset()
    detector.process(empty, t=3.0)
    assert counting.calls == ["u", "t"]


def test_a_face_leaning_over_is_found_turned_and_then_followed_cheaply(face_drawing,
                                                                       brightness_onnx_model):
    counting = TurnCountingHaar()
    detector = EmotionDetector(brightness_onnx_model,  # (this test is about scans: faces
                               PipelineConfig(detect_every=3,  # are reported at once)
                                              tracker=TrackerConfig(confirm_hits=1)),
                               detector=counting)
    face = face_drawing(110)
    (upright,) = detector.process(_leaning(face, 0), t=0.0)
    assert counting.calls == ["u"]
    # the learner leans 30 degrees: the local search misses, the whole-frame scan finds
    # nobody upright and then the face turned, in the same track
    counting.calls.clear()
    (leaning,) = detector.process(_leaning(face, 30), t=0.1)
    assert counting.calls == ["u", "t"] and leaning.track_id == upright.track_id
    track = detector.tracker.visible()[0]
    assert track.box.angle == -20.0
    # followed in its turned region; the periodic whole-frame scan (every 3rd frame) finds
    # nobody upright and keeps the face by that local search, with no turned scan
    counting.calls.clear()
    for i in range(2, 8):
        (reading,) = detector.process(_leaning(face, 30), t=i / 10)
        assert reading.track_id == upright.track_id
    assert "t" not in counting.calls and counting.calls.count("u") == 2
    assert counting.calls.count("n") == 6


def test_a_busy_server_sheds_the_turned_scans(brightness_onnx_model):
    from multinet_emotion.app.analysis import DetectorAnalyzer

    analyzer = DetectorAnalyzer(EmotionDetector(brightness_onnx_model))
    analyzer.pressed(True)  # frames were waiting for a slot
    assert analyzer.detector.turn_scans is False
    analyzer.pressed(False)
    assert analyzer.detector.turn_scans is True


def test_analysis_slots_say_busy_when_other_frames_fill_the_cores():
    import asyncio

    from multinet_emotion.app.analysis import AnalysisSlots

    async def scenario() -> list[tuple[int, bool]]:
        slots, seen = AnalysisSlots(3, cores=2), []
        gate = asyncio.Event()

        async def frame() -> None:
            async with slots:
                seen.append((slots.running, slots.busy))
                await gate.wait()

        tasks = [asyncio.create_task(frame()) for _ in range(4)]
        await asyncio.sleep(0.01)
        first = list(seen)  # the fourth waits for a slot
        gate.set()
        await asyncio.gather(*tasks)
        return first + [(len(seen), slots.running)]

    # the third frame at once finds two others on the two cores; at most 3 run at once,
    # the fourth gets its turn when one ends
    assert asyncio.run(scenario()) == [(1, False), (2, False), (3, True), (4, 0)]


def test_a_head_tilting_to_35_degrees_and_back_keeps_one_track(face_drawing,
                                                               brightness_onnx_model):

    face = face_drawing(110)

    # upright, leaning right to 35 degrees, held, over to -35, and back; drifting sideways
    angles = ([float(a) for a in np.linspace(0, 35, 20)] + [35.0] * 10
              + [float(a) for a in np.linspace(35, -35, 40)]
              + [float(a) for a in np.linspace(-35, 0, 20)])
    seen = {}
    for tilt in (0.0, 20.0):
        config = PipelineConfig(detector=DetectorConfig(kind="haar", tilt=tilt))
        detector = EmotionDetector(brightness_onnx_model, config)
        readings = [detector.process(_leaning(face, a, int(10 * np.sin(i / 7))), t=i / 10)
                    for i, a in enumerate(angles)]
        seen[tilt] = (sum(bool(r) for r in readings), {f.track_id for r in readings for f in r})
    found, ids = seen[20.0]
    assert found == len(angles) - 2 and len(ids) == 1  # every frame once confirmed, one track
    assert seen[0.0][0] < 0.8 * len(angles) and len(seen[0.0][1]) > 1  # upright scans only


def test_the_annotated_video_draws_a_tilted_face_turned():
    from multinet_emotion.emotions import Reading
    from multinet_emotion.runtime.video.outputs import annotate

    black = np.zeros((240, 320, 3), np.uint8)
    upright = Reading(0.0, (0.1, 0.1, 0.5, 0.1, 0.1, 0.1), 0.5, 1, (100, 60, 100, 100))
    tilted = Reading(0.0, (0.1, 0.1, 0.5, 0.1, 0.1, 0.1), 0.5, 1, (100, 60, 100, 100),
                     angle=-20.0)
    drawn_up, drawn_tilted = (annotate(black, [r]).any(axis=2) for r in (upright, tilted))
    assert drawn_up[110, 100] and drawn_up[160, 150]  # the upright box's left and bottom
    # the tilted square: same centre and size, turned 20 degrees, so its bottom side
    # crosses the centre column lower (110 + 50 / cos 20deg = 163) and its corners stick out
    assert not drawn_tilted[160, 150] and drawn_tilted[163, 150]
    corners = cv2.boxPoints(((150, 110), (100, 100), -20.0))
    x, y = np.round(corners[corners[:, 1].argmax()]).astype(int)  # its lowest corner
    assert y > 160 and drawn_tilted[y, x] and not drawn_up[y, x]
