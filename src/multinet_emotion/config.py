"""The settings of the training half, one dataclass per stage, with no torch import: the
command line builds its options from these defaults, also where PyTorch is not installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .datasets import DataConfig
from .emotions import EMOTIONS
from .errors import MultiNetError

LABEL_SETS = ("auto", "fer2013", "ferplus", "mix")
ARCHS = ("hybrid", "resnet50", "vgg16", "small")
STEMS = ("face", "imagenet")
NORMALIZATIONS = ("face", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    arch: str = "hybrid"
    image_size: int = 48
    num_classes: int = len(EMOTIONS)
    hidden: int = 512
    dropout: float = 0.5
    stem: str = "face"  # face: keep resolution for 48x48 faces | imagenet: torchvision as is
    normalization: str = "face"  # face: each face's own mean/contrast | imagenet: fixed stats
    backbone_weights: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise MultiNetError(f"unknown --arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.stem not in STEMS:
            raise MultiNetError(f"unknown stem {self.stem!r}; choose one of {', '.join(STEMS)}")
        if self.normalization not in NORMALIZATIONS:
            raise MultiNetError(f"unknown normalization {self.normalization!r}; choose one of "
                                f"{', '.join(NORMALIZATIONS)}")

    @classmethod
    def from_saved(cls, saved: dict) -> ModelConfig:
        """A config saved by any version: files from before ``stem``/``normalization``
        existed were trained with the ImageNet layout and statistics."""
        saved = {"stem": "imagenet", "normalization": "imagenet", **saved}
        return cls(**{**saved, "backbone_weights": []})



@dataclass
class TrainConfig:
    """Every knob of a training run (the CLI fills it; it is saved beside the run)."""

    out: Path = Path("runs/default")
    epochs: int = 10
    batch_size: int = 64
    # auto = ferplus where the FER+ votes cover the data (FER2013), else the data's own labels
    labels: str = "auto"  # auto | fer2013 | ferplus (vote distributions) | mix
    mix_weight: float = 0.5  # --labels mix: weight of the FER+ votes (the rest: original label)
    ferplus: Path | None = None  # FER+ folder; None = 'ferplus' beside the --data folder
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum)
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 0.05
    warmup: float = 1.0  # epochs of linear warm-up
    label_smoothing: float = 0.05
    class_weights: str = "none"  # none | sqrt (inverse square root of class frequency) | inverse
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 = off
    augment: bool = True
    webcam: bool = True  # webcam conditions: light, blur, noise, JPEG, low res, pose, occlusion
    patience: int = 4  # epochs without validation improvement before stopping early
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 (autocast)
    channels_last: bool = True
    threads: int = 0  # 0 = torch default
    max_steps_per_epoch: int = 0  # 0 = whole epoch (tests and smoke runs use a few)
    eval_batch_size: int = 256
    resume: bool = False
    init: Path | None = None  # start from this checkpoint's weights (a new schedule, not a resume)
    stop_after_epochs: int = 0  # end this invocation after N epochs (resume later); 0 = no limit
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig | None = None
