"""Training augmentation: what a face photo may look like besides the one in the data set.

Always: random flip, rotation, scale, shift, brightness and contrast, and random erasing. For
the webcam (``--webcam``): head yaw and pitch, dim and side light, a hand or glasses over the
face, low resolution, blur, sensor noise and JPEG. Every random draw comes from one CPU
generator, so a run's randomness does not depend on its device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _uniform(g: torch.Generator, device: torch.device):
    """Uniform random numbers from the CPU generator ``g`` (so a run's randomness does not
    depend on the device), placed on ``device``."""
    return lambda *shape: torch.rand(*shape, generator=g, device="cpu").to(device)


def augment(x: torch.Tensor, g: torch.Generator, webcam: bool = True) -> torch.Tensor:
    """Augment a batch of raw grey faces [N,1,S,S] 0..255 on their own device (a GPU's, where
    training runs on one); the random draws come from the CPU generator ``g``."""
    with torch.device(x.device):
        return _augment(x, g, webcam)


def _augment(x: torch.Tensor, g: torch.Generator, webcam: bool = True) -> torch.Tensor:
    """Augment a batch of raw grey faces [N,1,S,S] 0..255 (on the CPU).

    Always: random flip, rotation (+-10 deg), scale (0.9-1.1), shift (+-8%), brightness and
    contrast, and random erasing. With ``webcam``, what a laptop camera adds, each on a share
    of the batch: head yaw and pitch (a perspective warp), dim light and gamma, light from one
    side, a hand or glasses over the face, low resolution, blur, sensor noise and JPEG."""
    n, s = x.shape[0], x.shape[-1]
    u = _uniform(g, x.device)
    some = lambda p: u(n) < p  # noqa: E731
    x = _warp(x, g, perspective=0.15 if webcam else 0.0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    if webcam:
        x = _occlude(x, g, xx, yy)
        gamma = torch.where(some(0.5), torch.exp((u(n) * 2 - 1) * 0.5), torch.ones(n))
        x = 255.0 * (x / 255.0).clamp_min(0).pow(gamma.view(n, 1, 1, 1))
        gain = torch.where(some(0.25), 0.3 + u(n) * 0.7, torch.ones(n))
        x = x * gain.view(n, 1, 1, 1)
        direction = u(n) * 2 * math.pi
        strength = torch.where(some(0.25), 0.2 + u(n) * 0.5, torch.zeros(n)).view(n, 1, 1)
        side = (torch.cos(direction).view(n, 1, 1) * xx + torch.sin(direction).view(n, 1, 1) * yy)
        x = x * (1 + strength * side).clamp_min(0.2).unsqueeze(1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.75 + u(n) * 0.5).view(n, 1, 1, 1)
    brightness = ((u(n) * 2 - 1) * 25).view(n, 1, 1, 1)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 255)
    # random erasing: a box of 4-20% of the area, random grey, on some of the images
    area = (0.04 + u(n) * 0.16) * s * s
    aspect = torch.exp((u(n) * 2 - 1) * math.log(2))
    h = (area * aspect).sqrt().clamp(1, s).long()
    w = (area / aspect).sqrt().clamp(1, s).long()
    top = (u(n) * (s - h + 1)).long()
    left = (u(n) * (s - w + 1)).long()
    on = some(0.15 if webcam else 0.25)
    rows = torch.arange(s).view(1, s, 1)
    cols = torch.arange(s).view(1, 1, s)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + h).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + w).view(n, 1, 1))
           & on.view(n, 1, 1))
    fill = u(n).view(n, 1, 1) * 255
    x = torch.where(box.unsqueeze(1), fill.unsqueeze(1), x)
    if webcam:
        x = _degrade(x, g)
    return x


def _warp(x: torch.Tensor, g: torch.Generator, perspective: float) -> torch.Tensor:
    """Flip, rotation, scale, shift and (``perspective`` > 0) a yaw/pitch foreshortening, as one
    projective map sampled with bilinear interpolation."""
    n, s = x.shape[0], x.shape[-1]
    u = _uniform(g, x.device)
    angle = (u(n) * 2 - 1) * math.radians(10)
    scale = 0.9 + u(n) * 0.2
    flip = torch.where(u(n) < 0.5, -1.0, 1.0)
    shift = (u(n, 2) * 2 - 1) * 0.08 * 2  # grid units span 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    m = torch.zeros(n, 3, 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos * flip, -sin, shift[:, 0]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sin * flip, cos, shift[:, 1]
    m[:, 2, 2] = 1.0
    if perspective > 0:  # on half the faces: a head turned (x term) or tilted (y term)
        tilt = (u(n, 2) * 2 - 1) * perspective * (u(n, 1) < 0.5)
        m[:, 2, 0], m[:, 2, 1] = tilt[:, 0], tilt[:, 1]
    lin = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.ones(s * s)])  # [3, S*S]
    src = m @ points
    grid = (src[:, :2] / src[:, 2:3]).transpose(1, 2).reshape(n, s, s, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _occlude(x: torch.Tensor, g: torch.Generator, xx: torch.Tensor, yy: torch.Tensor
             ) -> torch.Tensor:
    """A hand (a skin-grey ellipse over the lower face) on 10% of the faces, dark glasses
    frames at eye height on another 10%."""
    n = x.shape[0]
    u = _uniform(g, x.device)
    v = lambda t: t.view(n, 1, 1)  # noqa: E731
    hand = v(u(n) < 0.1)
    cx, cy = v((u(n) * 2 - 1) * 0.6), v(0.3 + u(n) * 0.6)
    rx, ry = v(0.3 + u(n) * 0.3), v(0.2 + u(n) * 0.25)
    inside = ((xx - cx) / rx).square() + ((yy - cy) / ry).square() < 1
    skin = v(90 + u(n) * 120) + 15 * yy
    x = torch.where((inside & hand).unsqueeze(1), skin.unsqueeze(1), x)
    glasses = v(u(n) < 0.1)
    ey, ex, r = v(-0.25 + (u(n) * 2 - 1) * 0.08), v(0.33 + (u(n) * 2 - 1) * 0.05), v(0.2 + u(n) * 0.08)
    width = v(0.05 + u(n) * 0.06)
    ring = lambda c: (((xx - c).square() + (yy - ey).square()).sqrt() - r).abs() < width  # noqa: E731
    bridge = ((yy - ey).abs() < width) & (xx.abs() < ex - r + width)
    frame = (ring(ex) | ring(-ex) | bridge) & glasses
    x = torch.where(frame.unsqueeze(1), v(10 + u(n) * 50).unsqueeze(1), x)
    return x


def _degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Low resolution (10%), Gaussian blur (20%), sensor noise (20%) and JPEG (15%)."""
    n, s = x.shape[0], x.shape[-1]
    u = _uniform(g, x.device)
    low = u(n)
    for size, lo, hi in ((12, 0.0, 0.03), (16, 0.03, 0.06), (24, 0.06, 0.10)):
        pick = (low >= lo) & (low < hi)
        if pick.any():
            small = F.interpolate(x[pick], size=(size, size), mode="area")
            x[pick] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)
    sigma = torch.where(u(n) < 0.2, 0.4 + u(n) * 1.0, torch.zeros(n))
    if (sigma > 0).any():
        k = torch.arange(7, dtype=torch.float32) - 3
        kernel = torch.exp(-k.view(1, 7).square() / (2 * sigma.clamp_min(1e-3).view(n, 1).square()))
        kernel = kernel / kernel.sum(1, keepdim=True)  # sigma 0: a delta
        rows = x.view(1, n, s, s)
        rows = F.conv2d(F.pad(rows, (3, 3, 0, 0), mode="replicate"), kernel.view(n, 1, 1, 7), groups=n)
        rows = F.conv2d(F.pad(rows, (0, 0, 3, 3), mode="replicate"), kernel.view(n, 1, 7, 1), groups=n)
        x = rows.view(n, 1, s, s)
    noise = torch.where(u(n) < 0.2, 2 + u(n) * 8, torch.zeros(n)).view(n, 1, 1, 1)
    x = (x + noise * torch.randn(x.shape, generator=g, device="cpu").to(x.device)).clamp(0, 255)
    jpeg = (u(n) < 0.15).nonzero().flatten().tolist()
    quality = (15 + u(n) * 55).long().tolist()
    if jpeg:
        import cv2

        faces = x[jpeg, 0].round().to(torch.uint8).cpu().numpy()  # one copy off a GPU
        for j, i in enumerate(jpeg):
            ok, buf = cv2.imencode(".jpg", faces[j], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            if ok:
                faces[j] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        x[jpeg, 0] = torch.from_numpy(faces.astype(np.float32)).to(x.device)
    return x
