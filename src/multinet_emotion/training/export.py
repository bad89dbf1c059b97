"""ONNX export, int8 quantisation, and a parity check of the file against PyTorch.

The exported graph takes raw grey pixels ``pixels`` [N, 1, S, S] (0..255) and returns
softmax probabilities ``probs`` [N, 6]; the file's metadata (key ``multinet_emotion``)
records the labels, input size and preprocessing, so the runtime needs nothing else.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import options
from ..emotions import EMOTIONS
from ..errors import MultiNetError
from ..files import atomic_path
from ..options import setting
from ..runtime.classifier import INPUT_NAME, OUTPUT_NAME
from ..runtime.faces import CROP_SCALE_RANGE
from ..runtime.onnx_graph import (
    _get_metadata,
    _set_metadata,
    _softmax_and_after,
    share_requantized_weights,
)

log = logging.getLogger(__name__)


@dataclass
class ExportConfig:
    """One export; `multinet-emotion export` takes its options from these fields."""

    checkpoint: Path = setting(flag="--model", metavar="FILE",
                               help="a .pt checkpoint (best.pt)")
    out: Path = setting(metavar="FILE.onnx", help="the .onnx file to write")
    quantize: bool = setting(True, help="int8 static quantisation (QDQ, per channel); "
                             "--no-quantize writes fp32 only")
    tta_flip: bool = setting(False, help="average each face with its mirror image inside the "
                             "model")
    calibration: Path | None = setting(None, flag="--data", metavar="PATH",
                                       help="dataset for int8 calibration "
                                       "and the parity check on real faces")
    calibration_images: int = setting(512, min=16, help="faces used for int8 calibration")
    opset: int = setting(18, cli=False, min=13, help="ONNX opset")
    crop_scale: float | None = setting(None, **CROP_SCALE_RANGE,
                                       help="face framing for the runtime to record in the file")
    # per-class logit offsets (bench/class_bias.py): the command line parses them from text
    class_bias: list[float] | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        options.check(self)


def check_class_bias(bias) -> list[float]:
    """Six finite logit offsets, one per emotion in the standard order, or MultiNetError."""
    try:
        values = [float(b) for b in bias]
    except (TypeError, ValueError):
        raise MultiNetError(f"class bias {bias!r}: give {len(EMOTIONS)} numbers") from None
    if len(values) != len(EMOTIONS) or not all(np.isfinite(values)) \
            or max(abs(v) for v in values) > 10:
        raise MultiNetError(f"class bias {values}: give {len(EMOTIONS)} finite numbers in "
                            f"-10..10, one per emotion ({', '.join(EMOTIONS)})")
    return values


def parse_class_bias(arg: str) -> list[float]:
    """``--class-bias``: six comma-separated numbers, or a JSON file with a ``class_bias``
    list (what bench/class_bias.py writes)."""
    path = Path(arg)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise MultiNetError(f"{path}: class bias file not found")
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MultiNetError(f"{path}: not a JSON class bias file ({e})") from None
        if not isinstance(doc, dict) or "class_bias" not in doc:
            raise MultiNetError(f"{path}: no 'class_bias' list in the file")
        return check_class_bias(doc["class_bias"])
    return check_class_bias([v for v in arg.split(",") if v.strip()])


def _wrapped(model, tta_flip: bool, class_bias=None):
    import torch

    weights = None if class_bias is None else torch.exp(
        torch.tensor([float(b) for b in class_bias], dtype=torch.float32))

    class Probabilities(torch.nn.Module):
        class_weights: torch.Tensor  # a buffer, with a class bias

        def __init__(self, net):
            super().__init__()
            self.net = net
            if weights is not None:
                self.register_buffer("class_weights", weights)

        def forward(self, pixels):
            probs = torch.softmax(self.net(pixels), dim=1)
            if tta_flip:
                probs = 0.5 * (probs + torch.softmax(self.net(torch.flip(pixels, dims=[3])), 1))
            if weights is not None:  # p * exp(bias), renormalised: softmax(logits + bias)
                probs = probs * self.class_weights
                probs = probs / probs.sum(dim=1, keepdim=True)
            return probs

    return Probabilities(model).eval()


def export_onnx(model, path: Path, meta: dict, tta_flip: bool = False, opset: int = 18,
                class_bias=None) -> Path:
    """Write an fp32 ONNX file for a (PyTorch) EmotionNet, with metadata."""
    import onnx
    import torch

    size = model.config.image_size
    wrapped = _wrapped(model.float().eval(), tta_flip, class_bias)
    x = torch.zeros(2, 1, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(wrapped, (x,), str(tmp), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          dynamo=False)
        proto = onnx.load(str(tmp))
        _set_metadata(proto, meta)
        onnx.save(proto, str(tmp))
    return path


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on real faces."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, images: np.ndarray, batch: int = 32):
            self.batches = iter([images[i:i + batch] for i in range(0, len(images), batch)])

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {INPUT_NAME: b[:, None].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        # the probabilities stay float: quantising the softmax (and the flip average after
        # it) would make them sum to 0.99 instead of 1
        # and the face normalisation stays float: an 8-bit square of each pixel's deviation
        # would misjudge the face's contrast by a third
        graph = onnx.load(str(pre))
        exclude = _softmax_and_after(graph) + [n.name for n in graph.graph.node
                                               if n.name.startswith("/net/preprocess/")]
        tmp = Path(tmpdir) / "int8.onnx"
        # reduce_range: 7-bit weights. CPUs without VNNI (AVX2 only) multiply u8 x s8 pairs
        # into saturating 16-bit sums; full-range weights overflow there (bench/int8_kernels.py).
        quantize_static(str(pre), str(tmp), Reader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        extra_options={"ActivationSymmetric": False,
                                       "CalibMovingAverage": True})
        meta = {**_get_metadata(onnx.load(str(pre))), "quantized": True,
                "weight_range": "reduced"}
        proto = onnx.load(str(tmp))
        share_requantized_weights(proto)
        _set_metadata(proto, meta)
        with atomic_path(out_path) as final:
            onnx.save(proto, str(final))
    return out_path


def torch_probs(model, images: np.ndarray, tta_flip: bool = False,
                batch_size: int = 128, class_bias=None) -> np.ndarray:
    """fp32 PyTorch probabilities, the reference the ONNX file is checked against."""
    import torch

    wrapped = _wrapped(model.float().eval(), tta_flip, class_bias)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i:i + batch_size]).float().unsqueeze(1)
            out.append(wrapped(x).numpy())
    return np.concatenate(out)


def add_class_bias_onnx(src: Path, out: Path, class_bias) -> Path:
    """Build per-class logit offsets into an exported (int8 or fp32) model, for a model trained
    elsewhere whose checkpoint did not travel (scripts/gpu_ship.sh): the same operations the
    PyTorch export adds, p * exp(bias) renormalised, appended after the graph's output, and the
    offsets recorded in the file's metadata. A file that already has offsets is refused."""
    import onnx
    from onnx import helper, numpy_helper

    src, out = Path(src), Path(out)
    bias = check_class_bias(class_bias)
    try:
        proto = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file is the user's to know
        raise MultiNetError(f"{src}: not an ONNX model ({e})") from None
    meta = _get_metadata(proto)
    if meta.get("labels") != list(EMOTIONS) or len(proto.graph.output) != 1:
        raise MultiNetError(f"{src}: not a MultiNetEmotion model (no labels in its metadata)")
    if meta.get("class_bias") is not None:
        raise MultiNetError(f"{src}: already has class offsets {meta['class_bias']}; add them "
                            "to a file without")
    share_requantized_weights(proto)  # a file exported with torch 2.11 (a GPU machine)
    graph = proto.graph
    name = graph.output[0].name
    unbiased = name + "_unbiased"
    for node in graph.node:
        node.output[:] = [unbiased if o == name else o for o in node.output]
    graph.initializer.extend([
        numpy_helper.from_array(np.exp(np.asarray(bias, np.float32))[None, :], "class_weights"),
        numpy_helper.from_array(np.asarray([1], np.int64), "class_axis")])
    graph.node.extend([
        helper.make_node("Mul", [unbiased, "class_weights"], ["class_weighted"],
                         name="class_bias_mul"),
        helper.make_node("ReduceSum", ["class_weighted", "class_axis"], ["class_total"],
                         name="class_bias_sum", keepdims=1),
        helper.make_node("Div", ["class_weighted", "class_total"], [name], name="class_bias_div")])
    _set_metadata(proto, meta | {"class_bias": bias})
    onnx.checker.check_model(proto)
    with atomic_path(out) as final:
        onnx.save(proto, str(final))
    return out


