"""The training recipe: FER+ soft targets, the loss, webcam augmentation, per-face
normalisation, the small baseline and starting from an exported .onnx (the face-sized stems:
test_train.py::test_the_full_size_hybrid_builds_and_exports, the one full-size test)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth import toy_faces

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS, DisgustPolicy
from multinet_emotion.training.datasets import (
    FERPLUS_COLUMNS,
    Dataset,
    Split,
    ferplus_distribution,
)
from multinet_emotion.training.model import ModelConfig, Preprocess, build_model
from multinet_emotion.training.train import (
    TrainConfig,
    augment,
    fit,
    resumed_config,
    soft_cross_entropy,
    training_targets,
)

SIZE = 32


def votes(**counts) -> np.ndarray:
    return np.asarray([counts.get(c, 0) for c in FERPLUS_COLUMNS], np.int64)


def test_vote_distribution_over_our_six_classes():
    d = ferplus_distribution(votes(neutral=6, happiness=2, contempt=2))
    assert d[EMOTIONS.index("neutral")] == pytest.approx(0.75)  # contempt votes dropped
    assert d[EMOTIONS.index("happy")] == pytest.approx(0.25)
    assert d.sum() == pytest.approx(1.0)
    assert ferplus_distribution(votes(NF=6, neutral=4)) is None  # not a face
    assert ferplus_distribution(votes(unknown=5, sadness=5)) is None  # tie with unknown
    assert ferplus_distribution(votes(contempt=10)) is None  # nothing on our classes
    merged = ferplus_distribution(votes(disgust=4, anger=4), DisgustPolicy.MERGE)
    assert merged[EMOTIONS.index("angry")] == pytest.approx(1.0)
    dropped = ferplus_distribution(votes(disgust=4, anger=4), DisgustPolicy.DROP)
    assert dropped[EMOTIONS.index("angry")] == pytest.approx(1.0)
    assert ferplus_distribution(votes(disgust=10), DisgustPolicy.DROP) is None


def fake_ferplus(folder: Path, sources: list[str], rows: list[np.ndarray]) -> Path:
    """A FER+ folder in the real layout (votes file + mapping) for the given sources."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "fer2013new.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *FERPLUS_COLUMNS])
        for i, v in enumerate(rows):
            w.writerow(["Training", f"fer{i:07d}.png", *[int(x) for x in v]])
    with (folder / "kaggle_to_ferplus.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kaggle_path", "usage", "ferplus_image", "fer2013_row", "pixel_rms",
                    "pixel_duplicate", "n_candidates"])
        for i, src in enumerate(sources):
            w.writerow([src, "Training", f"fer{i:07d}.png", i, 1.0, 0, 1])
    return folder


def toy_with_votes(tmp_path, n_per_class=6, seed=0):
    """A toy dataset whose FER+ votes agree with its labels, except that every fifth image
    is 'not a face' and every third one has its votes split with neutral."""
    images, labels = toy_faces(n_per_class, SIZE, seed)
    val_images, val_labels = toy_faces(3, SIZE, seed + 1)
    train_src = [f"train/x/Training_{i}.jpg" for i in range(len(labels))]
    val_src = [f"test/x/PublicTest_{i}.jpg" for i in range(len(val_labels))]
    rows = []
    column = {e: c for c in FERPLUS_COLUMNS for e in EMOTIONS if
              (c[:3] == e[:3] or (e, c) in (("happy", "happiness"), ("sad", "sadness")))}
    for i, label in enumerate(list(labels) + list(val_labels)):
        v = votes(**{column[EMOTIONS[label]]: 10})
        if i % 3 == 0 and EMOTIONS[label] != "neutral":
            v = votes(**{column[EMOTIONS[label]]: 7, "neutral": 3})
        if i % 5 == 0 and i < len(labels):
            v = votes(NF=8, neutral=2)
        rows.append(v)
    folder = fake_ferplus(tmp_path / "ferplus", train_src + val_src, rows)
    data = Dataset(tmp_path / "fer2013", "fer2013-folders", {
        "train": Split(images, labels, train_src),
        "val": Split(val_images, val_labels, val_src),
        "test": Split(val_images, val_labels, val_src)})
    return data, folder


