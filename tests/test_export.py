import json

import numpy as np
import pytest
import torch
from synth import toy_faces, write_folder

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.runtime.classifier import load_model
from multinet_emotion.training.checkpoint import load_checkpoint, save_checkpoint
from multinet_emotion.training.datasets import DataConfig
from multinet_emotion.training.evaluate import EvalConfig, evaluate
from multinet_emotion.training.export import ExportConfig, export, parse_class_bias, torch_probs
from multinet_emotion.training.metrics import apply_class_bias
from multinet_emotion.training.model import ModelConfig, build_model

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # the small network: export, parity and class bias do not depend on its size (the full
    # hybrid's export: test_train.py::test_the_full_size_hybrid_builds_trains_and_exports)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="small", image_size=SIZE, hidden=32))
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
    save_checkpoint(path, model, {"epoch": 3, "disgust": "drop"})
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
    assert clf.info.arch == "small" and list(clf.info.labels) == list(EMOTIONS)
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


def _float_convs(path, tmp_path):
    """Convolutions ONNX Runtime leaves in float (not fused into int8 kernels)."""
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "Conv" for n in onnx.load(so.optimized_model_filepath).graph.node)


@pytest.mark.slow
def test_flip_pass_given_requantized_weights_is_repaired(checkpoint, tmp_path):
    """torch 2.11 (a GPU machine) hands the flip pass its weights through Identity nodes; the
    quantiser then re-quantises them at run time and ONNX Runtime runs that pass in float
    (5 times slower for the hybrid). share_requantized_weights gives it the int8 weights."""
    import onnx
    from onnx import helper, numpy_helper

    from multinet_emotion.runtime.onnx_graph import share_requantized_weights

    data = write_folder(tmp_path / "data", *toy_faces(6, SIZE))
    export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "good.onnx", calibration=data,
                        calibration_images=32, tta_flip=True))
    good = onnx.load(str(tmp_path / "good.onnx"))
    assert share_requantized_weights(good) == 0  # a file exported here needs nothing
    assert _float_convs(tmp_path / "good.onnx", tmp_path) == 0
    # the other exporter's graph: pass 2 reads pass 1's weights through Identity, quantised
    # again per tensor, and its biases through Identity
    bad = onnx.load(str(tmp_path / "good.onnx"))
    made = {o: n for n in bad.graph.node for o in n.output}
    convs = {n.name: n for n in bad.graph.node if n.op_type == "Conv"}
    pairs = [(convs[name.replace("_1/Conv", "/Conv")], c) for name, c in convs.items()
             if name.endswith("_1/Conv")]  # the second call's layer names end in _1
    half = len(pairs)
    assert half >= 2 and 2 * half == len(convs)
    for k, (c1, c2) in enumerate(pairs):
        w = numpy_helper.to_array(next(i for i in bad.graph.initializer
                                       if i.name == made[c1.input[1]].input[0]))
        scale = float(np.abs(w).max()) * 0.05 / 127 + 1e-6
        bad.graph.initializer.extend([
            numpy_helper.from_array(np.asarray(scale, np.float32), f"s{k}"),
            numpy_helper.from_array(np.asarray(128, np.uint8), f"z{k}")])
        bad.graph.node.extend([
            helper.make_node("Identity", [c1.input[1]], [f"i{k}"]),
            helper.make_node("QuantizeLinear", [f"i{k}", f"s{k}", f"z{k}"], [f"q{k}"]),
            helper.make_node("DequantizeLinear", [f"q{k}", f"s{k}", f"z{k}"], [f"d{k}"])])
        c2.input[1] = f"d{k}"
        if len(c1.input) > 2:
            bad.graph.node.append(helper.make_node("Identity", [c1.input[2]], [f"b{k}"]))
            c2.input[2] = f"b{k}"
    from multinet_emotion.runtime.onnx_graph import _topological_sort
    _topological_sort(bad.graph)
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    assert _float_convs(tmp_path / "bad.onnx", tmp_path) >= half
    assert share_requantized_weights(bad) == half
    onnx.checker.check_model(bad)
    onnx.save(bad, str(tmp_path / "repaired.onnx"))
    assert _float_convs(tmp_path / "repaired.onnx", tmp_path) == 0
    faces = toy_faces(3, SIZE)[0]
    want = load_model(tmp_path / "good.onnx").predict(faces)
    got = load_model(tmp_path / "repaired.onnx").predict(faces)
    np.testing.assert_allclose(got, want, atol=0.02)