def export(config: ExportConfig) -> dict:
    """Checkpoint -> fp32 ONNX (-> int8 ONNX), parity-checked on real faces. Returns a report."""
    from ..runtime.classifier import load_model
    from .checkpoint import load_checkpoint
    from .datasets import DataConfig, load_dataset

    model, ckpt = load_checkpoint(config.checkpoint)
    size = model.config.image_size
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": size, "input": "grey",
            "value_range": [0, 255], "arch": model.config.arch,
            "disgust": str(ckpt.disgust), "tta_flip": config.tta_flip,
            "quantized": False, "epoch": ckpt.epoch,
            # the face normalisation is inside the graph, so training and the runtime share it
            "stem": model.config.stem, "normalization": model.config.normalization,
            "labels_trained": ckpt.labels_trained}
    if config.crop_scale:
        meta["crop_scale"] = config.crop_scale
    bias = None
    if config.class_bias is not None:
        bias = check_class_bias(config.class_bias)
        meta["class_bias"] = bias
    out = Path(config.out)
    fp32_path = out if not config.quantize else out.with_name(out.stem + ".fp32.onnx")
    export_onnx(model, fp32_path, meta, config.tta_flip, config.opset, bias)

    if config.calibration is not None:
        data = load_dataset(DataConfig(path=config.calibration, image_size=size))
        train = data.split("train")
        pick = np.random.default_rng(0).permutation(len(train))[:config.calibration_images]
        calib = train.images[pick]
        check = data.split("val").images[:256]
    elif config.quantize:
        raise MultiNetError("int8 quantisation is calibrated on real faces: give a dataset "
                            "(--data), or export fp32 only (--no-quantize)")
    else:  # fp32 parity needs no real faces: random pixels exercise every operator
        check = np.random.default_rng(0).integers(0, 256, (64, size, size), dtype=np.uint8)
    reference = torch_probs(model, check, config.tta_flip, class_bias=bias)
    report = {"checkpoint": str(config.checkpoint), "fp32": str(fp32_path),
              "parity_images": len(check),
              "parity_inputs": "validation faces" if config.calibration else "random pixels"}
    got = load_model(fp32_path).predict(check)
    report["fp32_max_abs_diff"] = float(np.abs(got - reference).max())
    report["fp32_size_mb"] = fp32_path.stat().st_size / 1e6
    if config.quantize:
        quantize_int8(fp32_path, out, calib)
        got = load_model(out).predict(check)
        report.update({"int8": str(out), "int8_size_mb": out.stat().st_size / 1e6,
                       "int8_max_abs_diff": float(np.abs(got - reference).max()),
                       "int8_mean_abs_diff": float(np.abs(got - reference).mean()),
                       "int8_top1_agreement": float((got.argmax(1) == reference.argmax(1))
                                                    .mean())})
    return report
