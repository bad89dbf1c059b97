"""ONNX Runtime inference and the model contract (metadata, inputs, outputs)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime import classifier
from multinet_emotion.runtime.classifier import (
    BatchingClassifier,
    ClassifierConfig,
    EmotionClassifier,
    load_model,
)
from multinet_emotion.runtime.faces import DEFAULT_CROP_SCALE


def _crops(*values: int, size: int = 48) -> np.ndarray:
    return np.stack([np.full((size, size), v, np.uint8) for v in values])


def test_loads_a_model_and_reads_its_metadata(brightness_onnx_model):
    model = load_model(brightness_onnx_model)
    info = model.info
    assert info.labels == EMOTIONS and info.input_size == 48 == model.input_size
    assert info.arch == "test-brightness" and info.quantized is False
    assert info.crop_scale == DEFAULT_CROP_SCALE and not info.crop_scale_from_model
    assert "brightness.onnx" in repr(model)


def test_predict_gives_probabilities_of_the_right_crop(brightness_onnx_model):
    model = load_model(brightness_onnx_model)
    probs = model.predict(_crops(30, 220, 60))
    assert probs.shape == (3, 6) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [EMOTIONS[i] for i in probs.argmax(axis=1)] == ["sad", "happy", "sad"]
    # one crop on its own (HxW) and float input give the same answer
    np.testing.assert_allclose(model.predict(_crops(220)[0].astype(np.float32)), probs[1:2],
                               atol=1e-6)


def test_batches_are_split_at_max_batch(brightness_onnx_model):
    crops = _crops(10, 50, 90, 130, 170, 210, 250)
    whole = load_model(brightness_onnx_model).predict(crops)
    split = load_model(brightness_onnx_model, ClassifierConfig(max_batch=2)).predict(crops)
    np.testing.assert_allclose(whole, split, atol=1e-6)
    assert load_model(brightness_onnx_model).predict(np.zeros((0, 48, 48), np.uint8)).shape == (0, 6)


class _SlowCounting:
    """An EmotionClassifier stand-in that records each batch and takes a while, so that
    callers arriving meanwhile queue up."""

    def __init__(self, model, delay=0.05, fail_on=None):
        import threading
        self.model, self.delay, self.fail_on, self.sizes = model, delay, fail_on, []
        self.info, self.path = model.info, model.path
        self.input_size, self.crop_scale = model.input_size, model.crop_scale
        self.lock, self.active, self.most_active = threading.Lock(), 0, 0

    def predict(self, crops):
        import time
        with self.lock:
            self.sizes.append(len(crops))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        if self.fail_on is not None and (np.asarray(crops) == self.fail_on).any():
            raise RuntimeError("the model failed")
        return self.model.predict(crops)


def test_concurrent_calls_run_as_batches_and_each_gets_its_own_rows(brightness_onnx_model):
    from concurrent.futures import ThreadPoolExecutor

    model = load_model(brightness_onnx_model)
    slow = _SlowCounting(model)
    shared = BatchingClassifier(slow, max_faces=8)
    calls = [_crops(*range(10 + i, 10 + i + 1 + i % 3)) for i in range(24)]  # 1 to 3 faces
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(shared.predict, calls))
    for crops, probs in zip(calls, got):  # the same rows as on its own, in its order
        np.testing.assert_allclose(probs, model.predict(crops), atol=1e-6)
    total = sum(len(c) for c in calls)
    assert sum(slow.sizes) == total == shared.faces and shared.batches == len(slow.sizes)
    assert len(slow.sizes) < len(calls) and max(slow.sizes) <= 8  # batched, never over
    assert slow.most_active == 2  # two batches at once (runners=2), never more
    one = _SlowCounting(model)
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(BatchingClassifier(one, runners=1).predict, calls))
    assert one.most_active == 1 and len(one.sizes) < len(slow.sizes)
    # a lone call runs at once, alone
    assert shared.predict(_crops(200)).shape == (1, 6) and slow.sizes[-1] == 1
    assert (shared.input_size, shared.crop_scale, shared.path) == \
        (model.input_size, model.crop_scale, model.path)


def test_a_failing_batch_fails_its_callers_only(brightness_onnx_model):
    from concurrent.futures import ThreadPoolExecutor

    slow = _SlowCounting(load_model(brightness_onnx_model), fail_on=77)
    shared = BatchingClassifier(slow, max_faces=1)  # one call a batch: the error stays put
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(shared.predict, _crops(v)) for v in (10, 77, 20, 30, 40, 50)]
    assert isinstance(futures[1].exception(), RuntimeError)
    assert all(f.exception() is None for i, f in enumerate(futures) if i != 1)
    assert shared.predict(_crops(60)).shape == (1, 6)  # the runner was handed on
    with pytest.raises(MultiNetError, match="must be"):  # a bad shape is worded, not batched
        shared.predict(np.zeros((2, 10, 10), np.uint8))
    assert shared.predict(np.zeros((0, 48, 48), np.uint8)).shape == (0, 6)


def test_wrong_crop_shape_is_refused(brightness_onnx_model):
    with pytest.raises(MultiNetError, match=r"\[N, 48, 48\]"):
        load_model(brightness_onnx_model).predict(np.zeros((2, 32, 32), np.uint8))


def test_crop_scale_and_input_size_come_from_the_metadata(make_emotion_onnx):
    path = make_emotion_onnx(size=64, meta={
        "version": 1, "labels": list(EMOTIONS), "input_size": 64, "input": "grey",
        "value_range": [0, 255], "crop_scale": 1.3, "arch": "hybrid", "disgust": "drop",
        "quantized": True, "tta_flip": True, "epoch": 7})
    model = load_model(path)
    assert model.input_size == 64 and model.crop_scale == pytest.approx(1.3)
    assert model.info.crop_scale_from_model and model.info.quantized and model.info.tta_flip
    assert model.info.extra == {"epoch": 7}
    assert model.predict(_crops(220, size=64)).argmax() == EMOTIONS.index("happy")


def test_value_range_other_than_0_255_is_honoured(make_emotion_onnx):
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": 48, "input": "grey",
            "value_range": [0, 1]}
    model = load_model(make_emotion_onnx(meta=meta))
    # 220/255 = 0.86 is "dark" for a model built for 0..255, so the brightness model says sad
    assert EMOTIONS[int(model.predict(_crops(220)).argmax())] == "sad"


@pytest.mark.parametrize("meta, message", [
    ({"version": 1, "labels": ["happy", "sad", "angry", "fear", "neutral", "surprise"],
      "input_size": 48}, "labels"),
    ({"version": 1, "labels": list(EMOTIONS) + ["disgust"], "input_size": 48}, "labels"),
    ({"version": 1, "input_size": 48}, "no labels"),
    ({"version": 99, "labels": list(EMOTIONS)}, "newer"),
    ({"version": 1, "labels": list(EMOTIONS), "input": "rgb"}, "only grey"),
    ({"version": 1, "labels": list(EMOTIONS), "value_range": [5, 5]}, "value_range"),
    ({"version": 1, "labels": list(EMOTIONS), "crop_scale": "big"}, "crop_scale"),
    ({"version": 1, "labels": list(EMOTIONS), "input_size": 32}, r"\[N, 1, 32, 32\]"),
    ("{not json", "not valid JSON"),
])
def test_bad_metadata_names_the_file(make_emotion_onnx, meta, message):
    path = make_emotion_onnx(name="bad-meta.onnx", meta=meta)
    with pytest.raises(MultiNetError, match=message) as err:
        load_model(path)
    assert "bad-meta.onnx" in str(err.value)


def test_missing_metadata_falls_back_to_defaults(make_emotion_onnx, caplog):
    path = make_emotion_onnx(meta=None)
    with caplog.at_level(logging.WARNING):
        model = load_model(path)
    assert model.input_size == 48 and model.crop_scale == DEFAULT_CROP_SCALE
    assert "no 'multinet_emotion' metadata" in caplog.text


def test_absent_optional_keys_get_defaults(make_emotion_onnx):
    model = load_model(make_emotion_onnx(meta={"labels": list(EMOTIONS)}))
    info = model.info
    assert (info.input_size, info.value_range, info.arch, info.quantized) == (
        48, (0.0, 255.0), "unknown", False)


def test_wrong_input_and_output_names_or_sizes(make_emotion_onnx):
    with pytest.raises(MultiNetError, match="'pixels'"):
        load_model(make_emotion_onnx(name="x.onnx", input_name="x"))
    with pytest.raises(MultiNetError, match="'probs'"):
        load_model(make_emotion_onnx(name="y.onnx", output_name="logits"))
    with pytest.raises(MultiNetError, match=r"\[N, 6\]"):
        load_model(make_emotion_onnx(name="z.onnx", n_out=7))


def test_missing_or_unreadable_model_files(tmp_path):
    with pytest.raises(MultiNetError, match="does not exist.*--model PATH"):
        load_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MultiNetError, match="junk.onnx.*not an ONNX model"):
        EmotionClassifier(junk)


def test_no_default_model_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(classifier, "default_model_path", lambda: tmp_path / "model.onnx")
    with pytest.raises(MultiNetError, match="no default model is installed.*--model PATH"):
        load_model()


def test_the_shipped_default_model_follows_the_contract():
    if not classifier.default_model_path().is_file():
        pytest.skip("no default model shipped yet (src/multinet_emotion/assets/model.onnx)")
    model = load_model()
    probs = model.predict(np.full((2, model.input_size, model.input_size), 120, np.uint8))
    assert probs.shape == (2, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert json.loads(json.dumps(model.info.labels)) == list(EMOTIONS)
