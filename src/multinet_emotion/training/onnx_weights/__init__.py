"""Read a model's weights back out of an exported MultiNetEmotion ONNX file (fp32 or int8), so
training can continue from a shipped model such as ``assets/model.onnx``.

What export.py writes, and what has to be undone:

- the TorchScript exporter ran in eval mode, so every Conv2d + BatchNorm2d pair arrived as one
  Conv with a bias: ``W' = W * g / sqrt(v + eps)``, ``b' = beta - mu * g / sqrt(v + eps)``.
  The original ``W``, ``g``, ``beta``, ``mu``, ``v`` cannot be told apart any more; this module
  puts ``W'`` into the convolution and sets the batch norm after it to compute exactly
  ``y + b'``. With ``images`` it also measures each batch norm's input on those faces (mean
  ``m``, variance ``s^2``) and picks ``running_mean = m``, ``running_var = s^2``,
  ``weight = sqrt(s^2 + eps)``, ``bias = b' + m``: the same function in eval mode, and batch
  statistics in train mode that start where the running ones are;
- ``Probabilities`` wraps the net, which it may call twice (test-time flip, shared weights):
  the graph then holds two copies of every layer;
- the int8 file (onnxruntime ``quantize_static``, QDQ) keeps each weight as an int8 initializer
  behind a ``DequantizeLinear`` (per channel or per tensor), and each bias as int32; onnxruntime
  may also have reordered the nodes.

ONNX layers (Conv; Gemm, or MatMul + Add) are matched to the model's ``nn.Conv2d`` and
``nn.Linear`` modules by the data flow between them, not by node order: one forward pass with
hooks records which layers feed which in the model, the graph gives the same for the file, and
each module, in execution order, takes the ONNX layer of the same shape whose inputs come from
the layers already matched to its own inputs. The exporter's node names only break ties (the
net's first call over its flipped copy). The loaded model is then checked against ONNX Runtime.
"""


from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import MultiNetError
from .batchnorm import _copy, _Probabilities
from .graph import BATCH, _onnx_layers, _read, _run_file  # noqa: F401 - BATCH re-exported
from .match import _check_copies, _check_preprocessing, _match, _name_score
from .trace import _trace_model, synthetic_faces

if TYPE_CHECKING:
    from ...runtime.classifier import ModelInfo
    from ..model import EmotionNet
    from .graph import _OnnxLayer
    from .trace import _Trace

log = logging.getLogger(__name__)

#: largest max |dp| against ONNX Runtime accepted for a float file / a quantised one; above it the
#: weights fit but the model computes something else (usually other model options)
FLOAT_TOLERANCE = 1e-3
INT8_TOLERANCE = 0.25
CHECK_IMAGES = 64