def test_training_targets_for_each_label_set(tmp_path):
    data, folder = toy_with_votes(tmp_path)
    train = data.split("train")
    orig = training_targets(train, TrainConfig(labels="fer2013"), data)
    assert orig.left_out == 0 and np.array_equal(orig.probs.argmax(1), train.labels)
    soft = training_targets(train, TrainConfig(labels="ferplus", ferplus=folder), data)
    n_nf = len(range(0, len(train), 5))
    assert soft.left_out == n_nf and len(soft.split) == len(train) - n_nf
    assert np.allclose(soft.probs.sum(1), 1.0)
    assert np.any(soft.probs.max(1) < 1.0)  # split votes stay soft
    mix = training_targets(train, TrainConfig(labels="mix", mix_weight=0.25, ferplus=folder), data)
    onehot = np.eye(len(EMOTIONS))[mix.split.labels]
    assert np.allclose(mix.probs, 0.25 * soft.probs + 0.75 * onehot)
    auto = TrainConfig(labels="auto", ferplus=folder)
    assert training_targets(train, auto, data).left_out == n_nf and auto.labels == "ferplus"
    auto = TrainConfig(labels="auto", ferplus=tmp_path / "nowhere")
    assert training_targets(train, auto, data).left_out == 0 and auto.labels == "fer2013"
    with pytest.raises(MultiNetError, match="ferplus"):
        training_targets(train, TrainConfig(labels="ferplus", ferplus=tmp_path / "nowhere"), data)
    with pytest.raises(MultiNetError, match="mix-weight"):
        training_targets(train, TrainConfig(labels="mix", mix_weight=1.5, ferplus=folder), data)


def test_soft_cross_entropy_matches_the_hard_one_on_one_hot_targets():
    logits = torch.randn(10, 6)
    y = torch.randint(0, 6, (10,))
    onehot = F.one_hot(y, 6).float()
    w = torch.rand(6) + 0.5
    assert soft_cross_entropy(logits, onehot, None, 0.0) == pytest.approx(
        F.cross_entropy(logits, y).item(), abs=1e-6)
    assert soft_cross_entropy(logits, onehot, w, 0.0) == pytest.approx(
        F.cross_entropy(logits, y, weight=w).item(), abs=1e-6)
    assert soft_cross_entropy(logits, onehot, None, 0.1) == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=0.1).item(), abs=1e-6)


def test_fit_on_ferplus_votes_scores_both_label_sets(tmp_path):
    data, folder = toy_with_votes(tmp_path)
    cfg = TrainConfig(out=tmp_path / "run", epochs=1, batch_size=8, max_steps_per_epoch=2,
                      labels="ferplus", ferplus=folder, precision="fp32", channels_last=False,
                      model=ModelConfig(arch="small", image_size=SIZE, hidden=16))
    _, history = fit(cfg, data)
    record = history["epochs"][0]
    assert record["val_accuracy_ferplus"] is not None
    assert record["val_accuracy_fer2013"] is not None
    assert history["config"]["labels"] == "ferplus"


def test_webcam_augmentation_adds_degradations_and_stays_seeded():
    x = torch.from_numpy(toy_faces(8, 48, 0)[0][:32].astype(np.float32)).unsqueeze(1)
    plain = augment(x.clone(), torch.Generator().manual_seed(3), webcam=False)
    webcam = augment(x.clone(), torch.Generator().manual_seed(3), webcam=True)
    again = augment(x.clone(), torch.Generator().manual_seed(3), webcam=True)
    assert torch.equal(webcam, again)
    assert webcam.shape == x.shape and float(webcam.min()) >= 0 and float(webcam.max()) <= 255
    assert not torch.equal(plain, webcam)

    def sharpness(t):  # mean absolute horizontal gradient
        return float((t[..., 1:] - t[..., :-1]).abs().mean())
    # blur, low resolution and JPEG take detail out on average; dim light takes brightness
    assert sharpness(webcam) < sharpness(plain) * 1.05 or float(webcam.mean()) < float(plain.mean())


def test_face_normalisation_ignores_brightness_and_contrast():
    x = torch.rand(3, 1, 48, 48) * 100 + 50
    pre = Preprocess("face")
    assert torch.allclose(pre(x), pre(0.5 * x + 20), atol=1e-4)
    assert pre(x).shape == (3, 3, 48, 48)
    assert Preprocess("imagenet", channels=1)(x).shape == (3, 1, 48, 48)


def test_small_baseline_and_old_configs():
    small = build_model(ModelConfig(arch="small"))
    assert 1.0e6 < sum(p.numel() for p in small.parameters()) < 1.6e6
    assert small(torch.rand(2, 1, 48, 48) * 255).shape == (2, 6)
    old = ModelConfig.from_saved({"arch": "hybrid", "image_size": 48, "num_classes": 6,
                                  "hidden": 512, "dropout": 0.5, "backbone_weights": []})
    assert (old.stem, old.normalization) == ("imagenet", "imagenet")
    with pytest.raises(MultiNetError, match="stem"):
        ModelConfig(stem="tiny")
    # a run from before --labels/--optimizer resumes with what it was trained with
    saved = {"labels": "ferplus", "optimizer": "adamw", "model": {"arch": "hybrid"}}
    resumed = resumed_config(TrainConfig(), {k: v for k, v in saved.items() if k == "model"})
    assert (resumed.labels, resumed.optimizer, resumed.webcam) == ("fer2013", "sgd", False)
    assert resumed.model.stem == "imagenet"
    with pytest.raises(MultiNetError, match="--labels"):
        resumed_config(TrainConfig(labels="mix"), saved)


