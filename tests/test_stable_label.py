"""The stable label: a new emotion is shown only once it has held for ``min_dwell`` seconds
and beats the shown one by ``hysteresis``; in the tracker, the detector's outputs, the
command lines and the web service."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from apiutil import join_code, sign_up
from fastapi.testclient import TestClient

from multinet_emotion.cli import main
from multinet_emotion.emotions import EMOTIONS, Reading
from multinet_emotion.errors import MultiNetError
from multinet_emotion.faces import Box
from multinet_emotion.server import Settings, create_app
from multinet_emotion.tracking import Smoother, StableLabel, Track, Tracker, TrackerConfig


def mix(**kw: float) -> np.ndarray:
    """Probabilities with the given classes, the rest shared equally."""
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return np.array([kw.get(e, rest) for e in EMOTIONS])


HAPPY_AHEAD = mix(happy=0.45, neutral=0.40)  # two close classes: a face between two states
NEUTRAL_AHEAD = mix(happy=0.40, neutral=0.45)
NEUTRAL = mix(neutral=0.8)
HAPPY = mix(happy=0.8)


def play(config: TrackerConfig, fps: float, seconds: float,
         probs_at: Callable[[float], np.ndarray]) -> list[tuple[float, str, str]]:
    """Feed one track a reading per frame; (t, smoothed_label, stable_label) per frame."""
    track = Track(1, Box(0, 0, 50, 50), 0.0, 0.0, Smoother(config), labeler=StableLabel(config))
    out = []
    for i in range(round(seconds * fps)):
        t = i / fps
        track.set_probs(probs_at(t), t)
        out.append((t, track.smoothed_label, track.stable_label))
    return out


def switches(readings: list[tuple[float, str, str]]) -> list[tuple[float, str]]:
    """(time, new label) of each change of the stable label."""
    return [(t, label) for (_, _, before), (t, _, label) in zip(readings, readings[1:])
            if label != before]


def alternating(t: float) -> np.ndarray:  # the top class changes every 0.5 s
    return HAPPY_AHEAD if int(t / 0.5) % 2 == 0 else NEUTRAL_AHEAD


def step(at: float, before: np.ndarray = NEUTRAL, after: np.ndarray = HAPPY,
         until: float = math.inf) -> Callable[[float], np.ndarray]:
    return lambda t: after if at - 1e-9 <= t < until - 1e-9 else before


# --- the state machine ------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    TrackerConfig(),  # the defaults: EMA, 1 s dwell, 0.1 margin
    TrackerConfig(smoothing="none", min_dwell=1.0, hysteresis=0.0),  # the dwell alone
    TrackerConfig(smoothing="none", min_dwell=0.0, hysteresis=0.1),  # the margin alone
], ids=["defaults", "dwell-only", "hysteresis-only"])
def test_two_close_classes_alternating_every_half_second_keep_one_label(config):
    readings = play(config, fps=30, seconds=10, probs_at=alternating)
    if config.smoothing == "none":  # the top class really does flip every half second
        assert len({smoothed for _, smoothed, _ in readings}) == 2
    assert {stable for _, _, stable in readings} == {"happy"}  # the first reading's top class
    assert switches(readings) == []


def test_a_real_change_held_for_1_5_s_switches_once_after_the_dwell():
    # neutral for 3 s, then happy for 1.5 s, then neutral again for a moment
    change = step(3.0, until=4.5)
    exact = play(TrackerConfig(smoothing="none"), fps=30, seconds=4.8, probs_at=change)
    assert switches(exact) == [(pytest.approx(4.0), "happy")]  # 3.0 + min_dwell
    # with the default EMA the smoothed top class changes a few frames late, then the dwell
    smoothed = play(TrackerConfig(), fps=30, seconds=4.8, probs_at=change)
    ((t, label),) = switches(smoothed)
    assert label == "happy" and 4.0 <= t <= 4.2
    flipped = next(t for t, s, _ in smoothed if s == "happy")
    assert t == pytest.approx(flipped + 1.0)  # the dwell is counted from the flip


def test_a_change_shorter_than_the_dwell_is_not_shown():
    readings = play(TrackerConfig(), fps=30, seconds=6, probs_at=step(3.0, until=3.8))
    assert "happy" in {s for _, s, _ in readings} and switches(readings) == []


def test_the_margin_must_be_met_too():
    # happy on top for 3 s, but only 0.05 above neutral: below the 0.1 margin, never shown
    readings = play(TrackerConfig(smoothing="none"), fps=10, seconds=6,
                    probs_at=step(2.0, before=NEUTRAL_AHEAD, after=HAPPY_AHEAD))
    assert switches(readings) == []
    # a margin reached after the dwell switches at once
    late = play(TrackerConfig(smoothing="none"), fps=10, seconds=6,
                probs_at=lambda t: NEUTRAL_AHEAD if t < 2 else HAPPY_AHEAD if t < 4 else HAPPY)
    assert switches(late) == [(pytest.approx(4.0), "happy")]


def test_zero_dwell_and_zero_hysteresis_follow_the_top_class():
    rng = np.random.default_rng(0)
    noisy = {round(i / 30, 6): rng.dirichlet(np.ones(len(EMOTIONS))) for i in range(300)}
    readings = play(TrackerConfig(min_dwell=0.0, hysteresis=0.0), fps=30, seconds=10,
                    probs_at=lambda t: noisy[round(t, 6)])
    assert all(stable == smoothed for _, smoothed, stable in readings)
    assert len(switches(readings)) > 20  # it did move


@pytest.mark.parametrize("smoothing, tolerance", [("none", 1e-9), ("ema", 0.15)])
def test_10_and_30_frames_per_second_switch_at_the_same_time(smoothing, tolerance):
    """The dwell is measured in the readings' own time, not in frames or the wall clock.
    (The EMA weighs readings, not seconds, so its own lag differs by a frame or two.)"""
    times = {}
    for fps in (10, 30):
        readings = play(TrackerConfig(smoothing=smoothing), fps=fps, seconds=6,
                        probs_at=step(2.0))
        ((times[fps], label),) = switches(readings)
        assert label == "happy"
    assert times[10] == pytest.approx(times[30], abs=tolerance)
    if smoothing == "none":
        assert times[10] == pytest.approx(3.0)


def test_a_new_track_takes_its_top_class_at_once_and_tracks_get_the_settings():
    tracker = Tracker(TrackerConfig(min_dwell=2.5, hysteresis=0.2))
    (track,) = tracker.update([Box(0, 0, 80, 80)], 0.0)
    assert track.stable_label is None  # not read yet
    track.set_probs(NEUTRAL_AHEAD, 0.0)
    assert track.stable_label == "neutral"
    assert (track.labeler.min_dwell, track.labeler.hysteresis) == (2.5, 0.2)
    labeler = StableLabel(TrackerConfig())
    assert labeler.update(HAPPY, 0.0) == "happy"
    labeler.reset()  # the face left: the next one is taken at once
    assert labeler.update(NEUTRAL, 0.1) == "neutral"


@pytest.mark.parametrize("kwargs, option", [
    ({"min_dwell": -0.5}, "--min-dwell"), ({"min_dwell": 61.0}, "--min-dwell"),
    ({"min_dwell": float("nan")}, "--min-dwell"), ({"hysteresis": -0.1}, "--hysteresis"),
    ({"hysteresis": 1.0}, "--hysteresis"), ({"hysteresis": float("nan")}, "--hysteresis"),
])
def test_bad_stable_label_settings(kwargs, option):
    with pytest.raises(MultiNetError, match=option) as e:
        Tracker(TrackerConfig(**kwargs))
    assert "\n" not in str(e.value)


# --- the detector's outputs and the command lines ------------------------------------------

def test_events_carry_the_stable_label_beside_the_others():
    from multinet_emotion.detect import track_reading
    from multinet_emotion.video import CSV_FIELDS, event_to_row, face_event

    track = Track(3, Box(1, 2, 30, 30), 0.0, 0.0, Smoother(TrackerConfig(smoothing="none")),
                  labeler=StableLabel(TrackerConfig()))
    track.set_probs(NEUTRAL, 0.0)
    track.set_probs(HAPPY, 0.1)  # the top class changed, the shown label not yet
    face = track_reading(track, 0.1)
    assert (face.raw_label, face.label, face.stable_label) == ("happy", "happy", "neutral")
    assert face.shown_label == "neutral"
    event = face_event(face, 3)
    assert event["stable_label"] == "neutral" and event["smoothed_label"] == "happy"
    assert event["probs"]["happy"] == pytest.approx(0.8)  # probabilities untouched
    assert "stable_label" in CSV_FIELDS and event_to_row(event)["stable_label"] == "neutral"


@pytest.mark.parametrize("option, value", [("--min-dwell", "-1"), ("--hysteresis", "1.5")])
def test_detect_refuses_bad_stable_label_options(drawn_face_clip, brightness_onnx_model, capfd,
                                                 option, value):
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), option, value])
    assert rc == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0], err


def test_detect_records_the_settings(drawn_face_clip, brightness_onnx_model, tmp_path, capsys):
    assert main(["detect", "--source", str(drawn_face_clip.path), "--model",
                 str(brightness_onnx_model), "--summary", str(tmp_path / "summary.json"),
                 "--min-dwell", "0.5", "--hysteresis", "0"]) == 0
    tracker = json.loads((tmp_path / "summary.json").read_text())["settings"]["tracker"]
    assert tracker["min_dwell"] == 0.5 and tracker["hysteresis"] == 0.0


# --- the web service ----------------------------------------------------------------------

def test_server_settings_from_the_environment_and_the_command_line(capfd):
    s = Settings.from_env({"MULTINET_MIN_DWELL": "2", "MULTINET_HYSTERESIS": "0.05"})
    assert (s.min_dwell, s.hysteresis) == (2.0, 0.05)
    assert Settings.from_env({}).min_dwell is None  # the runtime's default
    assert Settings.from_env({"MULTINET_MIN_DWELL": "2"}, min_dwell=0.0).min_dwell == 0.0
    for env, message in (({"MULTINET_MIN_DWELL": "-1"}, "MULTINET_MIN_DWELL -1.0: must be 0 to"),
                         ({"MULTINET_HYSTERESIS": "1"}, "MULTINET_HYSTERESIS 1.0: must be at "),
                         ({"MULTINET_MIN_DWELL": "soon"}, "not a valid float")):
        with pytest.raises(MultiNetError, match=message):
            Settings.from_env(env)
    assert main(["serve", "--min-dwell", "100", "--check"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--min-dwell 100.0: must be 0 to 60 seconds" in err[0], err


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


@pytest.mark.parametrize("settings, steady", [({}, True),
                                              ({"min_dwell": 0.0, "hysteresis": 0.0}, False)])
def test_client_samples_get_a_stable_label_live_and_stored(tmp_path, settings, steady):
    """Samples of a client that classifies on its own: the session steadies their label."""
    clock = _Clock()
    with _client(tmp_path, clock, **settings) as client:
        h, sid = _signup(client)
        svc = client.app.state.service.ingest
        shown = []
        for i in range(20):  # 4 samples per second; two close classes trade places every 0.5 s
            batch = []
            for _ in range(2):
                clock.t += 0.25
                batch.append({"t": clock.t, "probs": _as_dict(alternating(i * 0.5))})
            r = client.post(f"/api/sessions/{sid}/samples", json={"samples": batch},
                            headers=h)
            assert r.status_code == 200, r.text
            current = svc.session(None, sid).current.sample_json()
            shown.append(current["label"])
            top = max(current["probs"], key=current["probs"].get)
            assert current["probs"][top] == pytest.approx(0.45)  # the probabilities as sent
        tl = client.get("/api/me/timeline", headers=h).json()["samples"]
        if steady:
            assert set(shown) == {"happy"} and {s["label"] for s in tl} == {"happy"}
            ov = client.get("/api/classes/c1/overview",
                            headers={"Authorization": "Bearer " + "x" * 20}).json()
            assert ov["learners"][0]["current"]["label"] == "happy"  # the dashboard's card
        else:  # 0/0: the label follows the top class
            assert shown == ["happy", "neutral"] * 10
        # a real change is shown once it has held for the dwell (1 s by default)
        for _ in range(6):
            clock.t += 0.25
            client.post(f"/api/sessions/{sid}/samples", headers=h,
                        json={"samples": [{"t": clock.t, "probs": _as_dict(mix(sad=0.8))}]})
            shown.append(svc.session(None, sid).current.shown_label)
        assert shown[-6:] == (["happy"] * 4 + ["sad"] * 2 if steady else ["sad"] * 6)
        svc.store.close()


class _Analyzer:
    """One face whose smoothed top class is 'happy' but whose stable label is 'neutral'."""

    def __init__(self, clock: _Clock):
        self.clock = clock

    def analyze(self, frame, t):  # noqa: ANN001
        self.clock.t += 0.5
        return [Reading(t, tuple(HAPPY_AHEAD), 0.45, track_id=1, box=(4, 4, 40, 40),
                        stable_label="neutral")]


def test_frames_analysed_by_the_server_show_and_store_the_detectors_stable_label(tmp_path):
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
                assert msg["faces"][0]["stable_label"] == "neutral"
                assert msg["faces"][0]["smoothed_label"] == "happy"
                assert msg["current"]["label"] == "neutral"  # what the pages show
                assert msg["current"]["probs"]["happy"] == pytest.approx(0.45)
        svc = client.app.state.service.ingest
        svc.end_session(svc.session(None, sid).learner_id, sid)  # flush the last sample
        tl = client.get("/api/me/timeline", headers=h).json()["samples"]
        assert tl and {s["label"] for s in tl} == {"neutral"}
        assert all(s["probs"]["happy"] == pytest.approx(0.45) for s in tl)
        svc.store.close()
