"""Distillation (``train --teacher``): the cached teacher outputs, the softened and mixed
targets, which augmented views are mirrored, the student architecture, and the training loop
fed the mix (on toy faces and a teacher exported from a tiny network)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synth import toy_faces
from test_train_recipe import toy_with_votes

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.runtime.classifier import EmotionClassifier, load_model
from multinet_emotion.training import distill
from multinet_emotion.training.augment import augment
from multinet_emotion.training.datasets import _read_image
from multinet_emotion.training.distill import augment_flips, mixed_targets, soften, teacher_outputs
from multinet_emotion.training.export import export_onnx, torch_probs
from multinet_emotion.training.model import ModelConfig, build_model
from multinet_emotion.training.train import TrainConfig, fit, training_targets

SIZE = 32
BIAS = [0.3, 0.0, -0.2, 0.0, 0.1, 0.0]


def ramp_faces(n_per_class: int, size: int = SIZE, seed: int = 0):
    """Toy faces with a left-to-right brightness ramp, so a mirrored face is told apart (by
    the eye of :func:`mirrored`, and by a teacher that learned them)."""
    images, labels = toy_faces(n_per_class, size, seed)
    ramp = np.linspace(0, 255, size)[None, None, :]
    return (images * 0.4 + ramp * 0.6).astype(np.uint8), labels


def mirrored(x: torch.Tensor) -> np.ndarray:
    """Which augmented ramp faces [N,1,S,S] run right to left (were mirrored)."""
    x = x[:, 0]
    return (x[:, :, -6:].mean((1, 2)) < x[:, :, :6].mean((1, 2))).numpy()


def make_teacher(path: Path, size: int = SIZE, seed: int = 0, class_bias=BIAS):
    """A tiny network trained 25 steps on ramp faces, exported (fp32) with class offsets
    built into the graph and named in the metadata, as the shipped model has them."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="small", image_size=size, hidden=16))
    images, labels = ramp_faces(8, size, seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(images).float().unsqueeze(1)), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": size, "input": "grey",
            "value_range": [0, 255], "arch": "small", "disgust": "drop", "quantized": False,
            "class_bias": class_bias}
    export_onnx(model, path, meta, class_bias=class_bias)
    return model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def teacher_runs(monkeypatch):
    """Counts the teacher's batches (EmotionClassifier.predict calls)."""
    calls = {"n": 0, "fail_at": None}
    real = EmotionClassifier.predict

    def counted(self, crops):
        calls["n"] += 1
        if calls["fail_at"] is not None and calls["n"] >= calls["fail_at"]:
            raise KeyboardInterrupt("interrupted")
        return real(self, crops)

    monkeypatch.setattr(EmotionClassifier, "predict", counted)
    return calls


