"""The label people are shown: the label filter (a sticky hidden-Markov filter over the six
emotions), tracks reported once confirmed, and the shown label's own percentage, in the
tracker, the detector's outputs, the command line and the web service."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from apiutil import join_code, sign_up
from fastapi.testclient import TestClient

from multinet_emotion.app import Settings, create_app
from multinet_emotion.cli import main
from multinet_emotion.emotions import EMOTIONS, Reading
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime.faces import Box
from multinet_emotion.runtime.label_filter import FilterConfig, LabelFilter
from multinet_emotion.runtime.tracking import Smoother, Timeline, Track, Tracker, TrackerConfig


def mix(**kw: float) -> np.ndarray:
    """Probabilities with the given classes, the rest shared equally."""
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return np.array([kw.get(e, rest) for e in EMOTIONS])


NEUTRAL = mix(neutral=0.8)
HAPPY = mix(happy=0.8)
NOISY = mix(angry=0.45, neutral=0.25)  # a bad frame: another class leads, not by much
HAPPY_AHEAD = mix(happy=0.45, neutral=0.40)  # two close classes: a face between two states
NEUTRAL_AHEAD = mix(happy=0.40, neutral=0.45)


def play(fps: float, seconds: float, probs_at: Callable[[float], np.ndarray],
         config: FilterConfig | None = None) -> list[tuple[float, str | None]]:
    """(t, shown label) of one filter fed a reading per frame."""
    f = LabelFilter(config)
    return [(i / fps, f.update(probs_at(i / fps), i / fps)) for i in range(round(seconds * fps))]


def first(readings: list[tuple[float, str | None]], label: str, after: float = 0.0) -> float:
    return next(t for t, shown in readings if t >= after and shown == label)


# --- the filter ---------------------------------------------------------------------------

def test_a_new_face_reads_before_it_shows_a_label_and_never_latches_its_first_frame():
    """A noisy first frame ("angry 31%") is not shown: the face is read for min_evidence,
    and then its steady expression is the label."""
    seq = play(10, 3, lambda t: NOISY if t == 0 else NEUTRAL)
    assert seq[0][1] is None  # "reading..."
    assert {shown for t, shown in seq if t >= FilterConfig().min_evidence} == {"neutral"}
    assert "angry" not in {shown for _, shown in seq}


def test_a_still_image_is_labelled_at_once():
    assert LabelFilter().update(HAPPY, 0.0, settle=True) == "happy"


def test_flickers_of_a_third_class_change_nothing():
    """The old dwell restarted whenever a third class took the top for a frame; here one-
    frame flickers of any class neither show nor stop a real change."""
    def probs(t: float) -> np.ndarray:
        if round(t * 10) % 7 == 3:  # a bad frame now and then
            return mix(angry=0.6) if round(t * 10) % 2 else mix(surprise=0.6)
        return NEUTRAL if t < 3 else HAPPY
    seq = play(10, 6, probs)
    shown = [s for t, s in seq if t >= 0.3]
    assert set(shown) == {"neutral", "happy"}
    assert sum(a != b for a, b in zip(shown, shown[1:])) == 1  # one change: the real one
    assert first(seq, "happy") - 3.0 <= 0.5  # and it is followed at once


def test_two_close_classes_trading_places_keep_one_label():
    seq = play(10, 10, lambda t: HAPPY_AHEAD if int(t / 0.5) % 2 == 0 else NEUTRAL_AHEAD)
    shown = [s for t, s in seq if t >= 0.3]
    assert sum(a != b for a, b in zip(shown, shown[1:])) <= 2


def test_a_clear_lead_is_followed_even_when_another_class_led_first():
    """The calm talker: once neutral leads happy clearly, neutral is shown within a second
    (the old label could stay happy for ever)."""
    seq = play(10, 6, lambda t: mix(happy=0.6, neutral=0.3) if t < 2
               else mix(neutral=0.7, happy=0.2))
    assert first(seq, "neutral") - 2.0 <= 1.0
    assert {s for t, s in seq if t >= 3.0} == {"neutral"}


@pytest.mark.parametrize("fps", [2, 5, 30])
def test_any_frame_rate_switches_at_about_the_same_time(fps):
    """Stay and evidence are set per second: a face read at 2 or 30 frames a second shows a
    change within a frame of 10 frames a second's."""
    def step(t: float) -> np.ndarray:
        return NEUTRAL if t < 2.0 else mix(happy=0.5, neutral=0.3)
    at_10 = first(play(10, 5, step), "happy", 2.0)
    at_fps = first(play(fps, 5, step), "happy", 2.0)
    assert abs(at_fps - at_10) <= 1.0 / min(fps, 10) + 1e-9, (at_10, at_fps)


