"""Classification metrics from a confusion matrix (NumPy only, shared by train and evaluate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..emotions import EMOTIONS


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(EMOTIONS)) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def summarize(cm: np.ndarray, labels: tuple[str, ...] = EMOTIONS) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted F1.

    A class with no predictions has precision 0; with no support, recall 0 (and it is left
    out of nothing: macro averages run over all classes, as scikit-learn's zero_division=0)."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = cm.sum()
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "n": int(total),
        "per_class": per_class,
        "confusion": cm.astype(np.int64).tolist(),
    }


#: The negative states whose recall under the original labels the student's offsets weigh
#: in (bench/class_bias.py --negative-weight, bench/student.py).
NEGATIVE_STATES = ("angry", "fear", "sad")


def mean_recall(summary: dict, names: Sequence[str]) -> float:
    """The mean recall of the classes ``names`` in a :func:`summarize` result."""
    return float(np.mean([summary["per_class"][n]["recall"] for n in names]))


def apply_class_bias(probs: np.ndarray, bias) -> np.ndarray:
    """Re-weight probabilities by ``exp(bias)`` per class and renormalise: the same as adding
    ``bias`` to the logits before the softmax. The exported graph does exactly this."""
    w = np.exp(np.asarray(bias, np.float64))
    p = np.asarray(probs, np.float64) * w
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_class_bias(probs: np.ndarray, labels: np.ndarray, max_accuracy_drop: float = 0.005,
                   grid: np.ndarray | None = None, rounds: int = 6,
                   recall_of: tuple[np.ndarray, Sequence[int], float] | None = None
                   ) -> tuple[np.ndarray, dict]:
    """Per-class logit offsets that maximise macro F1 on held-out data (the validation split),
    giving up at most ``max_accuracy_drop`` of accuracy there.

    ``recall_of`` = (other labels of the same rows, classes, weight): maximise macro F1 plus
    weight times the mean recall of those classes under the other labels (the original
    FER2013 labels' angry, fear and sad, say, while ``labels`` are FER+'s).

    Coordinate ascent over a grid of offsets, class by class, deterministic. Returns the
    offsets (the first class fixed at 0) and the before/after figures on the data given."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    n = probs.shape[1]
    if len(probs) == 0 or len(probs) != len(labels):
        raise ValueError("fit_class_bias needs as many labels as rows of probabilities")
    grid = np.round(np.arange(-1.5, 1.5001, 0.05), 4) if grid is None else np.asarray(grid)
    logp = np.log(np.clip(probs, 1e-12, None))
    names = tuple(str(i) for i in range(n))

    def score(b: np.ndarray) -> tuple[float, float]:
        pred = (logp + b).argmax(1)
        s = summarize(confusion_matrix(labels, pred, n), names)
        if recall_of is None:
            return s["macro_f1"], s["accuracy"]
        other, classes, weight = recall_of
        o = summarize(confusion_matrix(np.asarray(other, np.int64), pred, n), names)
        return s["macro_f1"] + weight * mean_recall(o, [str(c) for c in classes]), s["accuracy"]

    bias = np.zeros(n)
    f1_0, acc_0 = score(bias)
    floor = acc_0 - max_accuracy_drop
    best = (f1_0, acc_0)
    for _ in range(rounds):
        changed = False
        for c in range(1, n):  # offsets are relative: class 0 stays at 0
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                f1, acc = score(trial)
                if acc >= floor and (f1, acc) > best:
                    best, bias, changed = (f1, acc), trial, True
        if not changed:
            break
    what = "macro_f1" if recall_of is None else "objective"  # F1 + weight x recall
    return bias, {f"{what}_before": f1_0, "accuracy_before": acc_0,
                  f"{what}_after": best[0], "accuracy_after": best[1],
                  "max_accuracy_drop": max_accuracy_drop}