def test_soften_undoes_the_class_offsets_and_divides_the_logits():
    logits = np.random.default_rng(0).normal(size=(5, 6)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(soften(p, 1.0), p, atol=1e-6)
    at2 = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    np.testing.assert_allclose(soften(p, 2.0), at2, atol=1e-6)
    biased = p * np.exp(BIAS)
    biased /= biased.sum(1, keepdims=True)  # what export.py builds into the graph
    np.testing.assert_allclose(soften(biased, 2.0, BIAS), at2, atol=1e-6)
    assert soften(p, 4.0).max() < soften(p, 2.0).max() < p.max()  # softer with T
    base = np.eye(6, dtype=np.float32)[[0, 1, 2, 3, 4]]
    teacher = np.stack([p, p[:, ::-1]], 1)
    mix = mixed_targets(base, teacher, 0.25, 2.0)
    assert mix.shape == (5, 2, 6)
    np.testing.assert_allclose(mix[:, 0], 0.25 * at2 + 0.75 * base, atol=1e-6)
    np.testing.assert_allclose(mix[:, 1], 0.25 * soften(p[:, ::-1], 2.0) + 0.75 * base, atol=1e-6)
    np.testing.assert_allclose(mix.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(MultiNetError, match="do not fit"):
        mixed_targets(base[:3], teacher, 0.5, 2.0)


@pytest.mark.parametrize("webcam", [False, True])
def test_augment_flips_tells_which_faces_augment_mirrors(webcam):
    """augment_flips reads augment.py's flip draws without drawing: checked against what
    augment itself does to ramp faces (a peek at the wrong draw agrees half the time)."""
    images, _ = ramp_faces(20)
    x = torch.from_numpy(images).float().unsqueeze(1)
    assert not mirrored(x).any()
    agree = []
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        before = g.get_state()
        flips = augment_flips(g, len(x))
        assert torch.equal(g.get_state(), before)  # nothing drawn
        assert 0.3 < flips.mean() < 0.7
        agree.append((flips == mirrored(augment(x, g, webcam))).mean())
    # the webcam's side light and occlusions hide the ramp of an odd face from mirrored()
    assert min(agree) == 1.0 if not webcam else np.mean(agree) > 0.97, agree


def test_resize_for_reads_faces_as_datasets_does(tmp_path):
    images, _ = toy_faces(1, 48)
    Image.fromarray(images[0]).save(tmp_path / "face.png")
    ours = distill.resize_for(images[:3], 44)
    assert ours.shape == (3, 44, 44) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours[0], _read_image(tmp_path / "face.png", 44))
    assert distill.resize_for(images, 48) is images


def test_teacher_cache_is_chunked_resumable_and_reused(tmp_path, cache, teacher_runs):
    model = make_teacher(tmp_path / "teacher.onnx", size=28)
    images, _ = ramp_faces(7)  # 42 faces at 32x32, for a 28x28 teacher
    teacher_runs["fail_at"] = 5  # interrupted in the third chunk of 16
    with pytest.raises(KeyboardInterrupt):
        teacher_outputs(tmp_path / "teacher.onnx", images, chunk=16)
    parts = list(cache.glob("teacher/*.parts/*.npy"))
    assert len(parts) == 2 and not list(cache.glob("teacher/*.npy"))
    teacher_runs.update(n=0, fail_at=None)
    out, info = teacher_outputs(tmp_path / "teacher.onnx", images, chunk=16)
    assert teacher_runs["n"] == 2  # only the missing chunk: faces and mirror images
    assert out.shape == (42, 2, 6) and out.dtype == np.float32
    faces = distill.resize_for(images, 28)
    np.testing.assert_allclose(out[:, 0], torch_probs(model, faces, class_bias=BIAS), atol=1e-5)
    np.testing.assert_allclose(out[:, 1], torch_probs(model, faces[:, :, ::-1].copy(),
                                                      class_bias=BIAS), atol=1e-5)
    assert np.abs(out[:, 0] - out[:, 1]).max() > 0.01  # the mirror pass is a pass of its own
    assert info["input_size"] == 28 and info["class_bias"] == BIAS
    assert Path(info["cache"]).is_file() and not list(cache.glob("teacher/*.parts"))
    sidecar = json.loads(Path(info["cache"]).with_suffix(".json").read_text())
    assert sidecar["teacher_sha256"] == info["teacher_sha256"] and sidecar["faces"] == 42
    teacher_runs["n"] = 0
    again, _ = teacher_outputs(tmp_path / "teacher.onnx", images, chunk=16)
    assert teacher_runs["n"] == 0 and np.array_equal(again, out)  # read from the cache
    # another teacher file or other faces: another cache file
    make_teacher(tmp_path / "other.onnx", size=28, seed=1)
    _, other = teacher_outputs(tmp_path / "other.onnx", images)
    _, fewer = teacher_outputs(tmp_path / "teacher.onnx", images[:-1])
    assert len({info["cache"], other["cache"], fewer["cache"]}) == 3
    with pytest.raises(MultiNetError, match="exported .onnx"):
        teacher_outputs(tmp_path / "missing.onnx", images)


def student_config(tmp_path, folder, **kw) -> TrainConfig:
    base = dict(out=tmp_path / "run", epochs=2, batch_size=8, max_steps_per_epoch=3, lr=0.02,
                optimizer="sgd", labels="ferplus", ferplus=folder, label_smoothing=0.0,
                precision="fp32", channels_last=False, eval_batch_size=64, augment=True,
                webcam=False, teacher=tmp_path / "teacher.onnx", teacher_mix=0.7,
                teacher_temperature=2.0,
                model=ModelConfig(arch="small", image_size=SIZE, hidden=16))
    base.update(kw)
    return TrainConfig(**base)


def test_training_with_a_teacher_targets_the_mix(tmp_path, cache, teacher_runs, monkeypatch):
    """Each training step's target is 0.7 x the teacher at T=2 (its offsets undone) + 0.3 x
    the FER+ votes, of the very face augmented, mirrored when augment mirrored it; the teacher
    runs once for two runs; a resumed run keeps its teacher and refuses another one."""
    import multinet_emotion.training.train as train_module

    data, folder = toy_with_votes(tmp_path)  # every fifth training image is not a face
    for split in data.splits.values():  # ramps, so that a mirrored face can be told apart
        split.images[:] = (split.images * 0.4 + np.linspace(0, 255, SIZE) * 0.6).astype(np.uint8)
    train = data.split("train")
    model = make_teacher(tmp_path / "teacher.onnx")
    # the expected targets, made independently of distill.py: the PyTorch teacher's logits / T
    with torch.no_grad():
        def soft(faces):
            x = torch.from_numpy(np.ascontiguousarray(faces)).float().unsqueeze(1)
            return torch.softmax(model(x) / 2.0, 1).numpy()
        teacher_t = {m: soft(train.images[:, :, ::-1] if m else train.images) for m in (0, 1)}
    votes = training_targets(train, TrainConfig(labels="ferplus", ferplus=folder), data)
    vote_of = dict(zip(votes.split.sources, votes.probs))
    index_of = {img.tobytes(): i for i, img in enumerate(train.images)}

    steps = []
    real_augment, real_loss = train_module.augment, train_module.soft_cross_entropy

    def spy_augment(x, g, webcam=True):
        out = real_augment(x, g, webcam)
        steps.append({"faces": x[:, 0].round().to(torch.uint8).numpy(), "mirrored": mirrored(out)})
        return out

    def spy_loss(logits, target, weights, smoothing):
        steps[-1]["target"] = target.numpy().copy()
        return real_loss(logits, target, weights, smoothing)

    monkeypatch.setattr(train_module, "augment", spy_augment)
    monkeypatch.setattr(train_module, "soft_cross_entropy", spy_loss)
    _, history = fit(student_config(tmp_path, folder, stop_after_epochs=1), data)
    assert len(steps) == 3 and teacher_runs["n"] == 2  # one batch of faces, one of mirrors
    seen_mirrored = []
    for step in steps:
        for face, was_mirrored, target in zip(step["faces"], step["mirrored"], step["target"]):
            i = index_of[face.tobytes()]
            assert train.sources[i] in vote_of  # a face FER+ calls not-a-face is never trained on
            expected = 0.7 * teacher_t[int(was_mirrored)][i] + 0.3 * vote_of[train.sources[i]]
            np.testing.assert_allclose(target, expected, atol=1e-4)
            seen_mirrored.append(was_mirrored)
    assert 0 < np.mean(seen_mirrored) < 1
    assert history["teacher"]["mix"] == 0.7 and history["teacher"]["temperature"] == 2.0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["teacher"], saved["teacher_mix"]) == (str(tmp_path / "teacher.onnx"), 0.7)

    # a second run with the same teacher and faces: from the cache, the teacher is not run
    teacher_runs["n"] = 0
    steps.clear()
    fit(student_config(tmp_path, folder, out=tmp_path / "second", epochs=1), data)
    assert teacher_runs["n"] == 0 and len(steps) == 3
    # resumed with nothing but --resume: the run's teacher, mix and temperature
    _, history = fit(TrainConfig(out=tmp_path / "run", resume=True, ferplus=folder), data)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2] and history["teacher"]["mix"] == 0.7
    # a teacher file that changed under a run is refused
    fit(student_config(tmp_path, folder, out=tmp_path / "third", stop_after_epochs=1), data)
    make_teacher(tmp_path / "teacher.onnx", seed=3)
    with pytest.raises(MultiNetError, match="not the teacher this run was trained with"):
        fit(TrainConfig(out=tmp_path / "third", resume=True, ferplus=folder), data)


