"""Small synthetic datasets the tests make on the fly (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from multinet_emotion.emotions import EMOTIONS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FER2013 = SHARED / "fer2013"
FERPLUS = SHARED / "ferplus"


def toy_faces(n_per_class: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A separable toy problem: class c is a bright horizontal band at height c, on noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    band = size // len(EMOTIONS)
    for c in range(len(EMOTIONS)):
        for _ in range(n_per_class):
            img = rng.integers(0, 80, (size, size)).astype(np.uint8)
            img[c * band:(c + 1) * band] = rng.integers(180, 256, (band, size))
            images.append(img)
            labels.append(c)
    return np.stack(images), np.asarray(labels, np.int64)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names=EMOTIONS,
                 fer_prefixes: bool = False, split_dirs: bool = False, colour: bool = False,
                 scale: int = 1) -> Path:
    """Write images as class sub-folders (optionally in Kaggle FER2013 layout)."""
    rng = np.random.default_rng(1)
    for i, (img, y) in enumerate(zip(images, labels)):
        usage = ["Training", "PublicTest", "PrivateTest"][i % 3] if fer_prefixes else None
        top = root
        if split_dirs or fer_prefixes:
            top = root / ("train" if usage in (None, "Training") and i % 3 == 0 else "test")
            if fer_prefixes:
                top = root / ("train" if usage == "Training" else "test")
        folder = top / names[y]
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{usage}_{i}.jpg" if usage else f"img{i:04d}.png"
        pic = Image.fromarray(img)
        if scale != 1:
            pic = pic.resize((img.shape[1] * scale, img.shape[0] * scale))
        if colour:
            pic = Image.merge("RGB", [pic, pic, pic.point(lambda v: int(v * rng.uniform(0.9, 1)))])
        pic.save(folder / name, quality=95)
    return root


def write_csv(path: Path, images: np.ndarray, codes: list[int], usages: list[str]) -> Path:
    lines = ["emotion,pixels,Usage"]
    for img, code, usage in zip(images, codes, usages):
        lines.append(f"{code},{' '.join(str(int(v)) for v in img.ravel())},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path
