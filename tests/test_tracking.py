"""Tracks across frames, smoothing over time, and timeline summaries."""

from __future__ import annotations

import numpy as np
import pytest

from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime.faces import Box
from multinet_emotion.runtime.tracking import Smoother, Timeline, Track, Tracker, TrackerConfig


def onehot(label: str, p: float = 1.0) -> np.ndarray:
    v = np.full(len(EMOTIONS), (1 - p) / (len(EMOTIONS) - 1))
    v[EMOTIONS.index(label)] = p
    return v


def test_ema_window_and_none_smoothing():
    ema = Smoother(TrackerConfig(smoothing="ema", alpha=0.5))
    np.testing.assert_allclose(ema.update(onehot("happy")), onehot("happy"))
    np.testing.assert_allclose(ema.update(onehot("sad")), 0.5 * onehot("happy") + 0.5 * onehot("sad"))
    window = Smoother(TrackerConfig(smoothing="window", window=2))
    window.update(onehot("happy"))
    window.update(onehot("sad"))
    np.testing.assert_allclose(window.update(onehot("sad")), onehot("sad"))
    none = Smoother(TrackerConfig(smoothing="none"))
    none.update(onehot("happy"))
    np.testing.assert_allclose(none.update(onehot("fear")), onehot("fear"))


@pytest.mark.parametrize("smoothing", ["ema", "window"])
def test_smoothing_stops_single_frame_flicker(smoothing):
    track = Track(1, Box(0, 0, 50, 50), 0.0, 0.0, Smoother(TrackerConfig(smoothing=smoothing)))
    raw, smooth = [], []
    sequence = ["happy"] * 8 + ["sad"] + ["happy"] * 3 + ["surprise"] + ["happy"] * 3
    for i, label in enumerate(sequence):
        track.set_probs(onehot(label, 0.8), t=i / 25)
        raw.append(track.label)
        smooth.append(track.smoothed_label)
    assert "sad" in raw and "surprise" in raw
    assert set(smooth) == {"happy"}
    assert track.confidence == pytest.approx(float(track.smoothed.max()))


def test_smoothed_label_follows_a_lasting_change_after_a_few_readings():
    track = Track(1, Box(0, 0, 50, 50), 0.0, 0.0, Smoother(TrackerConfig(alpha=0.3)))
    for i in range(10):
        track.set_probs(onehot("neutral", 0.9), i)
    switched_at = None
    for i in range(10):
        track.set_probs(onehot("angry", 0.9), 10 + i)
        if switched_at is None and track.smoothed_label == "angry":
            switched_at = i
    assert switched_at is not None and 1 <= switched_at <= 3  # lags, but not for long
    # without smoothing the label follows at once
    raw = Track(2, Box(0, 0, 50, 50), 0.0, 0.0, Smoother(TrackerConfig(smoothing="none")))
    raw.set_probs(onehot("neutral"), 0)
    raw.set_probs(onehot("angry"), 1)
    assert raw.smoothed_label == "angry"


def test_ids_stay_while_a_face_moves_and_new_faces_get_new_ids():
    tracker = Tracker(TrackerConfig(max_missed=2, confirm_hits=1))  # (confirmed at once)
    ids = []
    for i in range(20):  # face A drifts right 4 px per frame; face B arrives at frame 5
        boxes = [Box(50 + 4 * i, 60, 100, 100)]
        if i >= 5:
            boxes.append(Box(400, 100, 90, 90))
        ids.append([t.id for t in tracker.update(boxes, i / 25)])
    assert all(frame_ids[0] == 1 for frame_ids in ids)
    assert all(frame_ids[1] == 2 for frame_ids in ids[5:])


def test_a_fast_move_keeps_its_id_through_the_centre_fallback():
    tracker = Tracker()
    tracker.update([Box(100, 100, 100, 100)], 0.0)
    (track,) = tracker.update([Box(145, 100, 100, 100)], 0.04)  # IoU 0.38 -> matched by IoU
    (track2,) = tracker.update([Box(190, 110, 100, 100)], 0.08)
    assert track.id == track2.id == 1
    (other,) = tracker.update([Box(500, 300, 100, 100)], 0.12)  # far away: someone else
    assert other.id == 2


