"""The hybrid network: ResNet50 and VGG16 feature extractors side by side on the same face,
pooled features concatenated, then dense layers with dropout and a 6-way classifier.

The model takes raw grey pixels, shape ``[N, 1, S, S]`` with values 0..255, and normalises
them itself (so the exported ONNX file needs no preprocessing beyond crop, grey, resize).
The grey channel is repeated to three so torchvision's backbones, and ImageNet weights a user
may have on disk, fit unchanged. VGG16 is torchvision's ``vgg16_bn`` (VGG16 with batch norm):
from random initialisation the plain VGG16 trains far more slowly.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from .emotions import EMOTIONS
from .errors import MultiNetError

log = logging.getLogger(__name__)

ARCHS = ("hybrid", "resnet50", "vgg16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    arch: str = "hybrid"
    image_size: int = 48
    num_classes: int = len(EMOTIONS)
    hidden: int = 512
    dropout: float = 0.5
    backbone_weights: list[str] = field(default_factory=list)


class Preprocess(nn.Module):
    """Raw grey pixels (0..255, one channel) to normalised three-channel input."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.repeat(1, 3, 1, 1) - self.mean) / self.std


class EmotionNet(nn.Module):
    """ResNet50 and/or VGG16-BN features -> concat -> dropout/dense head -> logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch not in ARCHS:
            raise MultiNetError(f"unknown --arch {config.arch!r}; choose one of {', '.join(ARCHS)}")
        self.config = config
        self.preprocess = Preprocess()
        width = 0
        self.resnet: nn.Module | None = None
        self.vgg: nn.Module | None = None
        if config.arch in ("hybrid", "resnet50"):
            resnet = torchvision.models.resnet50(weights=None, zero_init_residual=True)
            resnet.fc = nn.Identity()  # keeps its global average pool: 2048 features
            self.resnet = resnet
            width += 2048
        if config.arch in ("hybrid", "vgg16"):
            self.vgg = torchvision.models.vgg16_bn(weights=None).features
            self.vgg_pool = nn.AdaptiveAvgPool2d(1)
            width += 512
        self.head = nn.Sequential(
            nn.Dropout(config.dropout * 0.5),
            nn.Linear(width, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        parts = []
        if self.resnet is not None:
            parts.append(self.resnet(x))
        if self.vgg is not None:
            parts.append(torch.flatten(self.vgg_pool(self.vgg(x)), 1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(config: ModelConfig) -> EmotionNet:
    """Create a network with random weights, then load any local backbone weights."""
    model = EmotionNet(config)
    for path in config.backbone_weights:
        load_backbone_weights(model, Path(path))
    return model


def load_backbone_weights(model: EmotionNet, path: Path) -> None:
    """Load torchvision ImageNet weights for ResNet50 or VGG16-BN from a local file.

    The file is a state dict as torchvision saves it (``resnet50-*.pth``, ``vgg16_bn-*.pth``);
    classifier layers in it are ignored. Nothing is ever downloaded."""
    if not path.is_file():
        raise MultiNetError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise MultiNetError(f"{path}: not a PyTorch weights file ({e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if "layer1.0.conv1.weight" in state:
        target, name = model.resnet, "ResNet50"
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    elif "features.0.weight" in state:
        if "features.1.running_mean" not in state:
            raise MultiNetError(f"{path}: these are plain VGG16 weights; this model uses "
                                "VGG16 with batch norm (torchvision vgg16_bn weights)")
        target, name = model.vgg, "VGG16-BN"
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    else:
        raise MultiNetError(f"{path}: neither ResNet50 nor VGG16-BN weights (torchvision "
                            "state dict expected)")
    if target is None:
        raise MultiNetError(f"{path}: {name} weights given, but --arch {model.config.arch} "
                            f"has no {name} branch")
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MultiNetError(f"{path}: {name} weights do not fit (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    log.info("loaded %s weights from %s", name, path)


def save_model(path: Path, model: EmotionNet, meta: dict) -> None:
    """Write a model checkpoint (weights + config + labels + meta) atomically."""
    from .train import atomic_save  # local: keeps model.py free of training code
    atomic_save({"model": unwrap(model).state_dict(), "model_config": asdict(unwrap(model).config),
                 "labels": list(EMOTIONS), "meta": meta}, path)


def load_checkpoint(path: Path) -> tuple[EmotionNet, dict]:
    """Load a model from a training checkpoint (best.pt / last.pt). Returns (model, meta)."""
    path = Path(path)
    if not path.is_file():
        raise MultiNetError(f"{path}: model file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        config = ModelConfig(**{**ckpt["model_config"], "backbone_weights": []})
    except Exception as e:  # noqa: BLE001
        raise MultiNetError(f"{path}: not a MultiNetEmotion checkpoint ({e})") from None
    if list(ckpt.get("labels", EMOTIONS)) != list(EMOTIONS):
        raise MultiNetError(f"{path}: labels {ckpt['labels']} differ from {list(EMOTIONS)}")
    model = EmotionNet(config)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt.get("meta", {})


def unwrap(model: nn.Module) -> EmotionNet:
    return model.module if hasattr(model, "module") else model  # DDP wrapper