def load_onnx_weights(model: EmotionNet, path: Path, images: np.ndarray | None = None) -> dict:
    """Copy the weights of an exported .onnx file into ``model`` (an EmotionNet of the same arch).

    ``images``: grey faces (uint8 ``[N, S, S]``, S the file's input size) on which each batch
    norm's input is measured to set its running statistics (without them: mean 0, variance
    ``1 - eps``). The first 64 of them (else 32 smooth random images) check the loaded model
    against ONNX Runtime running the file. The model is left in eval mode, on its device.
    Returns a small report: layers matched, ``max_abs_diff``/``mean_abs_diff``/
    ``top1_agreement`` of the check, ... Raises MultiNetError naming the file when it is not a
    MultiNetEmotion export, or does not fit the model (found before anything is copied, except
    for a failed final check: then the model holds the file's weights and should be rebuilt).

    The reference is ONNX Runtime without its QDQ fusions, i.e. the file's own int8 arithmetic
    computed in float; the fused int8 kernels on CPUs without VNNI differ from that by more."""
    path = Path(path)
    proto, info, session = _read(path)
    size = info.input_size
    images = _checked_images(model, path, info, images)
    layers = _onnx_layers(proto.graph, path)
    file_pools = sum(n.op_type == "MaxPool" for n in proto.graph.node)
    quantized = any(n.op_type == "DequantizeLinear" for n in proto.graph.node)
    model.eval()
    trace = _trace_model(model, size, path)
    covered = {id(p) for ml in trace.layers for m in (ml.module, ml.bn) if m is not None
               for p in m.parameters()}
    left = [n for n, p in model.named_parameters() if id(p) not in covered]
    if left:
        raise MultiNetError(f"{path}: cannot fill this model's parameters {left[:3]} from an ONNX "
                            "file (only Conv2d, BatchNorm2d and Linear layers are read)")
    passes = _match(trace, layers, path, info.arch)
    if len(passes) > 2:
        raise MultiNetError(f"{path}: the graph calls the net {len(passes)} times; not a "
                            "MultiNetEmotion export")
    _check_preprocessing(proto, layers, passes[0], trace, path)
    del proto
    flip = len(passes) == 2
    if flip != info.tta_flip:
        log.warning("%s: its metadata says tta_flip=%s, its graph calls the net %d time(s)", path,
                    info.tta_flip, len(passes))
    spread = _check_copies(trace, layers, passes, path)
    _copy(trace, layers, passes[0])
    n_bn = sum(ml.bn is not None for ml in trace.layers)
    measure = images is not None and n_bn > 0
    ours, theirs, count = _compare(model, trace, info, session, layers, passes[0], flip, images,
                                   measure)
    diff = np.abs(ours - theirs)
    report = {
        "path": str(path), "arch": info.arch, "quantized": quantized, "tta_flip": flip,
        "input_size": size, "convs": sum(ml.kind == "conv" for ml in trace.layers),
        "linears": sum(ml.kind == "linear" for ml in trace.layers), "batchnorms": n_bn,
        "onnx_layers": len(layers), "calls": len(passes),
        "named": sum(_name_score(layers[o].node, ml.name) == 0
                     for ml, o in zip(trace.layers, passes[0])),
        "copies_max_diff": spread,
        "bn_stats": "images" if measure else "default",
        "bn_stats_images": len(images) if measure and images is not None else 0,
        "check_images": count, "check_inputs": "images" if images is not None else "synthetic",
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean()),
    }
    tolerance = INT8_TOLERANCE if quantized else FLOAT_TOLERANCE
    if not report["max_abs_diff"] <= tolerance:
        pools = file_pools // len(passes)
        hint = (f" (the file has {pools} max-pools per call of the net, the model "
                f"{trace.max_pools})" if pools != trace.max_pools else "")
        raise MultiNetError(f"{path}: the weights fit, but the model computes something else than "
                            f"the file (max |dp| {report['max_abs_diff']:.3g} on {count} "
                            f"images){hint}: build the model with the options the file was "
                            "exported with (e.g. stem, normalization)")
    log.info("loaded %d conv and %d dense layers from %s (max |dp| %.2g against ONNX Runtime)",
             report["convs"], report["linears"], path, report["max_abs_diff"])
    return report


def _checked_images(model: EmotionNet, path: Path, info: ModelInfo, images: np.ndarray | None
                    ) -> np.ndarray | None:
    """``images`` as a contiguous array, once the file is known to fit the model's arch and
    the images the file's face size."""
    size = info.input_size
    model_arch = getattr(getattr(model, "config", None), "arch", None)
    if info.arch != "unknown" and model_arch and info.arch != model_arch:
        raise MultiNetError(f"{path}: a {info.arch} model; it cannot be loaded into a "
                            f"{model_arch} model (build the model with arch {info.arch!r})")
    model_size = getattr(getattr(model, "config", None), "image_size", size)
    if model_size != size:
        # the layer shapes do not depend on the face size (train --init --image-size)
        log.info("%s takes %dx%d faces; its weights go into a model configured for %dx%d", path,
                 size, size, model_size, model_size)
    if images is not None:
        images = np.ascontiguousarray(images)
        if images.ndim != 3 or images.shape[1:] != (size, size) or not len(images):
            raise MultiNetError(f"{path}: takes {size}x{size} faces; the images given have shape "
                                f"{images.shape}")
    return images


def _compare(model: EmotionNet, trace: _Trace, info: ModelInfo, session,  # noqa: ANN001
             layers: list[_OnnxLayer], first_pass: list[int], flip: bool,
             images: np.ndarray | None, measure: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """The loaded model's probabilities and ONNX Runtime's on the check images (the first
    ``CHECK_IMAGES`` of ``images``, else synthetic faces); with ``measure``, the batch norms'
    running statistics set from ``images`` on the way."""
    lo, hi = info.value_range
    scale, offset = (hi - lo) / 255.0, lo
    check = images if images is not None else synthetic_faces(32, info.input_size)
    count = min(CHECK_IMAGES, len(check))
    # one pass: the eval-mode function does not depend on the statistics the batch norms get
    # (that is how they are chosen), so the check before setting them holds after
    probs = _Probabilities(model, trace, scale, offset, flip, info.class_bias)
    ours = probs.run(check, count, measure)
    if measure:
        probs.set_statistics(layers, first_pass)
    theirs = _run_file(session, check[:count], scale, offset)
    return ours, theirs, count


__all__ = ["load_onnx_weights", "synthetic_faces"]