def test_evaluate_rejects_a_model_of_another_input_size(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "data", *toy_faces(2, SIZE))
    with pytest.raises(MultiNetError, match="takes 32x32 faces"):
        evaluate(EvalConfig(model=checkpoint, split="all", out=tmp_path / "r",
                            data=DataConfig(path=data, image_size=48)))


def test_export_builds_the_class_bias_into_the_graph(checkpoint, tmp_path):
    bias = [0.0, 0.8, -0.4, 0.0, 0.3, -1.2]
    faces = toy_faces(3, SIZE)[0]
    plain = export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "plain.onnx",
                                quantize=False))
    biased = export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "bias.onnx",
                                 quantize=False, tta_flip=True, class_bias=bias))
    assert plain["fp32_max_abs_diff"] < 1e-4 and biased["fp32_max_abs_diff"] < 1e-4
    clf = load_model(tmp_path / "bias.onnx")
    assert clf.info.class_bias == tuple(bias) and clf.info.tta_flip
    assert load_model(tmp_path / "plain.onnx").info.class_bias is None
    model, _ = load_checkpoint(checkpoint)
    expected = apply_class_bias(torch_probs(model, faces, tta_flip=True), bias)
    np.testing.assert_allclose(clf.predict(faces), expected, atol=1e-5)
    # evaluate applies the same offsets to the checkpoint; an ONNX file refuses them
    data = write_folder(tmp_path / "data", *toy_faces(4, SIZE))
    cfg = DataConfig(path=data, image_size=SIZE)
    a = evaluate(EvalConfig(model=checkpoint, split="all", tta_flip=True, class_bias=bias,
                            out=tmp_path / "ra", data=cfg))
    b = evaluate(EvalConfig(model=tmp_path / "bias.onnx", split="all", out=tmp_path / "rb",
                            data=cfg))
    assert a["confusion"] == b["confusion"] and a["model_info"]["class_bias"] == bias
    with pytest.raises(MultiNetError, match="carries its own"):
        evaluate(EvalConfig(model=tmp_path / "bias.onnx", split="all", class_bias=bias,
                            out=tmp_path / "rc", data=cfg))


def test_class_bias_added_to_an_exported_file_matches_the_exported_bias(checkpoint, tmp_path):
    """A model exported elsewhere (a GPU run) gets the offsets appended to its graph: the
    same probabilities as exporting the checkpoint with them, and init_from still reads it."""
    from multinet_emotion.cli import main
    from multinet_emotion.training.init_weights import init_from

    bias = [0.0, 0.8, -0.4, 0.0, 0.3, -1.2]
    faces = toy_faces(3, SIZE)[0]
    export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "plain.onnx", quantize=False,
                        tta_flip=True))
    export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "ref.onnx", quantize=False,
                        tta_flip=True, class_bias=bias))
    assert main(["export", "--model", str(tmp_path / "plain.onnx"), "--class-bias",
                 ",".join(map(str, bias)), "--out", str(tmp_path / "added.onnx"),
                 "--report", str(tmp_path / "r.json")]) == 0
    added = load_model(tmp_path / "added.onnx")
    assert added.info.class_bias == tuple(bias) and added.info.tta_flip
    np.testing.assert_allclose(added.predict(faces), load_model(tmp_path / "ref.onnx")
                               .predict(faces), atol=1e-5)
    assert json.loads((tmp_path / "r.json").read_text())["max_abs_diff"] < 1e-5
    model = build_model(ModelConfig(arch="small", image_size=SIZE, hidden=32))
    init_from(model, tmp_path / "added.onnx", faces)  # weights read back through the offsets
    # twice is refused; an .onnx without offsets to add is refused; neither leaves a file
    assert main(["export", "--model", str(tmp_path / "added.onnx"), "--class-bias",
                 ",".join(map(str, bias)), "--out", str(tmp_path / "twice.onnx")]) == 2
    assert main(["export", "--model", str(tmp_path / "plain.onnx"),
                 "--out", str(tmp_path / "none.onnx")]) == 2
    assert not (tmp_path / "twice.onnx").exists() and not (tmp_path / "none.onnx").exists()


@pytest.mark.parametrize("text, message", [
    ("0,1,2", "give 6"), ("0,1,2,3,4,x", "give 6 numbers"), ("0,0,0,0,0,nan", "finite"),
    ("missing.json", "not found")])
