"""FER+ labels: the ten-annotator votes of FERPlus for the FER2013 images, read from the
folder holding ``fer2013new.csv`` and ``kaggle_to_ferplus.csv``, as majority labels (to score
or relabel a split) or as vote distributions (soft training targets).

Nothing here needs torch. The splits are datasets.py's :class:`~.datasets.Split`; this
module asks only for what it uses of one (:class:`Labelled`), so datasets.py can re-export
these names without an import cycle.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Protocol, Self, TypeVar

import numpy as np

from ..emotions import EMOTIONS, DisgustPolicy, canonical
from ..errors import MultiNetError


class Labelled(Protocol):
    """What FER+ needs of a split (a datasets.Split): each image's source path (relative,
    as in the FER2013 folder layout), its labels, and the subset at some indices."""

    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int: ...

    def subset(self, index: np.ndarray) -> Self: ...


S = TypeVar("S", bound=Labelled)


FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")


def load_ferplus_votes(ferplus_dir: Path) -> dict[str, np.ndarray]:
    """Map each FER2013 folder path (e.g. 'test/sad/PrivateTest_1.jpg') to its 10 FER+ votes
    in :data:`FERPLUS_COLUMNS` order, using the mapping file shipped beside the votes."""
    ferplus_dir = Path(ferplus_dir)
    votes_file, map_file = ferplus_dir / "fer2013new.csv", ferplus_dir / "kaggle_to_ferplus.csv"
    for f in (votes_file, map_file):
        if not f.is_file():
            raise MultiNetError(f"{f}: missing; --ferplus must be the folder holding "
                                "fer2013new.csv and kaggle_to_ferplus.csv")
    with votes_file.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    votes = np.asarray([[int(v or 0) for v in r[2:12]] for r in rows], np.int64)
    out: dict[str, np.ndarray] = {}
    with map_file.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["fer2013_row"]:
                out[r["kaggle_path"]] = votes[int(r["fer2013_row"])]
    return out


def ferplus_majority(votes: np.ndarray) -> int | None:
    """Our class index of a strict FER+ majority, or None (tie, contempt, unknown, not a face,
    disgust)."""
    top = int(votes.max())
    if top == 0 or int((votes == top).sum()) > 1:
        return None
    label = canonical(FERPLUS_COLUMNS[int(votes.argmax())])
    if label is None or label == "disgust":
        return None
    return EMOTIONS.index(label)


def relabel_ferplus(split: S, ferplus_dir: Path) -> tuple[S, int]:
    """The images of ``split`` that have a FER+ majority label, relabelled with it.

    Returns the new split and the number of images left out (no FER+ row, tie, or a
    majority outside our six classes)."""
    keep, labels = ferplus_majority_labels(split, ferplus_dir)
    if not len(keep):
        raise MultiNetError("no image of this split has a FER+ label; --ferplus works with the "
                            "FER2013 folder layout (train/, test/ with Kaggle file names)")
    sub = split.subset(keep)
    sub.labels = labels
    return sub, len(split) - len(keep)


def ferplus_majority_labels(split: S, ferplus_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the images of ``split`` that have a FER+ majority label among our six
    classes, those labels): one model pass can then be scored on both label sets."""
    votes = load_ferplus_votes(ferplus_dir)
    keep, labels = [], []
    for i, src in enumerate(split.sources):
        v = votes.get(src.replace(os.sep, "/"))
        label = ferplus_majority(v) if v is not None else None
        if label is not None:
            keep.append(i)
            labels.append(label)
    return np.asarray(keep, np.int64), np.asarray(labels, np.int64)


def ferplus_distribution(votes: np.ndarray, disgust: DisgustPolicy = DisgustPolicy.DROP
                         ) -> np.ndarray | None:
    """The FER+ annotators' votes as a distribution over our six classes, or None when the
    image is not usable as a face of ours: its plurality is 'not a face' or 'unknown', or no
    vote falls on our classes. Contempt votes are dropped; disgust votes are dropped or
    counted as angry, by the disgust policy."""
    top = int(votes.max())
    if top == 0 or any(votes[FERPLUS_COLUMNS.index(c)] == top for c in ("NF", "unknown")):
        return None
    dist = np.zeros(len(EMOTIONS), np.float32)
    for column, count in zip(FERPLUS_COLUMNS, votes):
        label = canonical(column)
        if label == "disgust":
            label = "angry" if disgust == DisgustPolicy.MERGE else None
        if label is not None and count:
            dist[EMOTIONS.index(label)] += float(count)
    total = dist.sum()
    return dist / total if total > 0 else None


def ferplus_targets(split: S, ferplus_dir: Path, disgust: DisgustPolicy = DisgustPolicy.DROP
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Soft training targets from the FER+ votes: (indices of the images of ``split`` that have
    a usable vote distribution, their distributions [K, 6] float32)."""
    votes = load_ferplus_votes(ferplus_dir)
    keep, targets = [], []
    for i, src in enumerate(split.sources):
        v = votes.get(src.replace(os.sep, "/"))
        dist = ferplus_distribution(v, disgust) if v is not None else None
        if dist is not None:
            keep.append(i)
            targets.append(dist)
    if not keep:
        raise MultiNetError("no training image has FER+ votes; --labels ferplus/mix works with "
                            "the FER2013 folder layout (train/, test/ with Kaggle file names) "
                            "and --ferplus pointing at the FER+ folder")
    return np.asarray(keep), np.stack(targets)