def test_a_face_away_for_longer_than_the_gap_is_read_afresh():
    f = LabelFilter()
    for i in range(10):
        f.update(HAPPY, i / 10)
    assert f.label == "happy"
    assert f.update(NEUTRAL, 0.9 + FilterConfig().gap + 0.1) is None  # reading again
    assert f.update(NEUTRAL, 3.2) == "neutral"


def test_the_state_survives_a_round_trip():
    a, b = LabelFilter(), LabelFilter()
    for i in range(5):
        a.update(HAPPY, i / 10)
    b.restore(json.loads(json.dumps(a.state())))
    assert b.update(NEUTRAL, 0.5) == a.update(NEUTRAL, 0.5)
    assert np.allclose(a.posterior, b.posterior)


@pytest.mark.parametrize("kwargs, where", [({"stay": 1.0}, "--label-stay"),
                                           ({"evidence": 0.0}, "--label-evidence"),
                                           ({"margin": -0.1}, "--label-margin"),
                                           ({"min_evidence": 20.0}, "--min-evidence")])
def test_bad_filter_settings(kwargs, where):
    with pytest.raises(MultiNetError, match=where) as e:
        FilterConfig(**kwargs)
    assert "\n" not in str(e.value)


# --- tracks: confirmed before they are reported, their real span ---------------------------

def test_a_box_seen_once_never_becomes_a_track():
    tracker = Tracker(TrackerConfig())
    lamp, face = Box(200, 10, 40, 40), Box(10, 10, 60, 60)
    tracker.update([face, lamp], 0.0)
    for i in range(1, 4):
        tracks = tracker.update([face], i / 10)
    assert [t.confirmed for t in tracks] == [True]
    assert [t.id for t in tracker.tracks] == [tracks[0].id]  # the lamp's ended at its miss
    assert not Track(9, lamp, 0, 0, Smoother(TrackerConfig())).confirmed


def test_the_detector_reports_confirmed_faces_only(monkeypatch):
    from multinet_emotion.runtime.detect import EmotionDetector, PipelineConfig

    class Faces:  # a face in every frame, a lamp in the first
        def __init__(self) -> None:
            self.n = 0

        def detect(self, frame: np.ndarray) -> list[Box]:
            self.n += 1
            return [Box(10, 10, 60, 60)] + ([Box(200, 10, 40, 40)] if self.n == 1 else [])

    class Model:
        input_size, crop_scale, path = 48, 1.0, Path("m.onnx")

        def predict(self, crops: np.ndarray) -> np.ndarray:
            return np.tile(HAPPY, (len(crops), 1))

    from multinet_emotion.runtime import detect as detect_module
    monkeypatch.setattr(detect_module, "EmotionClassifier", Model)
    det = EmotionDetector(Model(), PipelineConfig(detect_every=1), detector=Faces())
    frame = np.zeros((120, 320, 3), np.uint8)
    got = [det.process(frame, i / 10) for i in range(5)]
    assert [len(r) for r in got] == [0, 0, 1, 1, 1]  # the face from its third frame
    assert {r[0].track_id for r in got[2:]} == {1}
    assert got[2][0].shown_label == "happy" and got[2][0].share == pytest.approx(0.8)
    det.reset()  # a still image: reported and labelled at once
    (still,) = det.process(frame, 9.0, still=True)
    assert still.shown_label == "happy"