def test_the_student_architectures_export_to_onnx(tmp_path):
    sizes = {}
    for arch in ("small", "small-wide"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch=arch, image_size=44)).eval()
        sizes[arch] = sum(p.numel() for p in model.parameters())
        meta = {"version": 1, "labels": list(EMOTIONS), "input_size": 44, "input": "grey",
                "value_range": [0, 255], "arch": arch, "disgust": "drop", "quantized": False}
        clf = load_model(export_onnx(model, tmp_path / f"{arch}.onnx", meta))
        faces = np.random.default_rng(0).integers(0, 256, (4, 44, 44), dtype=np.uint8)
        np.testing.assert_allclose(clf.predict(faces), torch_probs(model, faces), atol=1e-4)
        assert clf.info.arch == arch
    assert 1.0e6 < sizes["small"] < 1.5e6 and 2.0e6 < sizes["small-wide"] < 3.0e6, sizes


@pytest.mark.slow
def test_a_distilled_student_exports_to_int8(tmp_path, cache):
    """The student's checkpoint goes through the export command's own path (int8 QDQ,
    calibrated on faces, checked against PyTorch), as the small CNN's does."""
    from synth import write_folder

    from multinet_emotion.training.export import ExportConfig, export

    data, folder = toy_with_votes(tmp_path)
    make_teacher(tmp_path / "teacher.onnx")
    fit(student_config(tmp_path, folder, epochs=1,
                       model=ModelConfig(arch="small-wide", image_size=SIZE, hidden=16)), data)
    calibration = write_folder(tmp_path / "faces", *toy_faces(6, SIZE))
    report = export(ExportConfig(checkpoint=tmp_path / "run" / "best.pt",
                                 out=tmp_path / "student.onnx", calibration=calibration,
                                 calibration_images=32))
    assert report["fp32_max_abs_diff"] < 1e-4 and report["int8_top1_agreement"] >= 0.8
    clf = load_model(tmp_path / "student.onnx")
    assert clf.info.quantized and clf.info.arch == "small-wide" and clf.input_size == SIZE


def test_teacher_options_on_the_command_line():
    import argparse

    from multinet_emotion import options
    from multinet_emotion.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    args = train.parse_args(["--data", "x", "--teacher", "t.onnx", "--teacher-mix", "0.3",
                             "--teacher-temperature", "3", "--arch", "small-wide"])
    config = TrainConfig(**options.values(TrainConfig, args))
    assert (config.teacher, config.teacher_mix, config.teacher_temperature) == \
        (Path("t.onnx"), 0.3, 3.0)
    assert options.values(ModelConfig, args)["arch"] == "small-wide"
    defaults = TrainConfig(**options.values(TrainConfig, train.parse_args(["--data", "x"])))
    assert (defaults.teacher, defaults.teacher_mix, defaults.teacher_temperature) == (None, 0.5, 2.0)
    with pytest.raises(MultiNetError, match="--teacher-mix 1.5: must be 0 to 1"):
        TrainConfig(teacher_mix=1.5)
    with pytest.raises(MultiNetError, match="--teacher-temperature 0: must be 0.1 to 20"):
        TrainConfig(teacher_temperature=0)
