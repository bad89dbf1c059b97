"""Training targets: what the model is trained towards, and the loss against it.

``labels``: the original FER2013 labels, the FER+ ten-annotator vote distribution (soft
targets; images the annotators called not-a-face or unknown are left out), or a mix of the
two. The loss is a cross-entropy against these distributions, with label smoothing and class
weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..emotions import EMOTIONS
from ..errors import MultiNetError
from .config import TrainConfig
from .datasets import Dataset, Split, ferplus_targets

log = logging.getLogger(__name__)


def class_weights(counts: np.ndarray, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    freq = np.maximum(counts, 1) / max(counts.sum(), 1)
    if mode == "sqrt":
        w = 1.0 / np.sqrt(freq)
    elif mode == "inverse":
        w = 1.0 / freq
    else:
        raise MultiNetError(f"unknown --class-weights {mode!r}: use none, sqrt or inverse")
    w = w / (w * freq).sum()  # average weight over the data = 1
    return torch.tensor(w, dtype=torch.float32)


@dataclass
class Targets:
    """What the model is trained towards: one distribution over the six classes per image."""

    split: Split  # the training images used (FER+-unusable ones left out)
    probs: np.ndarray  # float32 [N, 6]
    left_out: int = 0
    index: np.ndarray | None = None  # each image's index in the split given (None: the same)


def training_targets(split: Split, config: TrainConfig, dataset: Dataset) -> Targets:
    """The training targets for ``config.labels``: one-hot original labels, FER+ vote
    distributions, or ``mix_weight`` * votes + (1 - mix_weight) * original label."""
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)
    if config.labels == "auto":
        try:
            keep, votes = ferplus_targets(split, ferplus_dir(config), dataset.disgust)
            config.labels = "ferplus"
        except MultiNetError as e:
            log.info("--labels auto: training on the dataset's own labels (%s)", e)
            config.labels = "fer2013"
    if config.labels == "fer2013":
        return Targets(split, onehot[split.labels])
    keep, votes = ferplus_targets(split, ferplus_dir(config), dataset.disgust)
    sub = split.subset(keep)
    probs = votes if config.labels == "ferplus" else \
        config.mix_weight * votes + (1 - config.mix_weight) * onehot[sub.labels]
    return Targets(sub, probs.astype(np.float32), len(split) - len(keep), np.asarray(keep))


def ferplus_dir(config: TrainConfig) -> Path:
    if config.ferplus is not None:
        return Path(config.ferplus)
    if config.data is None:
        raise MultiNetError("--labels ferplus/mix needs --ferplus FOLDER (the FER+ votes)")
    return Path(config.data.path).parent / "ferplus"


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                       weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy against target distributions, with label smoothing and class weights
    (each image weighted by its target's mix of class weights)."""
    if smoothing:
        target = target * (1 - smoothing) + smoothing / target.shape[1]
    loss = -(target * F.log_softmax(logits, dim=1)).sum(1)
    if weights is None:
        return loss.mean()
    w = target @ weights
    return (loss * w).sum() / w.sum()