def test_bad_class_bias_is_a_clear_error(text, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MultiNetError, match=message):
        parse_class_bias(text)


def test_class_bias_file_from_bench(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"class_bias": [0, 0.5, 0, 0, 0, 0]}))
    assert parse_class_bias(str(f)) == [0, 0.5, 0, 0, 0, 0]
    f.write_text("{}")
    with pytest.raises(MultiNetError, match="no 'class_bias'"):
        parse_class_bias(str(f))


@pytest.mark.slow
def test_bench_class_bias_then_accuracy_with_it(checkpoint, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MULTINET_CACHE": str(tmp_path / "cache"), "MULTINET_PROGRESS": "0"}
    data = write_folder(tmp_path / "data", *toy_faces(20, SIZE))
    bias_json = tmp_path / "bias.json"

    def bench(*args):
        return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                              text=True, check=False, timeout=300)

    r = bench("bench/class_bias.py", "--model", str(checkpoint), "--data", str(data),
              "--json", str(bias_json))
    assert r.returncode == 0, r.stderr
    fit = json.loads(bias_json.read_text())
    assert len(fit["class_bias"]) == 6 and fit["class_bias"][0] == 0
    assert fit["val_after"]["macro_f1"] >= fit["val_before"]["macro_f1"]
    assert "offsets: angry +0.00" in r.stdout
    r = bench("bench/accuracy.py", "--model", str(checkpoint), "--data", str(data), "--splits",
              "val", "--ferplus", "none", "--class-bias", str(bias_json), "--out",
              str(tmp_path / "acc"), "--json", str(tmp_path / "acc.json"))
    assert r.returncode == 0, r.stderr
    val = json.loads((tmp_path / "acc.json").read_text())["val"]
    assert val["macro_f1"] == pytest.approx(fit["val_after"]["macro_f1"], abs=1e-6)
    r = bench("bench/class_bias.py", "--model", str(tmp_path / "x.onnx"), "--data", str(data),
              "--json", str(bias_json))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_drop_flip_pass_runs_the_first_pass_only(checkpoint, tmp_path):
    """The single-pass copy (export.drop_flip_pass) gives the probabilities of the
    model without its mirror image, and a model without one is refused."""
    from multinet_emotion.runtime.onnx_graph import drop_flip_pass

    data = write_folder(tmp_path / "data", *toy_faces(6, SIZE))
    for name, flip in (("flip", True), ("plain", False)):
        export(ExportConfig(checkpoint=checkpoint, out=tmp_path / f"{name}.onnx",
                            quantize=False, tta_flip=flip, calibration=data))
    single = drop_flip_pass(tmp_path / "flip.onnx", tmp_path / "single.onnx")
    faces = toy_faces(6, SIZE)[0].astype(np.uint8)
    got, plain = load_model(single), load_model(tmp_path / "plain.onnx")
    assert not got.info.tta_flip
    np.testing.assert_allclose(got.predict(faces), plain.predict(faces), atol=1e-5)
    assert np.abs(got.predict(faces) - load_model(tmp_path / "flip.onnx").predict(faces)).max() \
        > 1e-4  # the mirror pass did change something, and it is gone
    import onnx
    convs = [sum(n.op_type == "Conv" for n in onnx.load(str(f)).graph.node)
             for f in (tmp_path / "flip.onnx", single)]
    assert convs[1] * 2 == convs[0] > 0  # one pass of the net left
    with pytest.raises(MultiNetError, match="no mirror-image pass"):
        drop_flip_pass(tmp_path / "plain.onnx", tmp_path / "x.onnx")
    # offsets appended to the two-pass file: kept, or taken out to fit new ones
    from multinet_emotion.training.export import add_class_bias_onnx
    bias = [0.0, 0.7, -0.3, 0.0, 0.0, 0.2]
    add_class_bias_onnx(tmp_path / "flip.onnx", tmp_path / "biased.onnx", bias)
    kept = load_model(drop_flip_pass(tmp_path / "biased.onnx", tmp_path / "k.onnx"))
    taken = load_model(drop_flip_pass(tmp_path / "biased.onnx", tmp_path / "t.onnx",
                                      keep_class_bias=False))
    assert kept.info.class_bias == tuple(bias) and taken.info.class_bias is None
    np.testing.assert_allclose(taken.predict(faces), plain.predict(faces), atol=1e-5)
    np.testing.assert_allclose(kept.predict(faces), apply_class_bias(plain.predict(faces), bias),
                               atol=1e-5)


