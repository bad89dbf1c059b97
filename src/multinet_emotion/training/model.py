"""The hybrid network: ResNet50 and VGG16 feature extractors side by side on the same face,
pooled features concatenated, then dense layers with dropout and a 6-way classifier.

The model takes raw grey pixels, shape ``[N, 1, S, S]`` with values 0..255, and normalises
them itself (so the exported ONNX file needs no preprocessing beyond crop, grey, resize, and
training and the runtime cannot normalise differently). ``normalization="face"`` (the default)
standardises each face by its own mean and contrast, so a dim or washed-out webcam face reaches
the backbones like a well-lit one; ``"imagenet"`` (models before 0.2) uses fixed ImageNet
statistics. The grey channel is repeated to three so torchvision's backbones, and ImageNet
weights a user may have on disk, fit unchanged. VGG16 is torchvision's ``vgg16_bn`` (VGG16 with
batch norm): from random initialisation the plain VGG16 trains far more slowly.

Both backbones were designed for 224x224 photos and shrink their input 32-fold; a 48x48 face
would leave VGG16 a 1x1 map and ResNet50 a 2x2 one. ``stem="face"`` (the default) keeps the
resolution a small face needs: ResNet50 without the stem's max-pool (its blocks see 24x24,
12x12, 6x6, 3x3) and VGG16 without its fifth max-pool (block 5 sees 3x3). Layer shapes, and so
weight files, are the same as torchvision's. ``stem="imagenet"`` is the unmodified layout.

``arch="small"`` is a small VGG-style CNN (four blocks of 32-64-128-256 channels, ~1.2 M
parameters), kept as the baseline the hybrid is measured against (bench/ablation.py).
``arch="small-wide"`` is the same CNN 1.5 times as wide (48-96-192-384 channels, ~2.8 M
parameters): a student for distillation from the hybrid (``train --teacher``, distill.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import torch
import torchvision
from torch import nn

from ..errors import MultiNetError
from .config import ARCHS, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, STEMS, ModelConfig  # noqa: F401

log = logging.getLogger(__name__)

class Preprocess(nn.Module):
    """Raw grey pixels (0..255, one channel) to normalised three-channel input.

    ``face``: each face minus its own mean, divided by its own standard deviation (floored at
    8 grey levels so a blank frame is not blown up into noise). ``imagenet``: fixed statistics.
    """

    mean: torch.Tensor  # buffers (registered below)
    std: torch.Tensor

    def __init__(self, normalization: str = "face", channels: int = 3) -> None:
        super().__init__()
        self.normalization = normalization
        self.channels = channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalization == "face":
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(8.0)
            x = (x - mean) / std
            return x.repeat(1, self.channels, 1, 1) if self.channels > 1 else x
        x = (x.repeat(1, 3, 1, 1) - self.mean) / self.std
        return x if self.channels > 1 else x[:, :1]


#: the channels of the four blocks of each small CNN
SMALL_WIDTHS = {"small": (32, 64, 128, 256), "small-wide": (48, 96, 192, 384)}


def small_cnn(widths: tuple[int, ...] = SMALL_WIDTHS["small"]) -> nn.Sequential:
    """Four blocks of two 3x3 conv + batch norm + ReLU, max-pooled: 32-64-128-256 channels
    (or ``widths``)."""
    layers: list[nn.Module] = []
    channels = 1
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class EmotionNet(nn.Module):
    """ResNet50 and/or VGG16-BN features -> concat -> dropout/dense head -> logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.preprocess = Preprocess(config.normalization,
                                     1 if config.arch in SMALL_WIDTHS else 3)
        width = 0
        self.resnet: nn.Module | None = None
        self.vgg: nn.Module | None = None
        self.small: nn.Module | None = None
        if config.arch in ("hybrid", "resnet50"):
            resnet = torchvision.models.resnet50(weights=None, zero_init_residual=True)
            resnet.fc = nn.Identity()  # keeps its global average pool: 2048 features
            if config.stem == "face":
                resnet.maxpool = nn.Identity()
            self.resnet = resnet
            width += 2048
        if config.arch in ("hybrid", "vgg16"):
            vgg = torchvision.models.vgg16_bn(weights=None).features
            if config.stem == "face":  # the fifth max-pool is the last layer
                vgg[-1] = nn.Identity()
            self.vgg = vgg
            self.vgg_pool = nn.AdaptiveAvgPool2d(1)
            width += 512
        if config.arch in SMALL_WIDTHS:
            self.small = small_cnn(SMALL_WIDTHS[config.arch])
            self.small_pool = nn.AdaptiveAvgPool2d(1)
            width += SMALL_WIDTHS[config.arch][-1]
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
        if self.small is not None:
            parts.append(torch.flatten(self.small_pool(self.small(x)), 1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(config: ModelConfig) -> EmotionNet:
    """Create a network with random weights, then load any local backbone weights."""
    for path in config.backbone_weights:  # a mistyped path fails before the (slow) build
        if not Path(path).is_file():
            raise MultiNetError(f"{path}: backbone weights file not found")
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


def unwrap(model: nn.Module) -> EmotionNet:
    return cast(EmotionNet, model.module if hasattr(model, "module") else model)  # DDP wrapper
