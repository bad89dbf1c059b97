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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import MultiNetError

if TYPE_CHECKING:
    from .model import EmotionNet

log = logging.getLogger(__name__)

#: largest max |dp| against ONNX Runtime accepted for a float file / a quantised one; above it the
#: weights fit but the model computes something else (usually other model options)
FLOAT_TOLERANCE = 1e-3
INT8_TOLERANCE = 0.25
CHECK_IMAGES = 64
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


def _along(values: np.ndarray | None, ndim: int, axis: int) -> np.ndarray | None:
    """A per-channel (1-D) scale or zero point, shaped to broadcast along ``axis``."""
    if values is None or values.ndim != 1 or ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return values.reshape(shape)


# --- the layers of the file and of the model --------------------------------------------------

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


@dataclass
class _ModelLayer:
    name: str
    module: nn.Module
    kind: str
    conv: tuple | None = None
    preds: frozenset[int] = frozenset()
    bn: nn.BatchNorm2d | None = None  # the batch norm that reads this conv's output
    probe: np.ndarray | None = None  # a first layer's input for the trace's probe image


@dataclass
class _Trace:
    layers: list[_ModelLayer] = field(default_factory=list)
    max_pools: int = 0
    probe: np.ndarray | None = None  # the input image of the trace, [1, 1, S, S]


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
            outputs, bias = (node.output[0],), None
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


def _conv_signature(m: nn.Conv2d) -> tuple:
    pads = None if isinstance(m.padding, str) else (*m.padding, *m.padding)
    return tuple(m.stride), pads, tuple(m.dilation), int(m.groups)


def _trace_model(model: nn.Module, size: int, path: Path) -> _Trace:
    """One eval-mode forward pass with hooks: the Conv2d/Linear modules in execution order, the
    layers feeding each (found through the autograd graph), and each conv's batch norm."""
    names = {m: n for n, m in model.named_modules()}
    trace = _Trace()
    index: dict[nn.Module, int] = {}
    result: dict[object, int] = {}  # autograd node of a layer's output -> layer index
    bns: list[tuple[nn.BatchNorm2d, object]] = []

    def upstream(fn) -> frozenset[int]:
        found: set[int] = set()
        seen: set[object] = set()
        stack = [fn] if fn is not None else []
        while stack:
            f = stack.pop()
            if f in seen:
                continue
            seen.add(f)
            if f in result:
                found.add(result[f])
                continue
            stack.extend(n for n, _ in f.next_functions if n is not None)
        return frozenset(found)

    def layer_hook(module, inputs, output) -> None:
        if module in index:
            raise MultiNetError(f"{path}: cannot load into this model: {names[module]} runs twice "
                                "in one forward pass")
        index[module] = len(trace.layers)
        kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        preds = upstream(inputs[0].grad_fn)
        trace.layers.append(_ModelLayer(
            names[module], module, kind, _conv_signature(module) if kind == "conv" else None,
            preds, probe=None if preds else inputs[0].detach().float().cpu().numpy()))
        result[output.grad_fn] = index[module]

    def bn_hook(module, inputs, output) -> None:
        bns.append((module, inputs[0].grad_fn))

    def pool_hook(module, inputs, output) -> None:
        trace.max_pools += 1

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(layer_hook))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(bn_hook))
        elif isinstance(m, nn.MaxPool2d):
            hooks.append(m.register_forward_hook(pool_hook))
    device = next(model.parameters()).device
    # a probe image that is its own mirror image: both calls of a flip graph see the same
    x = synthetic_faces(1, size).astype(np.float32)
    trace.probe = ((x + x[:, :, ::-1]) / 2)[:, None]
    x = torch.from_numpy(trace.probe).to(device)
    try:
        with torch.enable_grad():
            model(x.requires_grad_(True))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise MultiNetError(f"{path}: this model cannot run on the file's {size}x{size} faces "
                            f"({reason})") from None
    finally:
        for h in hooks:
            h.remove()
    for bn, fn in bns:
        i = result.get(fn)
        if i is None or trace.layers[i].kind != "conv" or trace.layers[i].bn is not None:
            raise MultiNetError(f"{path}: cannot load into this model: its batch norm "
                                f"{names[bn]} does not directly follow a convolution")
        if not (bn.affine and bn.track_running_stats):
            raise MultiNetError(f"{path}: cannot load into this model: batch norm {names[bn]} "
                                "has no affine parameters or running statistics")
        trace.layers[i].bn = bn
    return trace


