"""Labelled face datasets: the FER2013 CSV and image folders, their splits and checks.

Everything is decoded once into grey uint8 arrays of ``image_size`` x ``image_size`` (the
model's input) and cached under ``~/.cache/multinet-emotion``; nothing here needs torch, so
the ONNX evaluation path stays light.

Bad input (unreadable or truncated images, pixel rows of the wrong length, unknown labels,
empty classes) never crashes a run and is never dropped silently: by default each problem
is skipped, counted and listed in :attr:`Dataset.skipped`; with ``strict=True`` the first
one raises :class:`MultiNetError` naming the file or row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import options
from ..emotions import (
    DEFAULT_FACE_SIZE,
    EMOTIONS,
    FER2013_CODES,
    DisgustPolicy,
    canonical,
    to_index,
)
from ..errors import MultiNetError
from ..files import atomic_path, cache_dir
from ..options import setting
from ..progress import progress
from .ferplus import (  # noqa: F401 - re-exported: the FER+ labels were read here
    FERPLUS_COLUMNS,
    ferplus_distribution,
    ferplus_majority,
    ferplus_majority_labels,
    ferplus_targets,
    load_ferplus_votes,
    relabel_ferplus,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm",
                  ".gif"}
SPLITS = ("train", "val", "test")
_FER_PREFIX = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_DIR_SPLIT = {"train": "train", "training": "train", "val": "val", "valid": "val",
              "validation": "val", "test": "test", "testing": "test"}
CACHE_VERSION = 2


@dataclass
class DataConfig:
    """How to read a dataset. Filled from the CLI (``--data``, ``--strict``, ...)."""

    path: Path = setting(flag="--data", help="FER2013 CSV (emotion,pixels,Usage) or a folder "
                         "of class sub-folders")
    image_size: int = setting(DEFAULT_FACE_SIZE, cli=False, min=16, max=512,
                              help="faces are read at this size")
    disgust: DisgustPolicy = setting(DisgustPolicy.DROP, cli=False,
                                     help="FER2013 'disgust': drop it or merge it into 'angry'")
    strict: bool = setting(False, help="fail on the first bad image/row instead of skipping "
                           "and counting it")
    val_fraction: float = setting(0.1, min=0, max=1, min_open=True, max_open=True,
                                  help="validation share for data without a validation split")
    seed: int = setting(0, cli=False, help="seed of that validation split")
    dedupe: bool = setting(True, help="drop training images that are pixel-identical to a "
                           "validation or test image")
    cache: bool = setting(True, help="cache decoded images")

    def __post_init__(self) -> None:
        options.check(self)


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, S, S]
    labels: np.ndarray  # int64 [N]
    sources: list[str]  # relative file path, or "file.csv:row"

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(c) for name, c in zip(EMOTIONS, counts)}

    def subset(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index], [self.sources[i] for i in index])


@dataclass
class Skipped:
    source: str
    reason: str


@dataclass
class Dataset:
    root: Path
    layout: str  # "fer2013-folders", "folders", "fer2013-csv", "csv"
    splits: dict[str, Split]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    disgust: DisgustPolicy = DisgustPolicy.DROP

    def split(self, name: str) -> Split:
        if name == "all":
            parts = [self.splits[s] for s in SPLITS if s in self.splits]
            return Split(np.concatenate([p.images for p in parts]),
                         np.concatenate([p.labels for p in parts]),
                         [s for p in parts for s in p.sources])
        if name not in self.splits or len(self.splits[name]) == 0:
            have = ", ".join(s for s in self.splits if len(self.splits[s])) or "none"
            raise MultiNetError(
                f"{self.root}: this dataset has no '{name}' split (it has: {have}); "
                "choose another with --split (train, val, test or all)")
        return self.splits[name]

    def report(self) -> dict:
        """A JSON-able summary: counts per split and class, and every skipped input."""
        reasons = Counter(s.reason.split(":")[0] for s in self.skipped)
        return {
            "root": str(self.root),
            "layout": self.layout,
            "disgust": str(self.disgust),
            "splits": {k: {"total": len(v), "per_class": v.class_counts()}
                       for k, v in self.splits.items()},
            "skipped_total": len(self.skipped),
            "skipped_by_reason": dict(reasons),
            "skipped": [asdict(s) for s in self.skipped],
            "notes": self.notes,
        }


class _Problems:
    """Collects skipped inputs, or raises at the first one in strict mode."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[Skipped] = []

    def __call__(self, source: str, reason: str) -> None:
        if self.strict:
            raise MultiNetError(f"{source}: {reason} (run without --strict to skip and count it)")
        self.items.append(Skipped(source, reason))