def test_a_face_that_disappears_ends_its_track():
    tracker = Tracker(TrackerConfig(max_missed=2, confirm_hits=1))  # (confirmed at once)
    tracker.update([Box(10, 10, 80, 80)], 0.0)
    for i in range(1, 3):  # missed twice: still alive (Haar misses a frame now and then)
        assert tracker.update([], i) == [] and len(tracker.tracks) == 1
        assert tracker.visible() == []
    (back,) = tracker.update([Box(12, 10, 80, 80)], 3)
    assert back.id == 1 and back.missed == 0
    for i in range(4, 7):
        tracker.update([], i)
    assert tracker.tracks == [] and [t.id for t in tracker.pop_ended()] == [1]
    (again,) = tracker.update([Box(12, 10, 80, 80)], 8)
    assert again.id == 2  # a new track, not the old one revived


def test_end_all_and_ids_keep_counting():
    tracker = Tracker()
    tracker.update([Box(0, 0, 50, 50), Box(100, 0, 50, 50)], 0)
    tracker.end_all()
    assert tracker.tracks == [] and len(tracker.pop_ended()) == 2
    assert [t.id for t in tracker.update([Box(0, 0, 50, 50)], 1)] == [3]


def test_refresh_rate_decides_when_an_emotion_is_due():
    track = Track(1, Box(0, 0, 50, 50), 0.0, 0.0, Smoother(TrackerConfig()))
    assert track.due(0.0, 10.0)  # never read yet
    track.set_probs(onehot("happy"), 0.0)
    assert not track.due(0.05, 10.0) and track.due(0.1, 10.0)
    assert track.due(0.01, 0.0)  # 0 = every frame


@pytest.mark.parametrize("kwargs, option", [
    ({"smoothing": "median"}, "smoothing"), ({"alpha": 0.0}, "--alpha"),
    ({"window": 0}, "--window"), ({"max_missed": -1}, "--max-missed"),
])
def test_bad_tracker_settings(kwargs, option):
    with pytest.raises(MultiNetError, match=option):
        Tracker(TrackerConfig(**kwargs))


def test_timeline_shares_durations_and_segments():
    timeline = Timeline()
    for i in range(10):  # 0.0 .. 0.9 s at 10 frames/s
        t = i / 10
        labels = {1: "happy" if i < 6 else "sad"}
        if i >= 5:
            labels[2] = "neutral"
        timeline.add_frame(t, labels)
    timeline.add_frame(1.0, {})
    s = timeline.summary()
    assert s["frames"] == 11 and s["no_face_frames"] == 1
    one, two = s["tracks"]["1"], s["tracks"]["2"]
    assert one["shares"]["happy"] == pytest.approx(0.6) and one["shares"]["sad"] == pytest.approx(0.4)
    assert one["dominant"] == "happy" and set(one["shares"]) == set(EMOTIONS)
    assert one["duration"] == pytest.approx(1.0) and two["duration"] == pytest.approx(0.5)
    assert [seg[2] for seg in one["segments"]] == ["happy", "sad"]
    assert one["segments"][0][:2] == pytest.approx([0.0, 0.6])
    assert two["shares"]["neutral"] == 1.0


def test_timeline_gaps_are_capped():
    timeline = Timeline(max_gap=1.0)
    timeline.add_frame(0.0, {1: "happy"})
    timeline.add_frame(0.5, {1: "happy"})
    timeline.add_frame(10.0, {1: "sad"})  # a 9.5 s gap counts as 1 s of happy
    track = timeline.summary()["tracks"]["1"]
    # happy 0.5 + 1.0 s; the last reading counts for the typical step, median(0.5, 1.0)
    assert track["shares"]["happy"] == pytest.approx(1.5 / 2.25, abs=1e-4)
    assert track["duration"] == pytest.approx(10.75)
