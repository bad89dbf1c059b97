"""The settings of the training half, one dataclass per stage, with no torch import: the
command line builds its options from these defaults, also where PyTorch is not installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import options
from ..emotions import DEFAULT_FACE_SIZE, EMOTIONS
from ..options import setting
from .datasets import DataConfig

LABEL_SETS = ("auto", "fer2013", "ferplus", "mix")
ARCHS = ("hybrid", "resnet50", "vgg16", "small", "small-wide")
STEMS = ("face", "imagenet")
NORMALIZATIONS = ("face", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    arch: str = setting("hybrid", choices=ARCHS,
                        help="hybrid = ResNet50 + VGG16 side by side; small = the baseline CNN; "
                             "small-wide = that CNN 1.5x as wide (a distillation student)")
    image_size: int = setting(DEFAULT_FACE_SIZE, min=16, max=512, unit="pixels",
                              help="face side the model takes")
    num_classes: int = setting(len(EMOTIONS), cli=False, min=2, help="output classes")
    hidden: int = setting(512, min=1, help="width of the dense layer")
    dropout: float = setting(0.5, min=0, max=1, max_open=True, help="dropout before the classifier")
    stem: str = setting("face", choices=STEMS,
                        help="face: backbones keep the resolution of a 48x48 face (no ResNet "
                             "stem max-pool, no VGG fifth pool); imagenet: torchvision's layout")
    normalization: str = setting("face", choices=NORMALIZATIONS,
                                 help="face: each face by its own mean and contrast; imagenet: "
                                      "fixed stats")
    backbone_weights: list[str] = setting(default_factory=list, metavar="FILE",
                                          help="local torchvision ResNet50 / VGG16-BN weights "
                                               "(repeatable)")

    def __post_init__(self) -> None:
        options.check(self)

    @classmethod
    def from_saved(cls, saved: dict) -> ModelConfig:
        """A config saved by any version: files from before ``stem``/``normalization``
        existed were trained with the ImageNet layout and statistics."""
        saved = {"stem": "imagenet", "normalization": "imagenet", **saved}
        return cls(**{**saved, "backbone_weights": []})



@dataclass
class TrainConfig:
    """Every knob of a training run (the CLI fills it; it is saved beside the run)."""

    out: Path = setting(Path("runs/default"),
                        help="run folder: checkpoints, history.json, curves.png")
    epochs: int = setting(10, min=1, help="passes over the training data")
    batch_size: int = setting(64, min=1, help="faces per step")
    labels: str = setting("auto", choices=LABEL_SETS,
                          help="training targets: FER2013 labels, FER+ vote distributions, or a "
                               "mix; auto = ferplus where the FER+ votes cover the data")
    mix_weight: float = setting(0.5, min=0, max=1,
                                help="--labels mix: weight of the FER+ votes (the rest: the "
                                     "original label)")
    ferplus: Path | None = setting(None, help="FER+ folder (fer2013new.csv, "
                                   "kaggle_to_ferplus.csv); default: 'ferplus' beside --data")
    teacher: Path | None = setting(None, metavar="MODEL.onnx",
                                   help="distillation: also train towards this exported "
                                        "model's probabilities on the training faces (computed "
                                        "once, cached under the cache folder)")
    teacher_mix: float = setting(0.5, min=0, max=1,
                                 help="--teacher: weight of the teacher's probabilities in the "
                                      "target (the rest: the --labels target)")
    teacher_temperature: float = setting(2.0, min=0.1, max=20,
                                         help="--teacher: softening temperature of the "
                                              "teacher's probabilities (p^(1/T), renormalised)")
    optimizer: str = setting("adamw", choices=("adamw", "sgd"),
                             help="adamw, or sgd with Nesterov momentum")
    lr: float = setting(1e-3, min=0, help="peak learning rate (0: the weights stay, only the "
                        "batch-norm statistics follow the data)")
    momentum: float = setting(0.9, min=0, max=1, max_open=True, help="SGD momentum")
    weight_decay: float = setting(0.05, min=0, help="weight decay")
    warmup: float = setting(1.0, min=0, help="warm-up length in epochs")
    label_smoothing: float = setting(0.05, min=0, max=1, max_open=True, help="label smoothing")
    class_weights: str = setting("none", choices=("none", "sqrt", "inverse"),
                                 help="loss weights: none, the inverse square root of class "
                                      "frequency, or its inverse")
    mixup: float = setting(0.0, min=0, help="mixup alpha (0 = off)")
    augment: bool = setting(True, help="augment the training faces (flip, affine, light)")
    webcam: bool = setting(True, help="webcam augmentation: light, blur, noise, JPEG, low "
                           "resolution, pose, occlusion")
    patience: int = setting(4, min=1, help="stop after this many epochs without validation "
                            "improvement")
    seed: int = setting(0, help="random seed (data split, initialisation, augmentation)")
    precision: str = setting("auto", choices=("auto", "fp32", "bf16"),
                             help="auto = bf16 autocast where the CPU/GPU supports it")
    channels_last: bool = setting(True, help="channels-last memory layout")
    threads: int = setting(0, min=0, help="CPU threads (0 = all)")
    max_steps_per_epoch: int = setting(0, min=0, hidden=True,  # tests and smoke runs
                                       help="cap on the steps of an epoch (0 = whole epoch)")
    eval_batch_size: int = setting(256, min=1, help="faces per validation batch")
    resume: bool = setting(False, help="continue the run in --out with its saved settings")
    init: Path | None = setting(None, help="start from a model's weights with a fresh schedule "
                                "(fine-tuning, warm restarts): a best.pt/last.pt, or an exported "
                                ".onnx such as the shipped model")
    stop_after_epochs: int = setting(0, min=0, help="end this invocation after N epochs "
                                     "(time-boxing); --resume continues")
    minutes: float = setting(0.0, min=0, help="time budget of this invocation in minutes "
                             "(0 = none): after each epoch the schedule is re-planned to the "
                             "epochs that still fit, so the run ends annealed in time")
    keep_last: bool = setting(True, help="write last.pt (for --resume) after every epoch; "
                              "--no-keep-last writes it only at the end (a remote machine used "
                              "for one run, where the saving costs more than it can save)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig | None = None

    def __post_init__(self) -> None:
        options.check(self)
