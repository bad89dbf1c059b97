import numpy as np
import pytest

from multinet_emotion.metrics import confusion_matrix, summarize


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