def _check_preprocessing(proto, layers: list[_OnnxLayer], first: list[int], trace: _Trace,
                         path: Path) -> None:
    """The inputs of the first layers (the preprocessed face) must be the file's: another
    ``normalization`` fits every weight and still computes something else. Compared in float:
    an int8 file's rounding of activations (QuantizeLinear -> DequantizeLinear) is skipped."""
    import onnxruntime as ort
    from onnx import NodeProto, TensorProto, helper

    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    constant = {t.name for t in graph.initializer}
    alias: dict[str, str] = {}  # DequantizeLinear(QuantizeLinear(t)) of an activation -> t
    for node in graph.node:
        q = producer.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in constant:
            alias[node.output[0]] = q.input[0]

    def real(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    probes = {real(layers[o].data): ml for ml, o in zip(trace.layers, first) if ml.probe is not None}
    if not probes:
        return
    keep: dict[int, NodeProto] = {}
    stack, seen = list(probes), set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        node = producer[name]
        copy = NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(real(i) if i else i for i in node.input)
        keep[id(node)] = copy
        stack.extend(i for i in copy.input if i)
    nodes = [keep[id(n)] for n in graph.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    sub = helper.make_graph(nodes, "probe", [graph.input[0]],
                            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in probes],
                            [t for t in graph.initializer if t.name in used])
    model = helper.make_model(sub, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        got = session.run(list(probes), {graph.input[0].name: trace.probe})
    except Exception as e:  # noqa: BLE001 - a graph this module cannot cut is not fatal
        log.warning("%s: could not compare the preprocessing (%s)", path, type(e).__name__)
        return
    for (name, ml), value in zip(probes.items(), got):
        want = ml.probe
        if value.shape != want.shape:
            raise MultiNetError(f"{path}: does not fit this model: the file feeds {name!r} "
                                f"{list(value.shape)} values, the model's {ml.name} gets "
                                f"{list(want.shape)}")
        err = float(np.abs(value - want).max() / (np.abs(want).max() + 1e-12))
        if err > 1e-3:
            raise MultiNetError(f"{path}: the model prepares the face differently from the file "
                                f"(the input of {ml.name} differs by {err:.0%}): build the model "
                                "with the options the file was exported with (e.g. normalization)")


# --- matching -----------------------------------------------------------------------------

def _fits(ml: _ModelLayer, ol: _OnnxLayer) -> bool:
    if ml.kind != ol.kind or tuple(ml.module.weight.shape) != ol.weight.shape:
        return False
    if ml.kind == "linear":
        return True
    (s1, p1, d1, g1), (s2, p2, d2, g2) = ml.conv, ol.conv
    return s1 == s2 and d1 == d2 and g1 == g2 and (p1 is None or p2 is None or p1 == p2)


def _name_score(node: str, module: str) -> int:
    """0: the exporter's scope path names this module; 1: it does, for a second call of the
    net (scopes get ``_1``); 2: it does not."""
    parts = [p.rsplit(".", 1)[-1] for p in node.split("/") if p][:-1]
    target = "." + module
    if ("." + ".".join(parts)).endswith(target):
        return 0
    if ("." + ".".join(re.sub(r"_\d+$", "", p) for p in parts)).endswith(target):
        return 1
    return 2


def _describe(ml: _ModelLayer) -> str:
    w = ml.module.weight.shape
    if ml.kind == "linear":
        return f"{ml.name} (Linear {w[1]} -> {w[0]})"
    return f"{ml.name} (Conv2d {w[1] * ml.module.groups} -> {w[0]}, {w[2]}x{w[3]})"


def _match(trace: _Trace, layers: list[_OnnxLayer], path: Path, file_arch: str) -> list[list[int]]:
    """One list per call of the net in the graph: for each model layer, its ONNX layer."""
    remaining = list(range(len(layers)))
    passes: list[list[int]] = []
    while remaining:
        chosen: list[int] = []
        for ml in trace.layers:
            want = frozenset(chosen[p] for p in ml.preds)
            candidates = [o for o in remaining if layers[o].preds == want and _fits(ml, layers[o])]
            if not candidates:
                if passes:
                    raise MultiNetError(f"{path}: does not fit this model: the file has "
                                        f"{len(remaining)} layers besides those of the model")
                raise MultiNetError(f"{path}: does not fit this model: nothing in this {file_arch} "
                                    f"file matches {_describe(ml)} where the model has it")
            best = min(candidates, key=lambda o: (_name_score(layers[o].node, ml.name), o))
            chosen.append(best)
            remaining.remove(best)
        passes.append(chosen)
    if not passes:
        raise MultiNetError(f"{path}: no convolution or dense layers in the file")
    return passes


# --- copying -------------------------------------------------------------------------------

def _check_copies(trace: _Trace, layers: list[_OnnxLayer], passes: list[list[int]],
                  path: Path) -> float:
    """The graph's calls of the net must share their weights (int8 biases may differ by their
    rounding), and a bias in the file needs a bias or a batch norm in the model. Returns the
    largest difference between the copies of a layer."""
    spread = 0.0
    for i, ml in enumerate(trace.layers):
        ol = layers[passes[0][i]]
        for other in passes[1:]:
            copy = layers[other[i]]
            dw = float(np.abs(copy.weight - ol.weight).max())
            db = float(np.abs(copy.bias - ol.bias).max())
            if dw > 1e-4 * float(np.abs(ol.weight).max()) + 1e-7 or \
                    db > 1e-2 * float(np.abs(ol.bias).max()) + 1e-6:
                raise MultiNetError(f"{path}: the calls of the net in the graph have different "
                                    f"weights for {ml.name}; not a MultiNetEmotion export")
            spread = max(spread, dw, db)
        if ml.bn is None and ml.module.bias is None and \
                float(np.abs(ol.bias).max()) > 1e-6 * (1.0 + float(np.abs(ol.weight).max())):
            raise MultiNetError(f"{path}: does not fit this model: the file's {ol.node} has a "
                                f"bias, the model's {ml.name} none")
    return spread


@torch.no_grad()
def _copy(trace: _Trace, layers: list[_OnnxLayer], first: list[int]) -> None:
    """Weights into the model; each conv's batch norm set to add the fused bias."""
    for ml, o in zip(trace.layers, first):
        module, ol = ml.module, layers[o]
        module.weight.copy_(torch.from_numpy(ol.weight))
        bias = torch.from_numpy(ol.bias)
        if ml.bn is not None:
            if module.bias is not None:
                module.bias.zero_()
            _set_bn(ml.bn, bias, torch.zeros_like(bias), torch.full_like(bias, 1.0 - ml.bn.eps))
        elif module.bias is not None:
            module.bias.copy_(bias)


def _set_bn(bn: nn.BatchNorm2d, shift: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Running statistics ``mean``/``var``, and the affine parameters that make the eval-mode
    output ``y + shift``: gamma (y - mean) / sqrt(var + eps) + beta with gamma = sqrt(var + eps),
    beta = shift + mean."""
    device = bn.weight.device
    shift, mean, var = (t.to(device=device, dtype=torch.float64) for t in (shift, mean, var))
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_((var + bn.eps).sqrt())
    bn.bias.copy_(shift + mean)


class _Probabilities:
    """The loaded model's eval-mode probabilities as the exported graph computes them (flip
    average, class bias), measuring each batch norm's input on the unflipped faces meanwhile."""

    def __init__(self, model: nn.Module, trace: _Trace, scale: float, offset: float, flip: bool,
                 class_bias: tuple[float, ...] | None) -> None:
        self.model, self.trace, self.scale, self.offset, self.flip = model, trace, scale, offset, flip
        self.device = next(model.parameters()).device
        self.weights = None if class_bias is None else \
            torch.exp(torch.tensor(class_bias, dtype=torch.float32, device=self.device))
        self.stats: dict[nn.Module, list] = {}
        self.measuring = False

    def _hook(self, module: nn.Module, inputs: tuple) -> None:
        if not self.measuring:
            return
        x = inputs[0].detach().double()
        s = self.stats.setdefault(module, [0.0, 0.0, 0])
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + x.square().sum(dim=(0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    @torch.no_grad()
    def run(self, images: np.ndarray, count: int, measure: bool) -> np.ndarray:
        """Probabilities of the first ``count`` images; with ``measure``, batch norm input
        statistics over all of them."""
        self.model.eval()
        hooks = [ml.bn.register_forward_pre_hook(self._hook)
                 for ml in self.trace.layers if measure and ml.bn is not None]
        out = []
        try:
            for i in range(0, len(images) if measure else min(count, len(images)), BATCH):
                x = torch.from_numpy(images[i:i + BATCH]).to(device=self.device, dtype=torch.float32)
                x = x.unsqueeze(1) * self.scale + self.offset
                self.measuring = measure
                logits = self.model(x).float()
                self.measuring = False
                if i >= count:
                    continue
                p = torch.softmax(logits, dim=1)
                if self.flip:
                    p = 0.5 * (p + torch.softmax(self.model(torch.flip(x, dims=[3])).float(), dim=1))
                if self.weights is not None:
                    p = p * self.weights
                    p = p / p.sum(dim=1, keepdim=True)
                out.append(p[:count - i].cpu().numpy())
        finally:
            for h in hooks:
                h.remove()
        return np.concatenate(out)

    @torch.no_grad()
    def set_statistics(self, layers: list[_OnnxLayer], first: list[int]) -> None:
        """Running statistics = those measured; the function in eval mode stays the same."""
        for i, ml in enumerate(self.trace.layers):
            if ml.bn is None:
                continue
            total, squares, n = self.stats[ml.bn]
            mean = total / n
            var = (squares / n - mean.square()).clamp_min(0.0)
            _set_bn(ml.bn, torch.from_numpy(layers[first[i]].bias), mean, var)


def synthetic_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random grey images (uint8 [n, size, size]) for a check when no faces are given:
    blurry blobs keep the activations in the range real faces give, unlike per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                             align_corners=False)
    noise = torch.randn(n, 1, size, size, generator=g) * 8
    return (smooth + noise).clamp(0, 255).round().to(torch.uint8)[:, 0].numpy()


# --- the public function -------------------------------------------------------------------

def _read(path: Path):
    """The ONNX proto, its validated metadata (classifier.ModelInfo), and a session."""
    import onnx
    import onnxruntime as ort

    from .classifier import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, parse_metadata

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
    from .classifier import INPUT_NAME, OUTPUT_NAME

    x = images.astype(np.float32)[:, None] * np.float32(scale) + np.float32(offset)
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + BATCH]})[0]
                           for i in range(0, len(x), BATCH)])


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
    model_arch = getattr(getattr(model, "config", None), "arch", None)
    if info.arch != "unknown" and model_arch and info.arch != model_arch:
        raise MultiNetError(f"{path}: a {info.arch} model; it cannot be loaded into a "
                            f"{model_arch} model (build the model with arch {info.arch!r})")
    model_size = getattr(getattr(model, "config", None), "image_size", size)
    if model_size != size:
        log.warning("%s takes %dx%d faces; the model is configured for %dx%d", path, size, size,
                    model_size, model_size)
    if images is not None:
        images = np.ascontiguousarray(images)
        if images.ndim != 3 or images.shape[1:] != (size, size) or not len(images):
            raise MultiNetError(f"{path}: takes {size}x{size} faces; the images given have shape "
                                f"{images.shape}")

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
    lo, hi = info.value_range
    scale, offset = (hi - lo) / 255.0, lo
    n_bn = sum(ml.bn is not None for ml in trace.layers)
    measure = images is not None and n_bn > 0
    check = images if images is not None else synthetic_faces(32, size)
    count = min(CHECK_IMAGES, len(check))
    # one pass: the eval-mode function does not depend on the statistics the batch norms get
    # (that is how they are chosen), so the check before setting them holds after
    probs = _Probabilities(model, trace, scale, offset, flip, info.class_bias)
    ours = probs.run(check, count, measure)
    if measure:
        probs.set_statistics(layers, passes[0])
    theirs = _run_file(session, check[:count], scale, offset)
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
        "bn_stats_images": len(images) if measure else 0,
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


__all__ = ["load_onnx_weights", "synthetic_faces"]