def test_the_web_app_runs_the_single_pass_copy_unless_asked(checkpoint, tmp_path, monkeypatch):
    """serve runs the model without its mirror pass (made once, cached by the file's hash);
    --mirror-pass runs the file as it is; a model without a mirror pass is run as it is."""
    import random

    from multinet_emotion.app.app import create_app
    from multinet_emotion.app.settings import Settings
    from multinet_emotion.runtime.onnx_graph import single_pass_model

    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "data", *toy_faces(6, SIZE))
    for name, flip in (("flip", True), ("plain", False)):
        export(ExportConfig(checkpoint=checkpoint, out=tmp_path / f"{name}.onnx",
                            quantize=False, tta_flip=flip, calibration=data))
    single = single_pass_model(tmp_path / "flip.onnx")
    assert single.parent == tmp_path / "cache" / "single-pass"
    assert not load_model(single).info.tta_flip
    stamp = single.stat().st_mtime_ns
    assert single_pass_model(tmp_path / "flip.onnx") == single  # made once
    assert single.stat().st_mtime_ns == stamp
    assert single_pass_model(tmp_path / "plain.onnx") == tmp_path / "plain.onnx"

    def served(**settings):
        app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}",
                                  instructor_token="t" * 20, model=tmp_path / "flip.onnx",
                                  analysis="server", **settings), rng=random.Random(0))
        app.state.context.service.store.close()
        return app.state.context.model_path

    assert served() == single
    assert served(mirror_pass=True) == tmp_path / "flip.onnx"


def test_bench_accuracy_against_another_model(checkpoint, tmp_path):
    """``bench/accuracy.py --against``: the faces only one of two models gets right, and the
    exact McNemar test on them, counted as the two models' own predictions say."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("accuracy_bench", root / "bench" / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    assert accuracy.mcnemar_p(0, 0) == 1.0 and accuracy.mcnemar_p(3, 3) == 1.0
    assert accuracy.mcnemar_p(0, 5) == pytest.approx(2 / 32)  # 5 of 5 one way: 2 x 1/32
    assert accuracy.mcnemar_p(96, 88) == pytest.approx(0.606, abs=0.001)
    assert accuracy.mcnemar_p(40, 10) < 0.001

    data = write_folder(tmp_path / "data", *toy_faces(20, SIZE))
    plain, tilted = tmp_path / "plain.onnx", tmp_path / "tilted.onnx"
    export(ExportConfig(checkpoint=checkpoint, out=plain, quantize=False, tta_flip=False,
                        calibration=data))
    export(ExportConfig(checkpoint=checkpoint, out=tilted, quantize=False, tta_flip=False,
                        calibration=data, class_bias=(0.0, 2.0, 0.0, 0.0, 0.0, 0.0)))
    env = {**os.environ, "MULTINET_CACHE": str(tmp_path / "cache"), "MULTINET_PROGRESS": "0"}

    def bench(*args):
        return subprocess.run([sys.executable, "bench/accuracy.py", "--data", str(data),
                               "--splits", "all", "--ferplus", "none", "--out",
                               str(tmp_path / "acc"), *args], cwd=root, env=env,
                              capture_output=True, text=True, check=False, timeout=300)

    r = bench("--model", str(tilted), "--against", str(plain), "--json", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "a.json").read_text())["against"]["all"]
    faces = [(p, p.parent.name) for p in sorted(data.glob("*/*"))]
    images = np.stack([np.asarray(Image.open(p).convert("L")) for p, _ in faces])
    labels = np.array([EMOTIONS.index(e) for _, e in faces])
    right_t = load_model(tilted).predict(images).argmax(1) == labels
    right_p = load_model(plain).predict(images).argmax(1) == labels
    assert got["n"] == len(faces)
    assert (got["only_model"], got["only_against"]) == (int((right_t & ~right_p).sum()),
                                                        int((~right_t & right_p).sum()))
    assert got["only_model"] + got["only_against"] > 0  # the offset changed some answers
    assert got["mcnemar_p"] == pytest.approx(accuracy.mcnemar_p(got["only_model"],
                                                                got["only_against"]))
    assert "McNemar p" in r.stdout
    r = bench("--model", str(plain), "--against", str(plain))
    assert r.returncode == 0 and "1.000" in r.stdout.split("against:")[1], r.stdout
    r = bench("--model", str(plain), "--against", str(tmp_path / "missing.onnx"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
