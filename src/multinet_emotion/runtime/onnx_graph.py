"""The ONNX graph helpers the runtime needs, with no torch: the model file's metadata, the
single-pass copy of a model that averages a face with its mirror image (what the web app
runs: ``single_pass_model``; docs/web-app.md, "One pass or two"), and the graph repairs the
shipping path and that copy share (pruning, re-sorting, the flip pass's shared int8
weights). The training side's export (``export.py``) builds on them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MultiNetError
from ..files import atomic_path
from .classifier import METADATA_KEY

if TYPE_CHECKING:  # onnx is imported where used: the runtime runs without it
    from onnx import GraphProto, ModelProto, NodeProto

log = logging.getLogger(__name__)


def _set_metadata(proto: ModelProto, meta: dict[str, Any]) -> None:
    for p in list(proto.metadata_props):
        if p.key == METADATA_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


def _get_metadata(proto: ModelProto) -> dict[str, Any]:
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            meta: dict[str, Any] = json.loads(entry.value)
            return meta
    raise MultiNetError(f"no '{METADATA_KEY}' metadata: not a MultiNetEmotion model")


def share_requantized_weights(proto: ModelProto) -> int:
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


def _prune(proto: ModelProto) -> None:
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


# this process's answers, by file and its size and time
_SINGLE_PASS: dict[tuple[str, int, int, str], Path] = {}


def _single_pass_model(path: Path, cache: Path | None) -> Path:
    import hashlib

    from ..files import cache_dir

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


def _strip_class_bias(proto: ModelProto, src: Path) -> None:
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


def _requantized_bias(proto: ModelProto, node: NodeProto, first: NodeProto) -> str:
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


def _own_dequantize(proto: ModelProto, first: NodeProto) -> str:
    """A copy of the DequantizeLinear node ``first`` (same constant inputs); its output."""
    from onnx import helper
    tag = f"_pass2_{len(proto.graph.node)}"  # unique: a node may be copied more than once
    output = f"{first.output[0]}{tag}"
    own = helper.make_node("DequantizeLinear", list(first.input), [output],
                           name=f"{first.name or first.output[0]}{tag}")
    own.attribute.extend(first.attribute)
    proto.graph.node.append(own)
    return output


def _topological_sort(graph: GraphProto) -> None:
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


def _softmax_and_after(proto: ModelProto) -> list[str]:
    """Names of the Softmax nodes and of every node that consumes what they produce."""
    nodes = list(proto.graph.node)
    tainted: set[str] = set()
    names: list[str] = []
    for node in nodes:  # ONNX graphs are stored in topological order
        if node.op_type == "Softmax" or any(i in tainted for i in node.input):
            names.append(node.name)
            tainted.update(node.output)
    return names
