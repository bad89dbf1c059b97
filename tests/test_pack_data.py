"""scripts/pack_data.py: the packed copy reads as the same images and FER+ labels."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from multinet_emotion.training.datasets import DataConfig, load_dataset, relabel_ferplus

ROOT = Path(__file__).resolve().parents[1]


def test_packed_data_keeps_images_splits_and_ferplus_labels(tmp_path):
    spec = importlib.util.spec_from_file_location("pack_data", ROOT / "scripts" / "pack_data.py")
    pack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack)
    data, fp = tmp_path / "fer2013", tmp_path / "ferplus"
    rng = np.random.default_rng(0)
    names = [("train", "happy", "Training_1.jpg"), ("train", "sad", "Training_2.jpg"),
             ("test", "happy", "PublicTest_3.jpg"), ("test", "sad", "PrivateTest_4.jpg")]
    for split, label, name in names:
        (data / split / label).mkdir(parents=True, exist_ok=True)
        smooth = np.kron(rng.integers(0, 255, (6, 6)), np.ones((8, 8))).astype(np.uint8)
        Image.fromarray(smooth).save(data / split / label / name, quality=95)
    fp.mkdir()
    with (fp / "fer2013new.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness",
                    "anger", "disgust", "fear", "contempt", "unknown", "NF"])
        for i in range(4):
            w.writerow(["x", f"fer{i}.png", 10 if i % 2 else 0, 0 if i % 2 else 10,
                        0, 0, 0, 0, 0, 0, 0, 0])
    with (fp / "kaggle_to_ferplus.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kaggle_path", "usage", "ferplus_image", "fer2013_row", "pixel_rms",
                    "pixel_duplicate", "n_candidates"])
        for i, (split, label, name) in enumerate(names):
            w.writerow([f"{split}/{label}/{name}", "x", f"fer{i}.png", i, 1.0, 0, 1])
    # a training image that is a copy of the PrivateTest face, and a disgust face
    (data / "train" / "sad" / "Training_5.jpg").write_bytes(
        (data / "test" / "sad" / "PrivateTest_4.jpg").read_bytes())
    (data / "train" / "disgust").mkdir()
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(
        data / "train" / "disgust" / "Training_6.jpg")
    out = tmp_path / "pack"
    assert pack.main(["--data", str(data), "--ferplus", str(fp), "--out", str(out)]) == 0
    # PrivateTest stays behind, and with it its pixel twin in Training; disgust is dropped
    assert sorted(f.name for f in (out / "fer2013").rglob("*.webp")) == \
        ["PublicTest_3.webp", "Training_1.webp", "Training_2.webp"]
    original = load_dataset(DataConfig(path=data, cache=False))
    packed = load_dataset(DataConfig(path=out / "fer2013", cache=False))
    for split in ("train", "val"):
        a, b = original.split(split), packed.split(split)
        assert np.array_equal(a.labels, b.labels)
        assert np.abs(a.images.astype(int) - b.images.astype(int)).mean() < 6  # WebP q82
    relabelled, _ = relabel_ferplus(packed.split("val"), out / "ferplus")
    assert len(relabelled) == 1 and relabelled.labels[0] == 2  # PublicTest_3 -> happy
    # one bundle file travels; unpacked elsewhere it is the same folders, byte for byte
    copy = tmp_path / "copy"
    assert pack.main(["--unpack", str(out / "bundle" / "fer2013.bundle"), "--out", str(copy)]) == 0
    for f in [*(out / "fer2013").rglob("*.webp"), *(out / "ferplus").glob("*.csv")]:
        assert (copy / f.relative_to(out)).read_bytes() == f.read_bytes()
    # --with-test packs PrivateTest (and keeps the twin, which load_dataset then drops)
    full = tmp_path / "full"
    assert pack.main(["--data", str(data), "--ferplus", str(fp), "--out", str(full),
                      "--with-test"]) == 0
    relabelled, _ = relabel_ferplus(load_dataset(DataConfig(path=full / "fer2013", cache=False))
                                    .split("test"), full / "ferplus")
    assert len(relabelled) == 1 and relabelled.labels[0] == 3  # PrivateTest_4 -> neutral
    assert pack.main(["--data", str(tmp_path / "none"), "--out", str(out)]) == 2
