"""The ``evaluate`` and ``export`` sub-commands (the training half): score a model, and
write one as ONNX."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_common import add_data_args, data_config, need_torch
from .errors import MultiNetError


def evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model (.pt checkpoint or .onnx) on a dataset",
                       description="Accuracy, per-class precision/recall/F1, macro and weighted "
                       "F1, confusion matrices; written as JSON, Markdown and PNG.")
    from . import options
    from .training.evaluate import EvalConfig
    spec = options.specs(EvalConfig)
    p.add_argument("--model", type=Path, default=None, help=spec["model"][1].help)
    add_data_args(p)
    options.add_options(p, EvalConfig)  # each option from its one statement in evaluate.py
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets (PyTorch checkpoints; see export)")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import EvalConfig, evaluate, format_summary, markdown
    from .training.export import parse_class_bias

    model = args.model or _default_model_path()
    from .training.evaluate import model_facts

    size, disgust = model_facts(model)
    data = data_config(args, size)
    if not args.merge_disgust:  # score the model on the label set it was trained with
        data.disgust = disgust
    from . import options
    result = evaluate(EvalConfig(model=model, data=data, **options.values(EvalConfig, args),
                                 class_bias=(parse_class_bias(args.class_bias)
                                             if args.class_bias else None)))
    print(markdown(result))
    print(format_summary(result))
    print(f"reports written to {result['out']}/ (metrics.json, report.md, confusion*.png)")
    return 0


def _default_model_path() -> Path:
    from .runtime.classifier import default_model_path
    path = default_model_path()
    if not path.is_file():
        raise MultiNetError(f"no default model is installed (expected {path}); pass --model PATH")
    return path


def export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (int8 by default)",
                       description="Write an ONNX model with its labels, input size and "
                       "preprocessing in the metadata, and check it against PyTorch.")
    from . import options
    from .training.export import ExportConfig
    options.add_options(p, ExportConfig)  # each option from its one statement in export.py
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets built into the model (angry..surprise), "
                   "or the JSON that bench/class_bias.py writes")
    p.add_argument("--report", type=Path, default=None, help="write the parity report (JSON)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from . import options
    from .training.export import ExportConfig, export, parse_class_bias

    # the settings' one check (crop scale: the range of detect's and the model file's) comes
    # before the need for PyTorch, so a bad value is named first
    config = ExportConfig(**options.values(ExportConfig, args),
                          class_bias=parse_class_bias(args.class_bias) if args.class_bias else None)
    if args.out.suffix != ".onnx":
        raise MultiNetError(f"{args.out}: the output file must end in .onnx")
    if config.checkpoint.suffix == ".onnx":  # an exported file: only offsets can be added
        return _bias_onnx(config, args.report)
    need_torch("export")
    if args.calibration is None and args.quantize:
        raise MultiNetError("int8 quantisation is calibrated on real faces: pass --data "
                            "(e.g. the training dataset), or --no-quantize for fp32 only")
    report = export(config)
    if args.report:
        from .files import atomic_write_text
        atomic_write_text(args.report, json.dumps(report, indent=2))
    print(f"fp32 ONNX: {report['fp32']} ({report['fp32_size_mb']:.1f} MB), max |dp| vs "
          f"PyTorch on {report['parity_images']} faces: {report['fp32_max_abs_diff']:.2e}")
    if "int8" in report:
        print(f"int8 ONNX: {report['int8']} ({report['int8_size_mb']:.1f} MB), max |dp| "
              f"{report['int8_max_abs_diff']:.4f}, mean |dp| {report['int8_mean_abs_diff']:.5f}, "
              f"top-1 agreement {report['int8_top1_agreement']:.4f}")
    return 0


def _bias_onnx(config, report_path: Path | None) -> int:
    import numpy as np

    from .runtime.classifier import load_model
    from .training.export import add_class_bias_onnx
    from .training.metrics import apply_class_bias

    if config.class_bias is None:
        raise MultiNetError(f"{config.checkpoint}: an .onnx model is already exported; the only "
                            "thing export can still add to it is --class-bias")
    if not config.checkpoint.is_file():
        raise MultiNetError(f"{config.checkpoint}: model file not found")
    add_class_bias_onnx(config.checkpoint, config.out, config.class_bias)
    size = load_model(config.checkpoint).input_size
    faces = np.random.default_rng(0).integers(0, 256, (64, size, size), dtype=np.uint8)
    want = apply_class_bias(load_model(config.checkpoint).predict(faces), config.class_bias)
    diff = float(np.abs(load_model(config.out).predict(faces) - want).max())
    if report_path:
        from .files import atomic_write_text
        atomic_write_text(report_path, json.dumps(
            {"source": str(config.checkpoint), "out": str(config.out),
             "class_bias": list(config.class_bias), "max_abs_diff": diff}, indent=2))
    print(f"{config.out}: {config.checkpoint} with class offsets {list(config.class_bias)}; "
          f"max |dp| against the offsets applied outside the model: {diff:.2e}")
    return 0
