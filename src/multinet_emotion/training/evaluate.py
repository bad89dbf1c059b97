"""Evaluation: accuracy, per-class precision/recall/F1, confusion matrices; JSON, Markdown
and PNG reports. Works on a PyTorch checkpoint (.pt) and on an exported ONNX model (.onnx);
the ONNX path needs no torch."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import options
from ..emotions import EMOTIONS, DisgustPolicy
from ..errors import MultiNetError
from ..files import atomic_path, atomic_write_text
from ..options import setting
from .checkpoint import load_checkpoint, read_checkpoint
from .datasets import DataConfig, Split, load_dataset, relabel_ferplus
from .metrics import confusion_matrix, summarize

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """One evaluation; `multinet-emotion evaluate` takes its options from these fields."""

    model: Path = setting(cli=False, help="a .pt checkpoint or an .onnx file (default: the "
                          "shipped model)")
    data: DataConfig = setting(cli=False, help="the dataset (its own options)")
    split: str = setting("test", choices=("train", "val", "test", "all"),
                         help="FER2013: train=Training, val=PublicTest, test=PrivateTest")
    out: Path | None = setting(None, help="report folder (default reports/<model>-<split>)")
    ferplus: Path | None = setting(None, help="FER+ folder: score against the FER+ majority "
                                   "labels")
    tta_flip: bool = setting(False, help="average with the mirrored face (PyTorch checkpoints; "
                             "ONNX files carry their own setting)")
    # per-class logit offsets (PyTorch checkpoints): the command line parses them from text
    class_bias: list[float] | tuple[float, ...] | None = None
    batch_size: int = setting(64, min=1, help="faces per batch")
    sample: int = setting(0, min=0, metavar="N", help="score a seeded random sample of N faces "
                          "(a quick check; 0 = all)")
    seed: int = setting(0, help="the --sample seed")

    def __post_init__(self) -> None:
        options.check(self)


def sample_split(split: Split, n: int, seed: int = 0) -> Split:
    """A seeded random sample of n faces, in their original order (folders list the classes
    one after another, so the first n faces would be one class)."""
    if n < 1 or n >= len(split):
        return split
    pick = np.random.default_rng(seed).choice(len(split), n, replace=False)
    return split.subset(np.sort(pick))


#: probabilities already computed in this process, per model file state and face: scoring
#: PrivateTest on its original and its FER+ labels runs the model once per face, not twice
_MEMO: dict[tuple, tuple[dict[bytes, np.ndarray], dict]] = {}


def predict_probs(model_path: Path, images: np.ndarray, tta_flip: bool = False,
                  batch_size: int = 64, class_bias=None) -> tuple[np.ndarray, dict]:
    """Probabilities [N, 6] for uint8 faces [N, S, S], and what the model says of itself."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MultiNetError(f"{model_path}: model file not found")
    stat = model_path.stat()
    key = (str(model_path.resolve()), stat.st_mtime_ns, stat.st_size, tta_flip,
           None if class_bias is None else tuple(float(b) for b in class_bias))
    memo, info = _MEMO.get(key, ({}, None))
    digests = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images]
    missing = [i for i, d in enumerate(digests) if d not in memo]
    if missing or info is None:
        probs, info = _predict_probs(model_path, images[missing] if missing else images[:1],
                                     tta_flip, batch_size, class_bias)
        memo.update({digests[i]: p for i, p in zip(missing, probs)})
        _MEMO.clear()  # one model at a time
        _MEMO[key] = (memo, info)
    out = np.stack([memo[d] for d in digests]) if len(images) else np.zeros((0, 6), np.float32)
    return out, info


def _predict_probs(model_path: Path, images: np.ndarray, tta_flip: bool = False,
                   batch_size: int = 64, class_bias=None) -> tuple[np.ndarray, dict]:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MultiNetError(f"{model_path}: model file not found")
    if model_path.suffix == ".onnx":
        if tta_flip or class_bias is not None:
            raise MultiNetError(f"{model_path}: an ONNX file carries its own flip and class "
                                "bias; those options are for PyTorch checkpoints")
        from dataclasses import asdict

        from ..runtime.classifier import load_model
        classifier = load_model(model_path)
        _check_size(model_path, classifier.input_size, images)
        info = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(classifier.info).items()}
        return classifier.predict(images), info
    try:
        from .export import torch_probs
    except ImportError:
        raise MultiNetError(f"{model_path}: evaluating a PyTorch checkpoint needs the training "
                            "extras (pip install 'multinet-emotion[train]'), or pass the "
                            ".onnx export") from None
    model, ckpt = load_checkpoint(model_path)
    _check_size(model_path, model.config.image_size, images)
    info = {"arch": model.config.arch, "epoch": ckpt.epoch, "tta_flip": tta_flip,
            "disgust": str(ckpt.disgust)}
    if class_bias is not None:
        from .export import check_class_bias
        class_bias = check_class_bias(class_bias)
        info["class_bias"] = class_bias
    return torch_probs(model, images, tta_flip, batch_size, class_bias), info


