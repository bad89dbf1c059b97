import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synth import toy_faces

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.training.checkpoint import load_checkpoint
from multinet_emotion.training.datasets import Dataset, Split
from multinet_emotion.training.model import ModelConfig, build_model, load_backbone_weights
from multinet_emotion.training.train import TrainConfig, augment, fit, fit_in_budget, lr_at

SIZE = 32  # small toy images to keep tests fast


def toy_dataset(n_per_class=24, seed=0) -> Dataset:
    images, labels = toy_faces(n_per_class, SIZE, seed)
    val_images, val_labels = toy_faces(6, SIZE, seed + 1)
    src = [f"toy{i}" for i in range(len(labels))]
    return Dataset(Path("toy"), "folders", {
        "train": Split(images, labels, src),
        "val": Split(val_images, val_labels, src[:len(val_labels)]),
        "test": Split(val_images, val_labels, src[:len(val_labels)])})


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(out=tmp_path / "run", epochs=2, batch_size=16, lr=0.02, augment=False,
                optimizer="sgd", weight_decay=5e-4, labels="fer2013",
                label_smoothing=0.0, precision="fp32", channels_last=False, eval_batch_size=64,
                # what the loop tests check (learning, resume, DDP, early stop, --init) does not
                # depend on the network: the 1.2 M-parameter CNN; the real hybrid is built,
                # stepped and exported once, in test_the_full_size_hybrid_builds_and_exports
                model=ModelConfig(arch="small", image_size=SIZE, hidden=32))
    base.update(kw)
    return TrainConfig(**base)


def test_the_full_size_hybrid_builds_and_exports(tmp_path):
    """The one test of the real network at full size: ResNet50 and VGG16-BN side by side on
    48x48 faces, with both stems; forward, backward (one training step reaches both backbones'
    first layers) and export to ONNX, which ONNX Runtime runs as PyTorch does."""
    from multinet_emotion.runtime.classifier import load_model
    from multinet_emotion.training.export import export_onnx, torch_probs

    x = torch.rand(2, 1, 48, 48) * 255
    face = build_model(ModelConfig(arch="hybrid", image_size=48))  # stem="face", the default
    imagenet = build_model(ModelConfig(arch="hybrid", image_size=48, stem="imagenet"))
    # the stems have the same layers, so the same weight files fit both ...
    shapes = {k: v.shape for k, v in face.state_dict().items()}
    assert shapes == {k: v.shape for k, v in imagenet.state_dict().items()}
    # ... but the face stem keeps the resolution a 48x48 face needs (ImageNet layout: 12 and 1)
    seen: dict[str, int] = {}

    def record(key):
        return lambda module, inputs, output: seen.__setitem__(key, output.shape[-1])

    for model, resolutions in ((face, (24, 3)), (imagenet, (12, 1))):
        hooks = [model.resnet.layer1.register_forward_hook(record("resnet")),
                 model.vgg.register_forward_hook(record("vgg"))]
        model.eval()
        with torch.no_grad():
            assert model.features(x).shape == (2, 2048 + 512)  # both backbones, concatenated
            assert model(x).shape == (2, 6)
        assert (seen.pop("resnet"), seen.pop("vgg")) == resolutions
        for hook in hooks:
            hook.remove()
    face.train()
    torch.nn.functional.cross_entropy(face(x), torch.tensor([0, 3])).backward()
    for name, p in (("ResNet50 stem", face.resnet.conv1.weight), ("VGG16 stem", face.vgg[0].weight),
                    ("head", face.head[-1].weight)):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    meta = {"version": 1, "labels": list(EMOTIONS), "input_size": 48, "input": "grey",
            "value_range": [0, 255], "arch": "hybrid", "disgust": "drop", "quantized": False}
    clf = load_model(export_onnx(face.eval(), tmp_path / "hybrid.onnx", meta))
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(clf.predict(faces), torch_probs(face, faces), atol=1e-4)
    assert clf.info.arch == "hybrid" and clf.input_size == 48
    assert build_model(ModelConfig(arch="resnet50")).features(x).shape == (2, 2048)
    assert build_model(ModelConfig(arch="vgg16")).features(x).shape == (2, 512)
    with pytest.raises(MultiNetError, match="--arch 'vgg19'"):
        build_model(ModelConfig(arch="vgg19"))


