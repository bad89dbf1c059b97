import json

import numpy as np
import pytest
import torch

from multinet_emotion import MultiNetError
from multinet_emotion.classifier import load_model
from multinet_emotion.datasets import DataConfig
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.evaluate import EvalConfig, evaluate
from multinet_emotion.export import ExportConfig, export
from multinet_emotion.model import ModelConfig, build_model, save_model
from synth import toy_faces, write_folder

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="vgg16", image_size=SIZE, hidden=32))
    # non-trivial weights: a few SGD steps on toy data so the outputs are not near-uniform
    images, labels = toy_faces(8, SIZE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(images).float().unsqueeze(1)), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_model(path, model, {"epoch": 3, "disgust": "drop"})
    return path


@pytest.mark.slow
def test_export_fp32_and_int8_match_pytorch(checkpoint, tmp_path):
    data = write_folder(tmp_path / "data", *toy_faces(12, SIZE))
    report = export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "m.onnx",
                                 calibration=data, calibration_images=48, crop_scale=1.2))
    assert report["fp32_max_abs_diff"] < 1e-4
    assert report["int8_top1_agreement"] >= 0.9
    assert report["int8_max_abs_diff"] < 0.2
    clf = load_model(tmp_path / "m.onnx")
    assert clf.info.quantized and clf.input_size == SIZE and clf.crop_scale == 1.2
    assert clf.info.arch == "vgg16" and list(clf.info.labels) == list(EMOTIONS)
    fp32 = load_model(report["fp32"])
    assert not fp32.info.quantized
    probs = fp32.predict(toy_faces(2, SIZE)[0])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(clf.predict(toy_faces(2, SIZE)[0]).sum(1), 1, atol=1e-4)


@pytest.mark.slow
def test_evaluate_checkpoint_and_onnx_agree(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "data", *toy_faces(10, SIZE))
    export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "m.onnx", quantize=False))
    results = {}
    for name in ("best.pt", "m.onnx"):
        model = checkpoint if name == "best.pt" else tmp_path / "m.onnx"
        results[name] = evaluate(EvalConfig(model=model, split="all", out=tmp_path / f"report-{name}",
                                            data=DataConfig(path=data, image_size=SIZE)))
        for f in ("metrics.json", "report.md", "confusion.png", "confusion_normalized.png"):
            assert (tmp_path / f"report-{name}" / f).is_file()
    a, b = results["best.pt"], results["m.onnx"]
    assert a["n"] == b["n"] == 60
    assert a["confusion"] == b["confusion"]
    saved = json.loads((tmp_path / "report-m.onnx" / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(b["accuracy"])
    assert "| fear |" in (tmp_path / "report-m.onnx" / "report.md").read_text()


def test_evaluate_rejects_a_model_of_another_input_size(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "data", *toy_faces(2, SIZE))
    with pytest.raises(MultiNetError, match="takes 32x32 faces"):
        evaluate(EvalConfig(model=checkpoint, split="all", out=tmp_path / "r",
                            data=DataConfig(path=data, image_size=48)))
