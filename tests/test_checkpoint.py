"""The checkpoint format (multinet_emotion.training.checkpoint): one writer, one reader, clear errors,
and files of earlier versions still readable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS, DisgustPolicy
from multinet_emotion.training.checkpoint import (
    RESUME_KEYS,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    training_meta,
)
from multinet_emotion.training.evaluate import model_facts
from multinet_emotion.training.model import ModelConfig, build_model

SIZE = 32


@pytest.fixture
def small():
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="small", image_size=SIZE, hidden=16, stem="imagenet"))


def meta(**kw) -> dict:
    base = dict(epoch=2, val_accuracy=0.5, labels="ferplus", val_macro_f1=0.4, disgust="merge",
                data="/data/fer2013", train_config={"epochs": 3})
    return training_meta(**{**base, **kw})


def test_round_trip(small, tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, small, meta())
    ckpt = read_checkpoint(path)
    assert ckpt.model_config == small.config and ckpt.meta == meta()
    assert (ckpt.epoch, ckpt.disgust, ckpt.labels_trained) == (2, DisgustPolicy.MERGE, "ferplus")
    assert ckpt.resume == {} and ckpt.state.keys() == small.state_dict().keys()
    model, info = load_checkpoint(path)
    assert not model.training and info.meta == meta() and info.state == {}
    x = torch.rand(3, 1, SIZE, SIZE) * 255
    small.eval()
    with torch.no_grad():
        assert torch.equal(model(x), small(x))
    assert model_facts(path) == (SIZE, DisgustPolicy.MERGE)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary file left


def test_the_on_disk_format_is_the_one_earlier_versions_wrote(small, tmp_path):
    """Key for key what train.py and model.save_model wrote before this module existed, so
    runs and files from earlier versions read, resume and export as they did."""
    save_checkpoint(tmp_path / "best.pt", small, meta())
    raw = torch.load(tmp_path / "best.pt", weights_only=False)
    assert list(raw) == ["model", "model_config", "labels", "meta"]
    assert raw["model_config"] == {"arch": "small", "image_size": SIZE, "num_classes": 6,
                                   "hidden": 16, "dropout": 0.5, "stem": "imagenet",
                                   "normalization": "face", "backbone_weights": []}
    assert raw["labels"] == list(EMOTIONS)
    assert list(raw["meta"]) == ["epoch", "val_accuracy", "labels", "val_macro_f1", "disgust",
                                 "data", "train_config"]
    resume = {"optimizer": {"state": {}}, "epoch": 0, "stale": 1, "history": {"epochs": []}}
    save_checkpoint(tmp_path / "last.pt", small, meta(), resume=resume)
    raw = torch.load(tmp_path / "last.pt", weights_only=False)
    assert list(raw) == ["model", "optimizer", "epoch", "stale", "history", "model_config",
                         "labels", "meta"]
    assert read_checkpoint(tmp_path / "last.pt").resume == resume and list(resume) == list(RESUME_KEYS)
    with pytest.raises(ValueError, match="resume state"):
        save_checkpoint(tmp_path / "x.pt", small, meta(), resume={"epoch": 0})


def test_a_file_from_before_stem_normalization_and_meta_labels_reads(small, tmp_path):
    old_config = {"arch": "small", "image_size": SIZE, "num_classes": 6, "hidden": 16,
                  "dropout": 0.5, "backbone_weights": ["/somewhere/vgg16_bn.pth"]}
    torch.save({"model": small.state_dict(), "model_config": old_config,
                "labels": list(EMOTIONS), "meta": {"epoch": 7}}, tmp_path / "old.pt")
    ckpt = read_checkpoint(tmp_path / "old.pt")
    assert (ckpt.model_config.stem, ckpt.model_config.normalization) == ("imagenet", "imagenet")
    assert ckpt.model_config.backbone_weights == []  # never re-read on loading
    assert (ckpt.epoch, ckpt.disgust, ckpt.labels_trained) == (7, DisgustPolicy.DROP, "fer2013")
    torch.save({"model": small.state_dict(), "model_config": old_config}, tmp_path / "bare.pt")
    model, info = load_checkpoint(tmp_path / "bare.pt")
    assert info.meta == {} and info.epoch is None


@pytest.mark.parametrize("content", ["text", "torchvision", "tensor", "onnx", "empty"])
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(content, small, tmp_path,
                                                          brightness_onnx_model):
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("not a model\n")
    elif content == "torchvision":  # a backbone weights file given where a checkpoint goes
        torch.save(small.state_dict(), path)
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "onnx":
        path.write_bytes(brightness_onnx_model.read_bytes())
    else:
        path.write_bytes(b"")
    for read in (read_checkpoint, load_checkpoint, model_facts):
        with pytest.raises(MultiNetError, match="not a MultiNetEmotion checkpoint") as e:
            read(path)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_missing_file_wrong_labels_and_wrong_weights(small, tmp_path):
    with pytest.raises(MultiNetError, match="model file not found"):
        read_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "best.pt"
    save_checkpoint(path, small, meta())
    raw = torch.load(path, weights_only=False)
    torch.save({**raw, "labels": list(reversed(EMOTIONS))}, path)
    with pytest.raises(MultiNetError, match=f"{path}: labels .* differ"):
        read_checkpoint(path)
    torch.save({**raw, "model_config": {**raw["model_config"], "hidden": 32}}, path)
    with pytest.raises(MultiNetError, match=f"{path}: the weights do not fit"):
        load_checkpoint(path)
    torch.save({**raw, "model_config": {**raw["model_config"], "arch": "vgg19"}}, path)
    with pytest.raises(MultiNetError, match=f"{path}: .*--arch 'vgg19'"):
        read_checkpoint(path)


def test_an_interrupted_write_keeps_the_previous_file(small, tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, small, meta(epoch=1))

    def broken_save(obj, f):
        open(f, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small, meta(epoch=2))
    monkeypatch.undo()
    assert read_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_importing_it_and_evaluate_needs_no_torch():
    code = ("import sys, multinet_emotion.training.checkpoint, multinet_emotion.training.evaluate; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_only_the_checkpoint_module_saves_or_loads_checkpoints():
    """torch.save/torch.load appear in the package only in checkpoint.py (and in model.py's
    reader of torchvision backbone weights, which are not checkpoints)."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "multinet_emotion"
    users = sorted(p.name for p in src.rglob("*.py")
                   if "torch.save(" in p.read_text() or "torch.load(" in p.read_text())
    assert users == ["checkpoint.py", "model.py"]
    assert "torch.save(" not in (src / "training" / "model.py").read_text()