@pytest.mark.slow
def test_init_from_an_exported_onnx_file(tmp_path):
    from multinet_emotion.training.export import export_onnx

    data, _ = toy_with_votes(tmp_path)
    cfg = dict(epochs=1, batch_size=8, max_steps_per_epoch=1, labels="fer2013",
               precision="fp32", channels_last=False,
               model=ModelConfig(arch="small", image_size=SIZE, hidden=16))
    first, _ = fit(TrainConfig(out=tmp_path / "a", **cfg), data)
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": SIZE, "input": "grey",
            "value_range": [0, 255], "arch": "small", "stem": "face", "normalization": "face"}
    onnx_file = export_onnx(first, tmp_path / "a.onnx", meta)
    second, _ = fit(TrainConfig(out=tmp_path / "b", init=onnx_file, lr=0.0, **cfg), data)
    # at lr 0 the dense layers come back from the graph unchanged, and the function too, but
    # for one step of batch-norm running statistics (conv and BN come back fused, unfolded)
    a, b = first.state_dict(), second.state_dict()
    assert torch.allclose(a["head.4.weight"], b["head.4.weight"], atol=1e-6)
    x = torch.from_numpy(data.split("val").images[:16].astype(np.float32)).unsqueeze(1)
    first.eval(), second.eval()
    with torch.no_grad():
        pa, pb = torch.softmax(first(x), 1), torch.softmax(second(x), 1)
    assert float((pa - pb).abs().max()) < 0.1
    with pytest.raises(MultiNetError):
        fit(TrainConfig(out=tmp_path / "c", init=tmp_path / "a" / "run.onnx", **cfg), data)


def test_ablation_bench_refuses_bad_options_before_training(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ablation", Path(__file__).resolve().parents[1] / "bench" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    assert ablation.main(["--archs", "vgg19", "--epochs", "1"]) == 2
    assert "--arch 'vgg19'" in capsys.readouterr().err
    assert ablation.main(["--archs", "small-wide", "--epochs", "1", "--teacher",
                          "missing.onnx"]) == 2
    assert "--teacher missing.onnx: no such model file" in capsys.readouterr().err
    assert ablation.main(["--minutes", "0"]) == 2
    assert ablation.speed("small", 8, steps=3) > 0


@pytest.mark.slow
def test_init_from_an_onnx_file_of_another_face_size(tmp_path):
    """--image-size with --init of an exported file: the layer shapes do not depend on the
    face size, and the batch norms' statistics are measured at the file's own size."""
    from multinet_emotion.training.export import export_onnx
    from multinet_emotion.training.init_weights import init_from, resize_faces

    data, _ = toy_with_votes(tmp_path)
    cfg = dict(epochs=1, batch_size=8, max_steps_per_epoch=1, labels="fer2013",
               precision="fp32", channels_last=False)
    first, _ = fit(TrainConfig(out=tmp_path / "a", model=ModelConfig(
        arch="small", image_size=SIZE, hidden=16), **cfg), data)
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": SIZE, "input": "grey",
            "value_range": [0, 255], "arch": "small", "stem": "face", "normalization": "face"}
    onnx_file = export_onnx(first, tmp_path / "a.onnx", meta)
    images = data.split("train").images
    smaller = resize_faces(images, SIZE - 8)
    assert smaller.shape == (len(images), SIZE - 8, SIZE - 8) and smaller.dtype == np.uint8
    second = build_model(ModelConfig(arch="small", image_size=SIZE - 8, hidden=16))
    init_from(second, onnx_file, smaller)  # images at the new size, as train passes them
    a, b = first.state_dict(), second.state_dict()
    assert torch.allclose(a["head.4.weight"], b["head.4.weight"], atol=1e-6)
    # at the file's size the model computes what the file does
    x = torch.from_numpy(images[:16].astype(np.float32)).unsqueeze(1)
    first.eval(), second.eval()
    with torch.no_grad():
        pa, pb = torch.softmax(first(x), 1), torch.softmax(second(x), 1)
    assert float((pa - pb).abs().max()) < 0.1