def test_backbone_weights_load_from_a_local_file(tmp_path):
    """Files in torchvision's layout, made from torchvision's own layer lists; the network is
    built once (a missing file is refused before any network is built)."""
    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    def vgg_file(name: str, batch_norm: bool) -> tuple[str, torch.nn.Module]:
        features = make_layers(cfgs["D"], batch_norm=batch_norm)  # vgg16(_bn)().features
        # the classifier, ignored on loading: its last layer stands for all three (0.5 GB)
        state = {**{f"features.{k}": v for k, v in features.state_dict().items()},
                 "classifier.6.weight": torch.zeros(1000, 4096), "classifier.6.bias": torch.zeros(1000)}
        torch.save(state, tmp_path / name)
        return str(tmp_path / name), features

    vgg16_bn, ref = vgg_file("vgg16_bn.pth", batch_norm=True)
    model = build_model(ModelConfig(arch="hybrid", backbone_weights=[vgg16_bn]))
    assert torch.equal(model.vgg[0].weight, ref[0].weight)
    vgg16, _ = vgg_file("vgg16.pth", batch_norm=False)
    with pytest.raises(MultiNetError, match="plain VGG16"):
        load_backbone_weights(model, Path(vgg16))
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(MultiNetError, match="no ResNet50 branch"):
        build_model(ModelConfig(arch="small", backbone_weights=[str(tmp_path / "r50.pth")]))
    with pytest.raises(MultiNetError, match="not found"):
        build_model(ModelConfig(backbone_weights=[str(tmp_path / "missing.pth")]))


def test_augment_keeps_shape_range_and_is_seeded():
    x = torch.rand(8, 1, 48, 48) * 255
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 255
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[50] < lrs[10] and lrs[-1] < 0.001


@pytest.mark.slow
def test_learns_a_separable_toy_problem(tmp_path):
    model, history = fit(config(tmp_path, epochs=4, lr=0.05), toy_dataset(12))
    last = history["epochs"][-1]
    assert last["val_accuracy"] >= 0.9, history["epochs"]
    out = tmp_path / "run"
    for name in ("best.pt", "last.pt", "history.json", "curves.png", "config.json",
                 "data_report.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == list(range(1, 5))
    best, ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.epoch == saved["best_epoch"]
    assert ckpt.meta["val_accuracy"] == saved["best_val_accuracy"]


@pytest.mark.slow
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = toy_dataset(8)
    settings = dict(epochs=3, augment=True, batch_size=8, max_steps_per_epoch=2)
    whole, h1 = fit(config(tmp_path / "a", **settings), data)
    # the same run, interrupted after its first epoch ...
    fit(config(tmp_path / "b", stop_after_epochs=1, **settings), data)
    ckpt = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["meta"]["disgust"] == "drop"
    # ... and resumed with nothing but --resume: the run's own settings are used
    resumed, h2 = fit(TrainConfig(out=tmp_path / "b" / "run", resume=True), data)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert [e["val_loss"] for e in h1["epochs"]] == [e["val_loss"] for e in h2["epochs"]]


def test_resume_refuses_options_that_change_the_run(tmp_path):
    data = toy_dataset(3)
    fit(config(tmp_path, epochs=2, stop_after_epochs=1, max_steps_per_epoch=1), data)
    with pytest.raises(MultiNetError, match="--lr 0.5 differs from the run's"):
        fit(TrainConfig(out=tmp_path / "run", resume=True, lr=0.5), data)
    with pytest.raises(MultiNetError, match="already trained 1 epochs"):
        fit(TrainConfig(out=tmp_path / "run", resume=True, epochs=1), data)
    with pytest.raises(MultiNetError, match="--arch resnet50 differs|--arch"):
        fit(TrainConfig(out=tmp_path / "run", resume=True,
                        model=ModelConfig(arch="resnet50")), data)


def test_resume_with_other_epochs_replans_the_schedule(tmp_path):
    data = toy_dataset(3)
    fit(config(tmp_path, epochs=4, batch_size=4, stop_after_epochs=1, max_steps_per_epoch=2),
        data)
    _, history = fit(TrainConfig(out=tmp_path / "run", resume=True, epochs=3), data)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert history["replanned"] == [{"after_epoch": 1, "from_epochs": 4, "to_epochs": 3}]
    assert history["config"]["epochs"] == 3
    # the last step (5) follows the new plan: 6 steps in all, not 8
    warmup = max(1, int(history["config"]["warmup"] * 2))
    assert history["epochs"][-1]["lr"] == pytest.approx(lr_at(5, 6, warmup, 0.02))
    assert history["epochs"][-1]["lr"] != pytest.approx(lr_at(5, 8, warmup, 0.02))


def test_time_budget_replans_the_epochs_that_fit(tmp_path):
    import time
    cfg = TrainConfig(out=tmp_path / "run", epochs=10, minutes=1)
    history = {"config": {"epochs": 10}}
    # 25 s used of 60, epochs of 10 s: 1 done + 3 more
    fit_in_budget(cfg, history, 0, time.time() - 25, 10.0)
    assert cfg.epochs == 4 and history["config"]["epochs"] == 4
    assert history["replanned"][-1] == {"after_epoch": 1, "from_epochs": 10, "to_epochs": 4,
                                        "reason": "--minutes 1"}
    # a faster epoch later may lengthen the plan again, never past what was asked
    fit_in_budget(cfg, history, 1, time.time() - 20, 2.0)
    assert cfg.epochs == 10 and len(history["replanned"]) == 2
    fit_in_budget(cfg, history, 2, time.time() - 20, 2.0)  # no change: nothing logged
    assert len(history["replanned"]) == 2


def test_a_spent_time_budget_ends_the_run_after_the_epoch(tmp_path):
    _, history = fit(config(tmp_path, epochs=5, minutes=0.0001, max_steps_per_epoch=1),
                     toy_dataset(3))
    assert [e["epoch"] for e in history["epochs"]] == [1]
    assert history["replanned"][0]["to_epochs"] == 1
    assert json.loads((tmp_path / "run" / "history.json").read_text())["config"]["epochs"] == 1


def test_existing_run_needs_resume_and_resume_needs_a_run(tmp_path):
    data = toy_dataset(2)
    with pytest.raises(MultiNetError, match="nothing to resume"):
        fit(config(tmp_path, resume=True), data)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"x")
    with pytest.raises(MultiNetError, match="pass --resume"):
        fit(config(tmp_path), data)


