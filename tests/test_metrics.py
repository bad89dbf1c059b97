import numpy as np
import pytest

from multinet_emotion.training.metrics import apply_class_bias, confusion_matrix, fit_class_bias, summarize


def test_confusion_matrix_counts():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], n=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_summary_against_hand_computed_values():
    # rows = true, cols = predicted
    cm = np.array([[8, 2, 0],
                   [1, 3, 0],
                   [1, 0, 5]])
    r = summarize(cm, labels=("a", "b", "c"))
    assert r["accuracy"] == pytest.approx(16 / 20)
    # class a: precision 8/10, recall 8/10, F1 0.8
    assert r["per_class"]["a"]["precision"] == pytest.approx(0.8)
    assert r["per_class"]["a"]["recall"] == pytest.approx(0.8)
    # class b: precision 3/5, recall 3/4, F1 = 2*.6*.75/1.35
    assert r["per_class"]["b"]["precision"] == pytest.approx(0.6)
    assert r["per_class"]["b"]["recall"] == pytest.approx(0.75)
    f1_b = 2 * 0.6 * 0.75 / 1.35
    assert r["per_class"]["b"]["f1"] == pytest.approx(f1_b)
    # class c: precision 5/5, recall 5/6
    f1_c = 2 * 1 * (5 / 6) / (1 + 5 / 6)
    assert r["per_class"]["c"]["f1"] == pytest.approx(f1_c)
    assert r["macro_f1"] == pytest.approx((0.8 + f1_b + f1_c) / 3)
    assert r["weighted_f1"] == pytest.approx((0.8 * 10 + f1_b * 4 + f1_c * 6) / 20)
    assert r["per_class"]["c"]["support"] == 6 and r["n"] == 20


def test_class_never_predicted_or_absent_scores_zero():
    cm = np.array([[2, 0], [1, 0]])
    r = summarize(cm, labels=("a", "b"))
    assert r["per_class"]["b"]["precision"] == 0.0
    assert r["per_class"]["b"]["f1"] == 0.0
    empty = summarize(np.zeros((2, 2), int), labels=("a", "b"))
    assert empty["accuracy"] == 0.0 and empty["n"] == 0


def test_apply_class_bias_is_softmax_of_shifted_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 6))
    bias = np.array([0, 0.5, -0.3, 0, 1.0, -1.0])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    shifted = np.exp(logits + bias) / np.exp(logits + bias).sum(1, keepdims=True)
    np.testing.assert_allclose(apply_class_bias(probs, bias), shifted, atol=1e-6)


def test_fit_class_bias_gives_an_underpredicted_class_its_share():
    # class 1 is real but the model's probabilities lean to class 0 whenever it is present
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 100)
    logits = rng.normal(0, 0.3, (600, 6))
    logits[np.arange(600), labels] += 1.0
    logits[labels == 1, 0] += 1.2  # fear looks like anger to this model
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    before = summarize(confusion_matrix(labels, probs.argmax(1)))
    bias, fit = fit_class_bias(probs, labels, max_accuracy_drop=0.0)
    after = summarize(confusion_matrix(labels, apply_class_bias(probs, bias).argmax(1)))
    assert bias[0] == 0 and bias[1] > 0.3
    assert after["per_class"]["fear"]["recall"] > before["per_class"]["fear"]["recall"] + 0.2
    assert after["macro_f1"] > before["macro_f1"] + 0.03
    assert after["accuracy"] >= before["accuracy"]  # the constraint held
    assert fit["macro_f1_after"] == pytest.approx(after["macro_f1"])
    assert fit["accuracy_before"] == pytest.approx(before["accuracy"])


def test_fit_class_bias_leaves_a_balanced_model_alone():
    labels = np.repeat(np.arange(6), 20)
    probs = np.full((120, 6), 0.02)
    probs[np.arange(120), labels] = 0.9
    bias, fit = fit_class_bias(probs, labels)
    assert not bias.any() and fit["macro_f1_after"] == fit["macro_f1_before"] == 1.0
