"""The model's side: its Conv2d and Linear layers in execution order, the layers feeding each
and the batch norm after each conv, found by one forward pass with hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import MultiNetError


@dataclass
class _ModelLayer:
    name: str
    module: nn.Conv2d | nn.Linear
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
    probe = torch.from_numpy(trace.probe).to(device)
    try:
        with torch.enable_grad():
            model(probe.requires_grad_(True))
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


def synthetic_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random grey images (uint8 [n, size, size]) for a check when no faces are given:
    blurry blobs keep the activations in the range real faces give, unlike per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                             align_corners=False)
    noise = torch.randn(n, 1, size, size, generator=g) * 8
    return (smooth + noise).clamp(0, 255).round().to(torch.uint8)[:, 0].numpy()
