"""Copying the weights into the model and unfolding the batch norms the exporter fused into the
convolutions: each set to add the fused bias, then given running statistics measured on faces
(the eval-mode function unchanged); the model's probabilities as the exported graph computes
them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .graph import BATCH, _OnnxLayer
from .trace import _Trace


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
    assert bn.running_mean is not None and bn.running_var is not None  # the trace checked
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