def model_facts(model: Path) -> tuple[int, DisgustPolicy]:
    """The face size a model takes and the disgust policy it was trained with."""
    if not model.is_file():
        raise MultiNetError(f"{model}: model file not found")
    if model.suffix == ".onnx":
        from ..runtime.classifier import load_model
        info = load_model(model).info
        return info.input_size, DisgustPolicy(info.disgust)
    ckpt = read_checkpoint(model)
    return ckpt.model_config.image_size, ckpt.disgust


def _check_size(path: Path, size: int, images: np.ndarray) -> None:
    if images.shape[-1] != size:
        raise MultiNetError(f"{path}: the model takes {size}x{size} faces but the data were "
                            f"read at {images.shape[-1]}x{images.shape[-1]}")


def evaluate(config: EvalConfig) -> dict:
    """Score a model on a split, write the reports and return the metrics dict."""
    data = load_dataset(config.data)
    split: Split = data.split(config.split)
    split = sample_split(split, config.sample, config.seed)
    excluded = 0
    if config.ferplus is not None:
        split, excluded = relabel_ferplus(split, config.ferplus)
    t0 = time.perf_counter()
    probs, info = predict_probs(config.model, split.images, config.tta_flip, config.batch_size,
                                config.class_bias)
    seconds = time.perf_counter() - t0
    result = summarize(confusion_matrix(split.labels, probs.argmax(1)))
    result.update({
        "model": str(config.model), "model_info": info, "data": str(data.root),
        "split": config.split, "labels": "ferplus-majority" if config.ferplus else "original",
        "sample": {"n": config.sample, "seed": config.seed} if config.sample else None,
        "ferplus_excluded": excluded, "skipped_inputs": len(data.skipped),
        "seconds": seconds, "images_per_s": len(split) / seconds if seconds else None,
    })
    out = config.out or Path("reports") / f"{Path(config.model).stem}-{config.split}" \
        f"{'-ferplus' if config.ferplus else ''}"
    write_reports(result, Path(out))
    result["out"] = str(out)
    return result


def write_reports(result: dict, out: Path) -> None:
    """metrics.json, report.md, confusion.png (counts) and confusion_normalized.png."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    atomic_write_text(out / "report.md", markdown(result))
    cm = np.asarray(result["confusion"])
    plot_confusion(cm, out / "confusion.png", normalize=False)
    plot_confusion(cm, out / "confusion_normalized.png", normalize=True)


def markdown(result: dict) -> str:
    cm = np.asarray(result["confusion"])
    rows = [f"# Evaluation: {Path(result['model']).name} on {result['split']} "
            f"({result['labels']} labels)", "",
            f"- data: `{result['data']}`, {result['n']} images"
            + (f" ({result['ferplus_excluded']} without a FER+ majority in our classes left out)"
               if result.get("ferplus_excluded") else ""),
            f"- accuracy: **{result['accuracy']:.4f}**",
            f"- macro F1: **{result['macro_f1']:.4f}**, weighted F1: {result['weighted_f1']:.4f}",
            "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, m in result["per_class"].items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                    f"{m['support']} |")
    rows += ["", "Confusion matrix (rows = true, columns = predicted; counts, then row %):", "",
             "| true \\ pred | " + " | ".join(EMOTIONS) + " |",
             "|---" * (len(EMOTIONS) + 1) + "|"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    for i, name in enumerate(EMOTIONS):
        cells = [f"{cm[i, j]} ({norm[i, j]:.0%})" for j in range(len(EMOTIONS))]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_confusion(cm: np.ndarray, path: Path, normalize: bool, title: str | None = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: never touches the user's backend

    values = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    fig = Figure(figsize=(5.2, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=35, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set(xlabel="predicted", ylabel="true",
           title=title or ("Confusion matrix (row-normalised)" if normalize else
                           "Confusion matrix (counts)"))
    top = values.max() if values.size else 1
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > top * 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)


def format_summary(result: dict) -> str:
    """A few lines for the terminal."""
    recalls = ", ".join(f"{k} {v['recall']:.2f}" for k, v in result["per_class"].items())
    return (f"{result['split']} ({result['labels']} labels, n={result['n']}): accuracy "
            f"{result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f}, weighted F1 "
            f"{result['weighted_f1']:.4f}\nrecall: {recalls}")
