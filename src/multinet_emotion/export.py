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

from . import options
from .classifier import INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from .emotions import EMOTIONS
from .errors import MultiNetError
from .faces import CROP_SCALE_RANGE
from .files import atomic_path
from .options import setting

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
    class_bias: tuple[float, ...] | None = None

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


def _set_metadata(proto, meta: dict) -> None:
    for p in list(proto.metadata_props):
        if p.key == METADATA_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


def _get_metadata(proto) -> dict:
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise MultiNetError(f"no '{METADATA_KEY}' metadata: not a MultiNetEmotion model")


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


def share_requantized_weights(proto) -> int:
    """Give the flip pass the int8 weights of the first pass; returns the layers rewired.

    Some exporters (torch 2.11's) pass the second call of the net its weights through an
    Identity of the first call's; the quantiser then takes them for activations and
    quantises them again at run time, per tensor (DequantizeLinear(QuantizeLinear(Identity(
    DequantizeLinear(w_int8))))). ONNX Runtime cannot fuse such a layer into an int8 kernel
    (the flip pass ran in float: 68.6 ms a face instead of about 13 here), and the per-tensor
    step adds error. Each such chain is replaced by the first pass's dequantised weights,
    the graph every other export has, and the nodes left unused are removed."""
    nodes = list(proto.graph.node)
    made = {o: n for n in nodes for o in n.output}
    rewired = 0
    for node in nodes:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        dq = made.get(node.input[1])
        q = made.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        ident = made.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        first = made.get(ident.input[0]) if ident is not None and ident.op_type == "Identity" \
            else None
        if first is not None and first.op_type == "DequantizeLinear":
            # a DequantizeLinear of its own, as ONNX Runtime fuses one consumer per node
            node.input[1] = _own_dequantize(proto, first)
            rewired += 1
    # the second call's biases come through Identity nodes of the first call's dequantised
    # biases: a fused kernel needs them from a DequantizeLinear of its own too
    for node in list(proto.graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        ident = made.get(node.input[2])
        first = made.get(ident.input[0]) if ident is not None and ident.op_type == "Identity" \
            else None
        if first is not None and first.op_type == "DequantizeLinear":
            node.input[2] = _requantized_bias(proto, node, first)
    if rewired:
        _prune(proto)
        _topological_sort(proto.graph)
        log.info("the flip pass now shares the first pass's int8 weights (%d layers)", rewired)
    return rewired


def _prune(proto) -> None:
    """Drop the nodes and initializers nothing reads any more (the graph's outputs are read)."""
    while True:
        read = {i for n in proto.graph.node for i in n.input} | \
            {o.name for o in proto.graph.output}
        dead = [n for n in proto.graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            proto.graph.node.remove(n)
    read = {i for n in proto.graph.node for i in n.input}
    for init in [i for i in proto.graph.initializer if i.name not in read]:
        proto.graph.initializer.remove(init)


def drop_flip_pass(src: Path, out: Path, keep_class_bias: bool = True) -> Path:
    """A copy of a model that averages each face with its mirror image (``tta_flip``) that
    runs the first pass only: half the work, slightly different probabilities (the web
    app's copy, :func:`single_pass_model`; docs/web-app.md, "One pass or two"). The class offsets
    stay, unless ``keep_class_bias`` is False: then the offsets that
    :func:`add_class_bias_onnx` appended are taken out too, for fitting new ones to the
    single pass. MultiNetError when ``src`` has no mirror pass."""
    import onnx

    proto = onnx.load(str(src))
    if not keep_class_bias:
        _strip_class_bias(proto, src)
    made = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:  # 0.5 * (softmax(net(x)) + softmax(net(flip(x))))
        if node.op_type != "Mul":
            continue
        add = next((made.get(i) for i in node.input if made.get(i) is not None
                    and made[i].op_type == "Add"), None)
        if add is None or not all(made.get(i) is not None and made[i].op_type == "Softmax"
                                  for i in add.input):
            continue
        first = add.input[0]
        node.op_type = "Identity"
        del node.input[:]
        node.input.append(first)
        break
    else:
        raise MultiNetError(f"{src}: no mirror-image pass to drop (exported without tta_flip?)")
    _prune(proto)
    meta = _get_metadata(proto)
    meta["tta_flip"] = False
    _set_metadata(proto, meta)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out


def single_pass_model(path: Path | str, cache: Path | None = None) -> Path:
    """The model at ``path`` without its mirror-image pass (:func:`drop_flip_pass`), made
    once per model file and kept under ``cache`` (default ``~/.cache/multinet-emotion/
    single-pass``, named by the file's sha256); ``path`` itself when it has no such pass.
    The web app runs this copy unless ``serve --mirror-pass``: the mirror pass doubles the
    model's work for 0.1 point of accuracy (docs/web-app.md, "One pass or two")."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, str(cache))
    if key in _SINGLE_PASS and _SINGLE_PASS[key].is_file():
        return _SINGLE_PASS[key]
    _SINGLE_PASS[key] = _single_pass_model(path, cache)
    return _SINGLE_PASS[key]


_SINGLE_PASS: dict[tuple, Path] = {}  # this process's answers, by file and its size and time


def _single_pass_model(path: Path, cache: Path | None) -> Path:
    import hashlib

    from .datasets import cache_dir

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out = (cache or cache_dir() / "single-pass") / f"{h.hexdigest()[:24]}.onnx"
    if out.is_file():
        return out
    try:
        drop_flip_pass(path, out)
    except MultiNetError:  # no mirror pass (or not this program's model): run it as it is
        return path
    log.info("%s: its single-pass copy is %s", path, out)
    return out


def _strip_class_bias(proto, src: Path) -> None:
    """Undo add_class_bias_onnx: the graph's output comes from before its offsets again."""
    graph = proto.graph
    meta = _get_metadata(proto)
    if meta.get("class_bias") is None:
        return
    name = graph.output[0].name
    div = next((n for n in graph.node if n.name == "class_bias_div" and name in n.output), None)
    if div is None:
        raise MultiNetError(f"{src}: its class offsets were not appended by this program's "
                            "export --class-bias; cannot take them out")
    unbiased = name + "_unbiased"
    graph.node.remove(div)
    for node in graph.node:
        node.output[:] = [name if o == unbiased else o for o in node.output]
        node.input[:] = [name if i == unbiased else i for i in node.input]
    _prune(proto)
    meta["class_bias"] = None
    _set_metadata(proto, meta)


def _requantized_bias(proto, node, first) -> str:
    """The int32 bias of ``node`` for its own input scale: a fused int8 kernel needs the bias
    in steps of input scale x weight scale, and the second call's input has a scale of its
    own (the first call's bias, dequantised, quantised again as the quantiser does)."""
    from onnx import helper, numpy_helper
    made = {o: n for n in proto.graph.node for o in n.output}
    consts = {i.name: i for i in proto.graph.initializer}
    x_dq, w_dq = made.get(node.input[0]), made.get(node.input[1])
    if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or \
            w_dq.op_type != "DequantizeLinear" or \
            not all(i in consts for i in (*first.input[:2], x_dq.input[1], w_dq.input[1])):
        return _own_dequantize(proto, first)
    arr = {k: numpy_helper.to_array(consts[k]) for k in
           (first.input[0], first.input[1], x_dq.input[1], w_dq.input[1])}
    bias = arr[first.input[0]].astype(np.float64) * arr[first.input[1]].astype(np.float64)
    scale = (arr[x_dq.input[1]].astype(np.float64) * arr[w_dq.input[1]].astype(np.float64))
    scale = np.broadcast_to(scale, bias.shape)
    q = np.clip(np.rint(bias / scale), -2**31, 2**31 - 1).astype(np.int32)
    name = f"{node.output[0]}_bias"
    proto.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_quantized"),
                                    numpy_helper.from_array(scale.astype(np.float32),
                                                            f"{name}_scale")])
    dq = helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale"],
                          [name], name=f"{name}_dequantize")
    dq.attribute.extend(first.attribute)  # axis 0 for a per-channel bias
    proto.graph.node.append(dq)
    return name