def test_stops_early_when_validation_stops_improving(tmp_path):
    _, history = fit(config(tmp_path, epochs=6, lr=0.0, patience=1, max_steps_per_epoch=1),
                     toy_dataset(3))
    assert len(history["epochs"]) == 2  # epoch 2 did not improve on epoch 1 at lr 0


WORKER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import config, toy_dataset
from multinet_emotion.training.train import fit
import torch.distributed as dist
cfg = config(Path({out!r}), epochs=1, max_steps_per_epoch=3, augment=True)
model, history = fit(cfg, toy_dataset(8))
torch.save(model.state_dict(), Path({out!r}) / f"rank{{dist.get_rank()}}.pt")
"""


@pytest.mark.slow
def test_two_process_ddp_keeps_weights_identical(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MULTINET_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", str(script)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the run did train: a head weight moved away from a fresh initialisation
    torch.manual_seed(0)
    fresh = build_model(config(tmp_path).model).state_dict()
    assert not torch.equal(a["head.4.weight"], fresh["head.4.weight"])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["world_size"] == 2


def test_init_starts_from_a_checkpoint(tmp_path):
    data = toy_dataset(3)
    first, _ = fit(config(tmp_path / "a", epochs=1, max_steps_per_epoch=1), data)
    second, _ = fit(config(tmp_path / "b", epochs=1, max_steps_per_epoch=1, lr=0.0,
                           init=tmp_path / "a" / "run" / "last.pt"), data)
    # at lr 0 only batch-norm statistics move: every weight is the starting checkpoint's
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    with pytest.raises(MultiNetError, match="same --arch"):  # the small CNN into a ResNet50
        fit(config(tmp_path / "c", epochs=1, max_steps_per_epoch=1,
                   init=tmp_path / "a" / "run" / "last.pt",
                   model=ModelConfig(arch="resnet50", image_size=SIZE, hidden=32)), data)
