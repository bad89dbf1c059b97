"""The file's side: the layers of an exported ONNX graph (Conv; Gemm, or MatMul + Add) with
their weights in PyTorch's layout, int8 weights dequantised, linked by the data flow between
them; reading and running the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import torch

from ...errors import MultiNetError

#: images per ONNX Runtime / PyTorch batch of the check
BATCH = 64


# --- constants in the graph -----------------------------------------------------------------

_FOLDED = {"Identity", "Cast", "Transpose", "Reshape", "DequantizeLinear", "QuantizeLinear"}


class _Constants:
    """Evaluates the tensors of a graph that do not depend on its input (weights, biases),
    following DequantizeLinear and the few other ops the exporters put in front of them."""

    def __init__(self, graph) -> None:
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.cache: dict[str, np.ndarray | None] = {}

    def get(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name not in self.cache:
            self.cache[name] = self._evaluate(name)
        return self.cache[name]

    def _evaluate(self, name: str) -> np.ndarray | None:
        from onnx import helper, numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Constant":
            if "value" in attrs:
                return numpy_helper.to_array(attrs["value"])
            for key in ("value_float", "value_floats", "value_int", "value_ints"):
                if key in attrs:
                    return np.asarray(attrs[key])
            return None
        if op not in _FOLDED:
            return None  # an activation, or an op no exporter puts in front of a weight
        inputs = [self.get(i) for i in node.input]
        if not inputs or inputs[0] is None:
            return None
        x = inputs[0]
        if op == "Identity":
            return x
        if op == "Cast":
            return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
        if op == "Transpose":
            return np.transpose(x, attrs.get("perm"))
        if op == "Reshape" and len(inputs) > 1 and inputs[1] is not None:
            shape = [x.shape[i] if s == 0 else int(s) for i, s in enumerate(inputs[1])]
            return x.reshape(shape)
        if op == "DequantizeLinear" and inputs[1] is not None and not attrs.get("block_size"):
            scale, zero = inputs[1], inputs[2] if len(inputs) > 2 else None
            scale, zero = _along(scale, x.ndim, attrs.get("axis", 1)), _along(zero, x.ndim,
                                                                               attrs.get("axis", 1))
            q = x.astype(np.int64) - (zero.astype(np.int64) if zero is not None else 0)
            return q.astype(np.float32) * scale.astype(np.float32)
        if op == "QuantizeLinear" and inputs[1] is not None and not attrs.get("block_size"):
            zero = inputs[2] if len(inputs) > 2 else None
            dtype = zero.dtype if zero is not None else np.dtype(np.uint8)
            scale = _along(inputs[1], x.ndim, attrs.get("axis", 1))
            zero = _along(zero, x.ndim, attrs.get("axis", 1))
            q = np.rint(x.astype(np.float32) / scale) + (zero if zero is not None else 0)
            info = np.iinfo(dtype)
            return np.clip(q, info.min, info.max).astype(dtype)
        return None


@overload
def _along(values: np.ndarray, ndim: int, axis: int) -> np.ndarray: ...
@overload
def _along(values: np.ndarray | None, ndim: int, axis: int) -> np.ndarray | None: ...


def _along(values: np.ndarray | None, ndim: int, axis: int) -> np.ndarray | None:
    """A per-channel (1-D) scale or zero point, shaped to broadcast along ``axis``."""
    if values is None or values.ndim != 1 or ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return values.reshape(shape)


# --- the layers of the file -----------------------------------------------------------------

@dataclass
class _OnnxLayer:
    kind: str  # "conv" | "linear"
    node: str  # the node's name (the exporter's scope path), for ties and messages
    weight: np.ndarray  # in PyTorch's layout: conv [out, in/groups, kh, kw], linear [out, in]
    bias: np.ndarray  # [out]; a fused batch norm's shift for a conv
    data: str  # the tensor the layer reads
    outputs: tuple[str, ...]  # the tensors that are its result
    conv: tuple | None = None  # (strides, pads or None, dilations, group)
    preds: frozenset[int] = frozenset()  # the nearest layers upstream of its data input


def _onnx_layers(graph, path: Path) -> list[_OnnxLayer]:
    from onnx import helper

    consts = _Constants(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers: list[_OnnxLayer] = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        name = node.name or node.output[0]
        if node.op_type == "Conv":
            weight = consts.get(node.input[1])
            if weight is None or weight.ndim != 4:
                raise MultiNetError(f"{path}: convolution {name} has no constant 2-D kernel; "
                                    "not a MultiNetEmotion export")
            bias = consts.get(node.input[2]) if len(node.input) > 2 else None
            auto_pad = attrs.get("auto_pad", b"NOTSET")
            pads = tuple(attrs.get("pads", (0, 0, 0, 0))) if auto_pad in (b"NOTSET", "NOTSET") \
                else None
            conv = (tuple(attrs.get("strides", (1, 1))), pads, tuple(attrs.get("dilations", (1, 1))),
                    int(attrs.get("group", 1)))
            layers.append(_OnnxLayer("conv", name, weight.astype(np.float32),
                                     _bias(bias, weight.shape[0], path, name), node.input[0],
                                     (node.output[0],), conv))
        elif node.op_type == "Gemm":
            b = consts.get(node.input[1])
            if b is None or b.ndim != 2 or attrs.get("transA", 0):
                continue
            weight = (b if attrs.get("transB", 0) else b.T) * np.float32(attrs.get("alpha", 1.0))
            c = consts.get(node.input[2]) if len(node.input) > 2 else None
            bias = None if c is None else c * np.float32(attrs.get("beta", 1.0))
            layers.append(_OnnxLayer("linear", name, weight.astype(np.float32),
                                     _bias(bias, weight.shape[0], path, name), node.input[0],
                                     (node.output[0],)))
        elif node.op_type == "MatMul":
            b = consts.get(node.input[1])
            if b is None or b.ndim != 2:
                continue
            outputs: tuple[str, ...] = (node.output[0],)
            bias = None
            after = consumers.get(node.output[0], [])
            if len(after) == 1 and after[0].op_type == "Add":
                other = [i for i in after[0].input if i != node.output[0]]
                c = consts.get(other[0]) if len(other) == 1 else None
                if c is not None and c.size in (1, b.shape[1]):
                    outputs, bias = (node.output[0], after[0].output[0]), c
            layers.append(_OnnxLayer("linear", name, b.T.astype(np.float32),
                                     _bias(bias, b.shape[1], path, name), node.input[0], outputs))
    _link(graph, layers, consts)
    return layers


def _bias(bias: np.ndarray | None, out: int, path: Path, name: str) -> np.ndarray:
    if bias is None:
        return np.zeros(out, np.float32)
    if bias.size == 1:
        return np.full(out, float(bias.ravel()[0]), np.float32)
    if bias.size != out:
        raise MultiNetError(f"{path}: layer {name} has {bias.size} biases for {out} outputs")
    return bias.reshape(out).astype(np.float32)


def _link(graph, layers: list[_OnnxLayer], consts: _Constants) -> None:
    """Fill each layer's ``preds``: the layers whose results reach its data input through
    non-layer ops (ReLU, pooling, additions, Q/DQ pairs, concatenation, ...)."""
    result = {out: i for i, layer in enumerate(layers) for out in layer.outputs}
    memo: dict[str, frozenset[int]] = {}
    for layer in layers:
        stack = [layer.data]
        while stack:
            name = stack[-1]
            if name in memo:
                stack.pop()
                continue
            node = consts.producer.get(name)
            if name in result:
                memo[name] = frozenset({result[name]})
            elif node is None or name in consts.initializers:
                memo[name] = frozenset()
            else:
                pending = [i for i in node.input if i and i not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                memo[name] = frozenset().union(*(memo[i] for i in node.input if i))
            stack.pop()
        layer.preds = memo[layer.data]


# --- the file ---------------------------------------------------------------------------------

def _read(path: Path):
    """The ONNX proto, its validated metadata (classifier.ModelInfo), and a session."""
    import onnx
    import onnxruntime as ort

    from ...runtime.classifier import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, parse_metadata

    if not path.is_file():
        raise MultiNetError(f"{path}: model file not found")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types on a foreign file
        raise MultiNetError(f"{path}: not an ONNX file ({type(e).__name__})") from None
    text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        raise MultiNetError(f"{path}: no {METADATA_KEY!r} metadata: not a MultiNetEmotion model")
    info = parse_metadata(text, path)
    options = ort.SessionOptions()
    # without the QDQ -> QLinearConv fusions: the quantised graph's own arithmetic (weights
    # dequantised, activations rounded to their int8 steps, in float). The fused int8 kernels
    # saturate on CPUs without VNNI (AVX2 u8*s8 pairs; up to 0.4 in a probability on the
    # shipped model), which is that runtime's error, not the file's.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises several exception types
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise MultiNetError(f"{path}: ONNX Runtime cannot load it ({reason})") from None
    if [i.name for i in session.get_inputs()] != [INPUT_NAME] or \
            OUTPUT_NAME not in [o.name for o in session.get_outputs()]:
        raise MultiNetError(f"{path}: no {INPUT_NAME!r} input and {OUTPUT_NAME!r} output: not a "
                            "MultiNetEmotion export")
    return proto, info, session


def _run_file(session, images: np.ndarray, scale: float, offset: float) -> np.ndarray:
    from ...runtime.classifier import INPUT_NAME, OUTPUT_NAME

    x = images.astype(np.float32)[:, None] * np.float32(scale) + np.float32(offset)
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + BATCH]})[0]
                           for i in range(0, len(x), BATCH)])