def test_a_tracks_duration_is_its_real_span():
    timeline = Timeline()
    for i in range(20):  # 2 s at 10 frames a second; track 2 is seen in one frame
        timeline.add_frame(i / 10, {1: None if i < 2 else "happy", **({2: "sad"} if i == 5 else {})})
    tracks = timeline.summary()["tracks"]
    assert tracks["1"]["duration"] == pytest.approx(2.0)
    assert tracks["1"]["reading"] == pytest.approx(0.2)  # shown no label yet
    assert tracks["1"]["shares"]["happy"] == 1.0
    assert tracks["2"]["duration"] == pytest.approx(0.1)  # was reported as 1.0 s


# --- the shown label's own percentage, in every output -------------------------------------

def _reading() -> Reading:
    """A face whose label shown is neutral while happy leads the smoothed probabilities."""
    return Reading(1.0, tuple(mix(happy=0.47, neutral=0.26)), 0.47, 3, (1, 2, 30, 30),
                   tuple(HAPPY), "neutral")


def test_the_percentage_shown_is_the_shown_labels_own():
    from multinet_emotion.runtime.video import CSV_FIELDS, event_to_row, face_event
    from multinet_emotion.runtime.video.outputs import overlay_text

    r = _reading()
    assert r.share == pytest.approx(0.26)
    event = face_event(r, 3)
    assert (event["shown_label"], event["shown_share"]) == ("neutral", 0.26)
    assert event["confidence"] == 0.47 and event["smoothed_label"] == "happy"
    row = event_to_row(event)
    assert "shown_share" in CSV_FIELDS and (row["shown_label"], row["shown_share"]) == \
        ("neutral", 0.26)
    sample = r.sample_json()
    assert (sample["label"], sample["share"]) == ("neutral", pytest.approx(0.26))
    assert overlay_text(r) == "#3 neutral 26%"
    reading = Reading(1.0, tuple(HAPPY), 0.8, 4, (1, 2, 30, 30))
    assert overlay_text(reading) == "#4 reading..." and reading.share is None
    assert face_event(reading, 1)["shown_share"] is None


# --- the command line ---------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--label-stay", "1.5"), ("--confirm-hits", "0")])
def test_detect_refuses_bad_label_options(drawn_face_clip, brightness_onnx_model, capfd,
                                          option, value):
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), option, value])
    assert rc == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0], err


def test_detect_records_the_settings(drawn_face_clip, brightness_onnx_model, tmp_path, capsys):
    assert main(["detect", "--source", str(drawn_face_clip.path), "--model",
                 str(brightness_onnx_model), "--summary", str(tmp_path / "summary.json"),
                 "--label-stay", "0.5", "--confirm-hits", "2"]) == 0
    tracker = json.loads((tmp_path / "summary.json").read_text())["settings"]["tracker"]
    assert tracker["label"]["stay"] == 0.5 and tracker["confirm_hits"] == 2


# --- the web service ----------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _client(tmp_path: Path, clock: _Clock, analyzer_factory=None, **settings) -> TestClient:
    s = Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}", instructor_token="x" * 20,
                 max_frame_rate=1000, signup_rate=0, session_rate=0, **settings)
    return TestClient(create_app(s, analyzer_factory=analyzer_factory, clock=clock,
                                 rng=random.Random(0)))


def _signup(client: TestClient) -> tuple[dict[str, str], str]:
    token = sign_up(client, "Ada")["token"]
    h = {"Authorization": f"Bearer {token}"}
    code = join_code(client, {"Authorization": "Bearer " + "x" * 20}, "c1")
    sid = client.post("/api/sessions", json={"join_code": code}, headers=h).json()["id"]
    return h, sid


def _as_dict(p: np.ndarray) -> dict[str, float]:
    return {e: float(v) for e, v in zip(EMOTIONS, p)}


