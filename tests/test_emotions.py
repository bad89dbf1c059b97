"""The one value a reading is (emotions.Reading): what it accepts, what it refuses, its JSON."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from multinet_emotion.emotions import EMOTIONS, Reading
from multinet_emotion.errors import MultiNetError

SAD = (0.1, 0.05, 0.05, 0.05, 0.7, 0.05)
HAPPY = (0.02, 0.02, 0.85, 0.07, 0.02, 0.02)


def test_a_detector_reading_and_its_labels() -> None:
    r = Reading(1.5, np.array(SAD, np.float32), 0.7, track_id=np.int64(3),
                box=(np.int32(4), 5, 40, 41), raw_probs=list(HAPPY), shown_label="neutral")
    assert isinstance(r.probs, tuple) and all(type(p) is float for p in r.probs)
    assert r.probs == pytest.approx(SAD) and r.box == (4, 5, 40, 41) and r.track_id == 3
    assert (r.raw_label, r.label, r.shown_label) == ("happy", "sad", "neutral")
    assert r.share == pytest.approx(0.05)  # the shown label's own probability
    assert r.face and r.fresh
    still = Reading(0.0, SAD)  # no label decided: still reading, no share
    assert still.shown_label is None and still.share is None and still.label == "sad"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.t = 2.0  # type: ignore[misc]
    assert dataclasses.replace(r, t=2.0).t == 2.0


def test_no_face_is_a_reading_without_probabilities() -> None:
    r = Reading(3, None)
    assert r.t == 3.0 and not r.face and r.label is None and r.shown_label is None
    assert r.sample_json() == {"t": 3.0, "face": False, "probs": None, "label": None,
                               "share": None, "confidence": None}
    with pytest.raises(ValueError):
        r.face_json()
    for extra in ({"confidence": 0.5}, {"track_id": 1}, {"box": (0, 0, 1, 1)},
                  {"raw_probs": SAD}, {"shown_label": "sad"}):
        with pytest.raises(MultiNetError, match="no face"):
            Reading(3.0, None, **extra)


@pytest.mark.parametrize("kwargs, words", [
    ({"probs": SAD[:5]}, "has 5 values"),
    ({"probs": SAD + (0.0,)}, "has 7 values"),
    ({"probs": ("a",) * 6}, "must be 6 numbers"),
    ({"probs": (math.nan,) + SAD[1:]}, "angry must be between 0 and 1"),
    ({"probs": (math.inf,) + SAD[1:]}, "between 0 and 1"),
    ({"probs": (-0.1, 0.15) + SAD[2:]}, "between 0 and 1"),
    ({"probs": (0.5,) * 6}, "must sum to 1"),
    ({"probs": SAD, "raw_probs": (0.2,) * 6}, "raw_probs must sum to 1"),
    ({"probs": SAD, "confidence": 1.5}, "confidence"),
    ({"probs": SAD, "confidence": math.nan}, "confidence"),
    ({"probs": SAD, "shown_label": "disgust"}, "shown_label 'disgust'"),
    ({"probs": SAD, "box": (1, 2, 3)}, "box"),
    ({"probs": SAD, "box": (1, 2, -3, 4)}, "box"),
    ({"t": math.nan, "probs": SAD}, "t must be a finite"),
])
def test_bad_readings_are_refused_with_one_clear_message(kwargs, words) -> None:
    kwargs = {"t": 1.0, **kwargs}
    with pytest.raises(MultiNetError, match=words) as e:
        Reading(**kwargs)
    assert "\n" not in str(e.value)


def test_the_json_at_the_edges() -> None:
    r = Reading(2.0, (0.123456, 0.1, 0.1, 0.1, 0.476544, 0.1), 0.476544, track_id=7,
                box=(1, 2, 3, 4), raw_probs=HAPPY, shown_label="sad")
    j = r.face_json()
    assert list(j) == ["track_id", "box", "angle", "probs", "label", "smoothed",
                       "smoothed_label", "shown_label", "shown_share", "confidence"]
    assert (j["shown_label"], j["shown_share"]) == ("sad", 0.4765)
    assert j["angle"] == 0.0  # upright
    assert Reading(2.0, SAD, box=(1, 2, 3, 4), angle=-20).face_json()["angle"] == -20.0
    assert j["probs"] == dict(zip(EMOTIONS, HAPPY)) and j["label"] == "happy"  # the raw one
    assert j["smoothed"]["angry"] == 0.1235 and j["smoothed_label"] == "sad"
    assert j["confidence"] == 0.4765 and j["box"] == [1, 2, 3, 4]
    s = r.sample_json()  # the stored and live shape: not rounded, the label shown
    assert s == {"t": 2.0, "face": True, "probs": dict(zip(EMOTIONS, r.probs)),
                 "label": "sad", "share": 0.476544, "confidence": 0.476544}
    with pytest.raises(MultiNetError, match="no angle"):  # no face, so no tilt
        Reading(2.0, None, angle=20)
    with pytest.raises(MultiNetError, match="angle must be degrees"):
        Reading(2.0, SAD, angle=float("nan"))
    plain = Reading(2.0, SAD)  # no raw reading: the smoothed one stands for it
    assert plain.face_json()["probs"] == plain.face_json()["smoothed"]
    assert plain.face_json()["shown_label"] is None and plain.face_json()["box"] is None
