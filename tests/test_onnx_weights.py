"""Reading weights back out of exported ONNX files (onnx_weights.load_onnx_weights)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from synth import FER2013, toy_faces
from torch import nn

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.runtime.classifier import default_model_path, load_model
from multinet_emotion.training.export import export_onnx, quantize_int8, torch_probs
from multinet_emotion.training.model import ARCHS, ModelConfig, build_model
from multinet_emotion.training.onnx_weights import load_onnx_weights, synthetic_faces

SIZE = 48
ARCH = "small" if "small" in ARCHS else "vgg16"  # the smallest network there is
BIAS = [0.0, 0.3, -0.2, 0.0, 0.1, 0.0]


def _meta(arch: str, **extra) -> dict:
    return {"version": 1, "labels": list(EMOTIONS), "input_size": SIZE, "input": "grey",
            "value_range": [0, 255], "arch": arch, "disgust": "drop", "quantized": False, **extra}


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Conv2d directly followed by BatchNorm2d in registration order (VGG-style nets)."""
    mods = list(model.modules())
    return [(a, b) for a, b in zip(mods, mods[1:])
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random model with non-trivial batch norms, exported fp32 with and without
    test-time flip (the flip one also with a class bias), and some faces."""
    torch.manual_seed(0)
    config = ModelConfig(arch=ARCH, image_size=SIZE, hidden=32)
    model = build_model(config)
    images = toy_faces(4, SIZE)[0]  # 24 faces
    x = torch.from_numpy(images).float().unsqueeze(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        # batch norms with their own affine parameters and running statistics (those of the
        # faces: without them a random net pools nearly the same features from every face)
        for bn in bns:
            bn.weight.uniform_(0.6, 1.4)
            bn.bias.uniform_(-0.2, 0.2)
            bn.momentum = 1.0
        model.train()(x)
        for bn in bns:
            bn.momentum = 0.1
        # hidden units standardised over the faces: outputs that depend on the face
        first, last = [m for m in model.modules() if isinstance(m, nn.Linear)][:2]
        seen = []
        hook = first.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
        model.eval()(x)
        hook.remove()
        mean, std = seen[0].mean(0), seen[0].std(0) + 1e-6
        first.weight.div_(std[:, None])
        first.bias.sub_(mean).div_(std)
        last.weight.mul_(1.5)
    model.eval()
    out = tmp_path_factory.mktemp("onnx")
    flip = export_onnx(model, out / "flip.onnx", _meta(ARCH, tta_flip=True, class_bias=BIAS),
                       tta_flip=True, class_bias=BIAS)
    plain = export_onnx(model, out / "plain.onnx", _meta(ARCH, tta_flip=False))
    return model, config, images, flip, plain


def test_fp32_file_loads_back_exactly(exported):
    model, config, images, flip, _ = exported
    fresh = build_model(config)
    report = load_onnx_weights(fresh, flip, images)
    pairs = _conv_bn_pairs(model)
    assert report["calls"] == 2 and report["tta_flip"] and not report["quantized"]
    assert report["batchnorms"] == len(pairs) and report["linears"] == 2
    assert report["named"] == report["convs"] + report["linears"]
    assert report["bn_stats"] == "images" and report["bn_stats_images"] == len(images)
    assert report["max_abs_diff"] < 1e-4 and report["top1_agreement"] == 1.0
    # the function of the original model, flip and class bias included
    want = torch_probs(model, images, tta_flip=True, class_bias=BIAS)
    got = torch_probs(fresh, images, tta_flip=True, class_bias=BIAS)
    assert len(set(want.argmax(1))) > 1 and want.max() > 0.3  # outputs depend on the face
    np.testing.assert_allclose(got, want, atol=1e-4)
    # conv weights are the fused ones: W * gamma / sqrt(var + eps)
    for (conv, bn), (conv2, _) in zip(pairs, _conv_bn_pairs(fresh)):
        fused = conv.weight * (bn.weight / (bn.running_var + bn.eps).sqrt()).view(-1, 1, 1, 1)
        torch.testing.assert_close(conv2.weight, fused, rtol=1e-5, atol=1e-6)


def test_batch_norm_statistics_are_those_of_the_faces(exported):
    _, config, images, flip, _ = exported
    fresh = build_model(config)
    load_onnx_weights(fresh, flip, images)
    x = torch.from_numpy(images).float().unsqueeze(1)
    seen: dict[nn.Module, torch.Tensor] = {}
    hooks = [bn.register_forward_pre_hook(lambda m, i: seen.setdefault(m, i[0].detach()))
             for _, bn in _conv_bn_pairs(fresh)]
    with torch.no_grad():
        fresh.eval()(x)
    for h in hooks:
        h.remove()
    for bn, y in seen.items():
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.weight.detach(), (var + bn.eps).sqrt(), rtol=1e-4, atol=1e-6)
    # on the same batch, train mode (batch statistics) computes what eval mode does
    net = copy.deepcopy(fresh)
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        a = net.eval()(x)
        b = net.train()(x)
    torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


def test_without_images_batch_norms_add_the_fused_bias(exported):
    _, config, _, _, plain = exported
    fresh = build_model(config)
    report = load_onnx_weights(fresh, plain)
    assert report["calls"] == 1 and not report["tta_flip"]
    assert report["bn_stats"] == "default" and report["check_inputs"] == "synthetic"
    assert report["max_abs_diff"] < 1e-4
    for _, bn in _conv_bn_pairs(fresh):
        assert float(bn.running_mean.abs().max()) == 0.0
        torch.testing.assert_close(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
        assert float((bn.weight.detach() - 1).abs().max()) == 0.0


@pytest.mark.slow
def test_int8_file_loads_back_close(exported, tmp_path):
    model, config, images, _, plain = exported
    int8 = quantize_int8(plain, tmp_path / "int8.onnx", images)  # calibrated on the faces
    fresh = build_model(config)
    report = load_onnx_weights(fresh, int8, images)
    assert report["quantized"] and report["calls"] == 1
    # against the file's own int8 arithmetic: activation rounding is all that differs
    assert report["max_abs_diff"] < 0.05 and report["mean_abs_diff"] < 0.02
    assert report["top1_agreement"] >= 0.85
    # the dequantised weights are the fused ones up to half a quantisation step per channel
    # (exports use 7-bit weights, -64..63, so that CPUs without VNNI do not saturate)
    for (conv, bn), (conv2, _) in zip(_conv_bn_pairs(model), _conv_bn_pairs(fresh)):
        fused = conv.weight * (bn.weight / (bn.running_var + bn.eps).sqrt()).view(-1, 1, 1, 1)
        step = fused.abs().amax(dim=(1, 2, 3), keepdim=True) / 63
        assert bool(((conv2.weight - fused).abs() <= step * 0.51 + 1e-7).all())
    got = torch_probs(fresh, images)
    want = torch_probs(model, images)
    # 7-bit weights of a random toy net: the weights above are the exact check
    assert np.abs(got - want).max() < 0.1 and (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_wrong_files_are_clear_errors(exported, tmp_path, make_emotion_onnx):
    import onnx

    _, config, _, _, plain = exported
    fresh = build_model(config)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all" * 10)
    no_meta = tmp_path / "no_meta.onnx"
    proto = onnx.load(str(plain))
    del proto.metadata_props[:]
    onnx.save(proto, str(no_meta))
    cases = [(tmp_path / "missing.onnx", "not found"), (junk, "not an ONNX file"),
             (no_meta, "not a MultiNetEmotion model"),
             (make_emotion_onnx("bright.onnx"), "cannot be loaded into")]
    for path, message in cases:
        with pytest.raises(MultiNetError, match=message) as err:
            load_onnx_weights(fresh, path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    # another architecture: refused by the metadata, and by the layers when that is missing
    other = build_model(ModelConfig(arch="resnet50", image_size=SIZE, hidden=32))
    with pytest.raises(MultiNetError, match=f"a {ARCH} model; it cannot be loaded into a resnet50"):
        load_onnx_weights(other, plain)
    proto = onnx.load(str(plain))
    for p in proto.metadata_props:
        p.value = p.value.replace(f'"arch": "{ARCH}"', '"arch": "unknown"')
    anonymous = tmp_path / "anonymous.onnx"
    onnx.save(proto, str(anonymous))
    with pytest.raises(MultiNetError, match="does not fit this model"):
        load_onnx_weights(other, anonymous)
    # same architecture, another head width
    wider = build_model(ModelConfig(arch=ARCH, image_size=SIZE, hidden=48))
    with pytest.raises(MultiNetError, match=r"does not fit this model.*head\.1 \(Linear"):
        load_onnx_weights(wider, plain)
    with pytest.raises(MultiNetError, match="takes 48x48 faces"):
        load_onnx_weights(fresh, plain, np.zeros((2, 32, 32), np.uint8))


def test_a_model_with_other_preprocessing_is_refused(exported):
    """Every weight fits, but the face reaches the first layer scaled otherwise (as with another
    ``normalization`` option): refused before anything is copied."""
    _, config, _, _, plain = exported
    model = build_model(config)
    model.preprocess.register_forward_hook(lambda m, i, out: out * 1.5)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(MultiNetError, match="prepares the face differently"):
        load_onnx_weights(model, plain)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def _faces(n: int, size: int = SIZE) -> tuple[np.ndarray, str]:
    """FER2013 test faces (grey, ``size`` x ``size``), spread over the classes; synthetic ones
    without data."""
    import cv2

    test = FER2013 / "test"
    paths = sorted(p for c in EMOTIONS for p in (test / c).glob("*.jpg")) if test.is_dir() else []
    if len(paths) < n:
        return synthetic_faces(n, size, seed=1), "synthetic"
    pick = np.random.default_rng(0).permutation(len(paths))[:n]
    faces = [cv2.resize(cv2.imread(str(paths[i]), cv2.IMREAD_GRAYSCALE), (size, size),
                        interpolation=cv2.INTER_AREA) for i in pick]
    return np.stack(faces), "fer2013"


@pytest.mark.slow
def test_shipped_model_loads_into_the_hybrid():
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    # the shipped file uses torchvision's layout (its metadata says so)
    legacy = {"stem": "imagenet", "normalization": "imagenet"}
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    size = load_model(path).input_size  # the file says the face size it takes
    config = ModelConfig(arch="hybrid", image_size=size,
                         **{k: v for k, v in legacy.items() if k in known})
    torch.manual_seed(0)
    model = build_model(config)
    images, _ = _faces(64, size)
    report = load_onnx_weights(model, Path(path), images)
    assert report["quantized"] and report["tta_flip"] and report["calls"] == 2
    assert report["convs"] == 66 and report["linears"] == 2 and report["batchnorms"] == 66
    assert report["check_images"] == 64
    assert report["max_abs_diff"] < 0.05
    # ONNX Runtime quantises activations too, so faces whose two best classes are within a
    # few hundredths can swap: 2 of 64 on a CI CPU, none here
    assert report["top1_agreement"] >= 0.9