def load_dataset(config: DataConfig) -> Dataset:
    """Read a FER2013 CSV or an image-folder dataset into train/val/test splits."""
    root = Path(config.path).expanduser()
    if not root.exists():
        raise MultiNetError(f"{root}: no such file or folder; pass --data with a FER2013 CSV "
                            "or a folder with one sub-folder per emotion")
    key = _cache_key(root, config)
    cached = _cache_load(key) if config.cache else None
    if cached is not None:
        log.info("loaded %s from cache", root)
        if config.strict:  # the cache was made leniently: apply --strict to what it recorded
            for item in cached.skipped:
                _Problems(strict=True)(item.source, item.reason)
            for note in cached.notes:
                if note.startswith("empty class"):
                    raise MultiNetError(f"{cached.root}: {note}")
        return cached
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise MultiNetError(f"{root}: not a CSV file; pass a FER2013 CSV "
                                "(emotion,pixels,Usage) or an image folder")
        data = _load_csv(root, config)
    else:
        data = _load_folders(root, config)
    _finish(data, config)
    if config.cache:
        _cache_save(key, data)
    return data


# --- image folders ---------------------------------------------------------------------

def _load_folders(root: Path, config: DataConfig) -> Dataset:
    problems = _Problems(config.strict)
    files: list[tuple[Path, str, str | None]] = []  # (path, class folder name, split)
    class_dirs: dict[Path, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        names = sorted(f for f in filenames if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        label_name = here.name
        if here != root and canonical(label_name) is not None:
            class_dirs[here] = len(names)
        for name in names:
            path = here / name
            rel = path.relative_to(root)
            if here == root:
                problems(str(rel), "not in a class folder: ignored")
                continue
            if canonical(label_name) is None:
                problems(str(rel), f"unknown label: folder '{label_name}' is not an emotion")
                continue
            files.append((path, label_name, _split_of(rel)))
    if not files:
        raise MultiNetError(
            f"{root}: no labelled images found; expected sub-folders named after emotions "
            f"({', '.join(EMOTIONS)}) holding JPEG/PNG files, e.g. {root}/happy/001.jpg")
    for d, n in sorted(class_dirs.items()):
        if n == 0:
            problems(str(d.relative_to(root)), "empty class: the folder holds no images")

    fer = all(s is not None for _, _, s in files) and any(
        _FER_PREFIX.get(p.name.split("_")[0]) for p, _, _ in files)
    images = np.zeros((len(files), config.image_size, config.image_size), np.uint8)
    keep: list[int] = []
    labels: list[int] = []
    splits: list[str | None] = []
    sources: list[str] = []
    for i, (path, label_name, split) in enumerate(progress(files, desc="reading images",
                                                           unit="img")):
        source = str(path.relative_to(root))
        index = to_index(label_name, config.disgust)
        if index is None:
            continue  # disgust, dropped by policy (counted in notes)
        try:
            images[len(keep)] = _read_image(path, config.image_size)
        except MultiNetError as e:
            problems(source, str(e))
            continue
        keep.append(i)
        labels.append(index)
        splits.append(split)
        sources.append(source)
    images = images[: len(keep)]
    dropped = sum(1 for _, n, _ in files if canonical(n) == "disgust") \
        if config.disgust == DisgustPolicy.DROP else 0
    data = Dataset(root, "fer2013-folders" if fer else "folders", {}, problems.items,
                   disgust=config.disgust)
    if dropped:
        data.notes.append(f"{dropped} disgust images dropped (disgust policy: drop)")
    _assign_splits(data, images, np.asarray(labels, np.int64), splits, sources, config)
    return data


def _split_of(rel: Path) -> str | None:
    prefix = rel.name.split("_")[0]
    if prefix in _FER_PREFIX:
        return _FER_PREFIX[prefix]
    for part in rel.parts[:-2]:
        if part.lower() in _DIR_SPLIT:
            return _DIR_SPLIT[part.lower()]
    return None


def _read_image(path: Path, size: int) -> np.ndarray:
    """Decode any image file to grey uint8 size x size; MultiNetError if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()  # raises on truncated data
            grey = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise MultiNetError(f"unreadable image: {e}") from None
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(grey, np.uint8)


# --- CSV ----------------------------------------------------------------------------------

def _load_csv(path: Path, config: DataConfig) -> Dataset:
    problems = _Problems(config.strict)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MultiNetError(f"{path}: cannot read CSV: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    if "emotion" not in fields or "pixels" not in fields:
        raise MultiNetError(f"{path}: the header must have 'emotion' and 'pixels' columns "
                            f"(and optionally 'Usage'); found {reader.fieldnames}")
    rows = list(reader)
    images = np.zeros((len(rows), config.image_size, config.image_size), np.uint8)
    labels: list[int] = []
    splits: list[str | None] = []
    sources: list[str] = []
    dropped = 0
    for line, row in enumerate(progress(rows, desc="reading CSV", unit="row"), start=2):
        source = f"{path.name}:{line}"
        raw = (row.get(fields["emotion"]) or "").strip()
        try:
            name = FER2013_CODES[int(raw)] if raw.lstrip("-").isdigit() else raw
            if isinstance(name, str) and canonical(name) is None:
                raise MultiNetError(f"unknown label: {raw!r}")
            index = to_index(name, config.disgust)
        except (KeyError, MultiNetError):
            problems(source, f"unknown label: {raw!r}")
            continue
        if index is None:
            dropped += 1
            continue
        pixels = (row.get(fields["pixels"]) or "").split()
        side = math.isqrt(len(pixels))
        if side < 8 or side * side != len(pixels):
            problems(source, f"bad pixels: {len(pixels)} values, expected a square image "
                             "such as 48x48 = 2304")
            continue
        try:
            values = np.asarray([int(p) for p in pixels], np.int64)
        except ValueError:
            problems(source, "bad pixels: not all values are integers")
            continue
        if values.min() < 0 or values.max() > 255:
            problems(source, "bad pixels: values outside 0..255")
            continue
        img = values.astype(np.uint8).reshape(side, side)
        if side != config.image_size:
            img = np.asarray(Image.fromarray(img).resize(
                (config.image_size, config.image_size), Image.Resampling.BILINEAR))
        images[len(labels)] = img
        labels.append(index)
        usage = (row.get(fields["usage"]) or "").strip() if "usage" in fields else ""
        splits.append(_FER_PREFIX.get(usage, _DIR_SPLIT.get(usage.lower())))
        sources.append(source)
    if not labels:
        raise MultiNetError(f"{path}: no usable rows (see the skipped rows with --strict)")
    layout = "fer2013-csv" if "usage" in fields else "csv"
    data = Dataset(path, layout, {}, problems.items, disgust=config.disgust)
    if dropped:
        data.notes.append(f"{dropped} disgust rows dropped (disgust policy: drop)")
    _assign_splits(data, images[: len(labels)], np.asarray(labels, np.int64), splits,
                   sources, config)
    return data


# --- splits, duplicates, checks ---------------------------------------------------------

def _assign_splits(data: Dataset, images: np.ndarray, labels: np.ndarray,
                   splits: list[str | None], sources: list[str], config: DataConfig) -> None:
    names = np.asarray([s or "train" for s in splits])
    if "val" not in set(names):
        names = _stratified_val(names, labels, config)
        data.notes.append(f"no validation split in the data: {config.val_fraction:.0%} of "
                          f"train held out, stratified by class, seed {config.seed}")
    for split in SPLITS:
        index = np.flatnonzero(names == split)
        data.splits[split] = Split(images[index], labels[index], [sources[i] for i in index])


def _stratified_val(names: np.ndarray, labels: np.ndarray, config: DataConfig) -> np.ndarray:
    names = names.copy()
    rng = np.random.default_rng(config.seed)
    for c in range(len(EMOTIONS)):
        index = np.flatnonzero((names == "train") & (labels == c))
        n_val = int(round(len(index) * config.val_fraction))
        if len(index) >= 2:
            n_val = max(1, min(n_val, len(index) - 1))
            names[rng.permutation(index)[:n_val]] = "val"
    return names


def _finish(data: Dataset, config: DataConfig) -> None:
    train = data.splits["train"]
    if config.dedupe and len(train):
        held = {hashlib.blake2b(img.tobytes(), digest_size=16).digest()
                for s in ("val", "test") for img in data.splits[s].images}
        dup = np.asarray([hashlib.blake2b(img.tobytes(), digest_size=16).digest() in held
                          for img in train.images])
        if dup.any():
            data.splits["train"] = train.subset(np.flatnonzero(~dup))
            data.notes.append(f"{int(dup.sum())} training images dropped: pixel-identical to "
                              "a validation/test image (no leakage into evaluation)")
    counts = data.splits["train"].class_counts()
    for name, n in counts.items():
        if n == 0 and len(data.splits["train"]):
            msg = f"empty class: no training images for '{name}'"
            if config.strict:
                raise MultiNetError(f"{data.root}: {msg}")
            data.notes.append(msg)
    if data.skipped:
        log.warning("%s: %d inputs skipped (%s); they are listed in the run report",
                    data.root, len(data.skipped),
                    ", ".join(f"{k}: {v}" for k, v in Counter(
                        s.reason.split(":")[0] for s in data.skipped).items()))


# --- cache --------------------------------------------------------------------------------

def _cache_key(root: Path, config: DataConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(root.resolve()), config.image_size,
                         str(config.disgust), config.val_fraction, config.seed,
                         config.dedupe]).encode())
    if root.is_file():
        st = root.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{dirpath}/{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _cache_path(key: str) -> Path:
    return cache_dir() / "datasets" / f"{key}.npz"


def _cache_load(key: str) -> Dataset | None:
    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            splits = {s: Split(z[f"{s}_images"], z[f"{s}_labels"], meta["sources"][s])
                      for s in SPLITS}
    except (OSError, KeyError, ValueError) as e:
        log.warning("ignoring unreadable dataset cache %s: %s", path, e)
        return None
    return Dataset(Path(meta["root"]), meta["layout"], splits,
                   [Skipped(**s) for s in meta["skipped"]], meta["notes"],
                   DisgustPolicy(meta["disgust"]))


def _cache_save(key: str, data: Dataset) -> None:
    path = _cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"root": str(data.root), "layout": data.layout, "disgust": str(data.disgust),
            "notes": data.notes, "skipped": [asdict(s) for s in data.skipped],
            "sources": {s: data.splits[s].sources for s in SPLITS}}
    arrays = {f"{s}_images": data.splits[s].images for s in SPLITS}
    arrays.update({f"{s}_labels": data.splits[s].labels for s in SPLITS})
    with atomic_path(path) as tmp:
        np.savez(tmp, meta=np.asarray(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # not allow_pickle