def test_client_samples_are_labelled_by_the_same_filter_live_and_stored(tmp_path):
    """Samples without a label: the session's filter labels them, as a track's would; the
    stored second carries the label shown most in it."""
    clock = _Clock()
    with _client(tmp_path, clock) as client:
        h, sid = _signup(client)
        svc = client.app.state.context.service.ingest
        reference = LabelFilter()
        shown, expected = [], []
        for i in range(24):  # 4 samples a second: neutral, a noisy frame, then happy
            clock.t += 0.25
            p = NEUTRAL if i < 10 else HAPPY
            if i == 5:
                p = NOISY
            r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                            json={"samples": [{"t": clock.t, "probs": _as_dict(p)}]})
            assert r.status_code == 200, r.text
            shown.append(svc.session(None, sid).current.shown_label)
            expected.append(reference.update(p, clock.t))
        assert shown == expected and "angry" not in shown and shown[-1] == "happy"
        tl = client.get("/api/me/timeline", headers=h).json()["samples"]
        assert [s["label"] for s in tl][-2:] == ["happy", "happy"]
        assert all(s["share"] == pytest.approx(s["probs"][s["label"]]) for s in tl
                   if s["label"])
        svc.store.close()


def test_a_labelled_sample_keeps_its_label_and_a_half_empty_second_is_no_face(tmp_path):
    clock = _Clock()
    with _client(tmp_path, clock) as client:
        h, sid = _signup(client)
        samples = [{"t": clock.t + 0.1, "probs": _as_dict(HAPPY), "label": "neutral"},
                   {"t": clock.t + 0.6, "probs": _as_dict(HAPPY), "label": None},
                   {"t": clock.t + 1.1, "probs": _as_dict(HAPPY), "label": "neutral"},
                   {"t": clock.t + 1.6, "face": False}]
        clock.t += 2
        assert client.post(f"/api/sessions/{sid}/samples", headers=h,
                           json={"samples": samples}).status_code == 200
        tl = client.get("/api/me/timeline", headers=h).json()["samples"]
        assert [(s["face"], s["label"]) for s in tl] == [(True, "neutral"), (False, None)]
        bad = client.post(f"/api/sessions/{sid}/samples", headers=h, json={"samples": [
            {"probs": _as_dict(HAPPY), "label": "disgust"}]})
        assert bad.status_code == 422
        client.app.state.context.service.ingest.store.close()


class _Analyzer:
    """One face whose smoothed top class is 'happy' but whose shown label is 'neutral'."""

    def __init__(self, clock: _Clock):
        self.clock = clock

    def analyze(self, frame, t):  # noqa: ANN001
        self.clock.t += 0.5
        return [Reading(t, tuple(HAPPY_AHEAD), 0.45, track_id=1, box=(4, 4, 40, 40),
                        shown_label="neutral")]


def test_frames_analysed_by_the_server_show_and_store_the_detectors_label(tmp_path):
    import cv2

    clock = _Clock()
    jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    with _client(tmp_path, clock, analyzer_factory=lambda: _Analyzer(clock)) as client:
        h, sid = _signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            ws.send_json({"type": "hello", "token": h["Authorization"][7:], "session_id": sid})
            assert ws.receive_json()["type"] == "ready"
            for _ in range(6):
                ws.send_bytes(jpeg)
                msg = ws.receive_json()
                assert msg["type"] == "result", msg
                face = msg["faces"][0]
                assert (face["shown_label"], face["smoothed_label"]) == ("neutral", "happy")
                assert face["shown_share"] == pytest.approx(0.40)  # neutral's, not happy's
                assert msg["current"]["label"] == "neutral"  # what the pages show
                assert msg["current"]["share"] == pytest.approx(0.40)
        svc = client.app.state.context.service.ingest
        svc.end_session(svc.session(None, sid).learner_id, sid)  # flush the last sample
        tl = client.get("/api/me/timeline", headers=h).json()["samples"]
        assert tl and {s["label"] for s in tl} == {"neutral"}
        ov = client.get("/api/classes/c1/overview",
                        headers={"Authorization": "Bearer " + "x" * 20}).json()
        learner = ov["learners"][0]
        assert learner["current"] is None and not learner["live"]  # the session ended
        assert learner["mix"]["session"]["shares"]["neutral"] == 1.0  # what stays: the mix
        svc.store.close()
