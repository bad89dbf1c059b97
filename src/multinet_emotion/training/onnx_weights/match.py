"""Matching the file's layers to the model's by the data flow between them, and the checks
that the two fit: the same preprocessing, the graph's calls of the net sharing weights."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import cast

import numpy as np
from torch import nn

from ...errors import MultiNetError
from .graph import _OnnxLayer
from .trace import _ModelLayer, _Trace

log = logging.getLogger(__name__)


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
        assert want is not None  # probes holds the layers with a probe
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
    assert ml.conv is not None and ol.conv is not None  # both convs: both have signatures
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
    return f"{ml.name} (Conv2d {w[1] * cast(nn.Conv2d, ml.module).groups} -> {w[0]}, {w[2]}x{w[3]})"


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


# --- copies of a layer ----------------------------------------------------------------------

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
