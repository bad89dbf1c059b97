"""The six emotion labels, their fixed order, dataset aliases and the disgust policy."""

from __future__ import annotations

from enum import Enum

from .errors import MultiNetError

#: The model's classes, in the order of its outputs. Never reorder: models depend on it.
EMOTIONS: tuple[str, ...] = ("angry", "fear", "happy", "neutral", "sad", "surprise")

#: Names used by datasets (FER2013, FER+, AffectNet-style folders, ...) for our labels.
ALIASES: dict[str, str] = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "neutral": "neutral", "calm": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "disgust": "disgust", "disgusted": "disgust",
}

#: FER2013 CSV integer codes (emotion column).
FER2013_CODES: dict[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}


class DisgustPolicy(str, Enum):
    """What to do with FER2013's rare 'disgust' class, which the product does not predict."""

    DROP = "drop"
    MERGE = "merge"  # merged into angry, as in several FER papers

    def __str__(self) -> str:  # shows as 'drop' in reports and metadata
        return self.value


def canonical(name: str) -> str | None:
    """Return the canonical label for a dataset label name, or None when unknown."""
    return ALIASES.get(name.strip().lower())


def to_index(name: str, disgust: DisgustPolicy = DisgustPolicy.DROP) -> int | None:
    """Map a dataset label to a class index.

    Returns None for disgust under the DROP policy. Raises MultiNetError for a label that is
    not an emotion we know, so callers decide whether to skip (and count) or fail.
    """
    label = canonical(name)
    if label is None:
        raise MultiNetError(
            f"unknown emotion label {name!r}; known labels: {', '.join(sorted(ALIASES))}"
        )
    if label == "disgust":
        if disgust == DisgustPolicy.DROP:
            return None
        label = "angry"
    return EMOTIONS.index(label)