def _own_dequantize(proto, first) -> str:
    """A copy of the DequantizeLinear node ``first`` (same constant inputs); its output."""
    from onnx import helper
    tag = f"_pass2_{len(proto.graph.node)}"  # unique: a node may be copied more than once
    own = helper.make_node("DequantizeLinear", list(first.input), [f"{first.output[0]}{tag}"],
                           name=f"{first.name or first.output[0]}{tag}")
    own.attribute.extend(first.attribute)
    proto.graph.node.append(own)
    return own.output[0]


def _topological_sort(graph) -> None:
    """ONNX wants each node after the nodes that make its inputs."""
    nodes = list(graph.node)
    maker = {o: k for k, n in enumerate(nodes) for o in n.output}
    done: set[int] = set()
    order: list[int] = []
    pending = list(range(len(nodes)))
    while pending:
        rest = []
        for k in pending:
            if all(maker.get(i, k) == k or maker[i] in done for i in nodes[k].input if i):
                order.append(k)
                done.add(k)
            else:
                rest.append(k)
        if len(rest) == len(pending):
            raise MultiNetError("the ONNX graph has a cycle")
        pending = rest
    copies = [type(nodes[k])() for k in order]
    for new, k in zip(copies, order):
        new.CopyFrom(nodes[k])
    del graph.node[:]
    graph.node.extend(copies)


def _softmax_and_after(proto) -> list[str]:
    """Names of the Softmax nodes and of every node that consumes what they produce."""
    nodes = list(proto.graph.node)
    tainted: set[str] = set()
    names: list[str] = []
    for node in nodes:  # ONNX graphs are stored in topological order
        if node.op_type == "Softmax" or any(i in tainted for i in node.input):
            names.append(node.name)
            tainted.update(node.output)
    return names


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
    from .checkpoint import load_checkpoint
    from .classifier import load_model
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
