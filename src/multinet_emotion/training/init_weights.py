"""Starting a training run from earlier weights (``--init``): a best.pt/last.pt of the same
architecture, or an exported .onnx model (its int8 weights dequantised), also into a model
that takes another face size (``--image-size``: the layer shapes do not depend on it)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import nn

from ..errors import MultiNetError
from .checkpoint import read_checkpoint
from .model import EmotionNet, ModelConfig, build_model, unwrap

log = logging.getLogger(__name__)


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """Grey faces ``[N, S, S]`` resized to ``size`` x ``size`` (area averaging down, bilinear up)."""
    import cv2

    method = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=method) for im in images])


def init_from(model: nn.Module, path: Path, images: np.ndarray | None = None) -> None:
    if not path.is_file():
        raise MultiNetError(f"{path}: --init checkpoint not found")
    if path.suffix == ".onnx":
        init_from_onnx(unwrap(model), path, images)
        return
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt.state)
    except Exception as e:  # noqa: BLE001 - a wrong file is the user's to fix
        raise MultiNetError(f"{path}: cannot start from this checkpoint ({e}); it must be a "
                            "best.pt/last.pt of the same --arch") from None
    log.info("starting from the weights of %s", path)


def init_from_onnx(model: EmotionNet, path: Path, images: np.ndarray | None) -> None:
    """Weights read back from an exported model (int8 dequantised), checked against ONNX
    Runtime on the file's own layout; then copied into ``model`` if its stem or normalisation
    differ (the layer shapes are the same)."""
    import onnxruntime as ort

    from ..runtime.classifier import METADATA_KEY, parse_metadata
    from .onnx_weights import load_onnx_weights

    try:
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) \
            .get_modelmeta().custom_metadata_map
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises several types
        raise MultiNetError(f"{path}: --init cannot read this ONNX file ({e})") from None
    info = parse_metadata(meta.get(METADATA_KEY), path)
    config = model.config
    file_config = ModelConfig(arch=config.arch, image_size=config.image_size, hidden=config.hidden,
                              dropout=config.dropout,
                              stem=str(info.extra.get("stem", "imagenet")),
                              normalization=str(info.extra.get("normalization", "imagenet")))
    source = model if (file_config.stem, file_config.normalization) == \
        (config.stem, config.normalization) else build_model(file_config)
    if images is not None and images.shape[1:] != (info.input_size, info.input_size):
        # the batch norms' statistics are measured as the file computes: at its own size
        log.info("continuing a %dx%d model's weights at %dx%d", info.input_size,
                 info.input_size, config.image_size, config.image_size)
        images = resize_faces(images, info.input_size)
    report = load_onnx_weights(source, path, images)
    if source is not model:
        model.load_state_dict(source.state_dict())
        log.info("weights of a stem=%s normalization=%s model, continued as stem=%s "
                 "normalization=%s", file_config.stem, file_config.normalization, config.stem,
                 config.normalization)
    model.train()
    log.info("starting from the weights of %s: top-1 agreement with ONNX Runtime %.3f, max "
             "|dp| %.4f", path, report["top1_agreement"], report["max_abs_diff"])
