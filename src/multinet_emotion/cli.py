"""The command line: a thin layer over the package's modules.

Each sub-command parses options into the stage's config dataclass and calls the library.
User mistakes (MultiNetError) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .emotions import DisgustPolicy
from .errors import MultiNetError

log = logging.getLogger("multinet_emotion")


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", type=Path, required=required,
                   help="FER2013 CSV (emotion,pixels,Usage) or a folder of class sub-folders")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first bad image/row instead of skipping and counting it")
    p.add_argument("--merge-disgust", action="store_true",
                   help="merge FER2013 'disgust' into 'angry' (default: drop it; evaluate "
                   "follows the model's own policy)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="validation share for data without a validation split (default 0.1)")
    p.add_argument("--no-dedupe", action="store_true",
                   help="keep training images that are pixel-identical to val/test images")
    p.add_argument("--no-cache", action="store_true", help="do not cache decoded images")


def _data_config(args: argparse.Namespace, image_size: int = 48, seed: int = 0):
    from .datasets import DataConfig
    return DataConfig(path=args.data, image_size=image_size,
                      disgust=DisgustPolicy.MERGE if args.merge_disgust else DisgustPolicy.DROP,
                      strict=args.strict, val_fraction=args.val_fraction, seed=seed,
                      dedupe=not args.no_dedupe, cache=not args.no_cache)


# --- train --------------------------------------------------------------------------------

def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model on labelled faces",
                       description="Train the hybrid (or one backbone) with checkpoints after "
                       "every epoch; --resume continues an interrupted run exactly.")
    _add_data_args(p)
    p.add_argument("--out", type=Path, default=Path("runs/default"),
                   help="run folder: checkpoints, history.json, curves.png (default runs/default)")
    from .config import ARCHS, LABEL_SETS, NORMALIZATIONS, STEMS, ModelConfig, TrainConfig

    t, m = TrainConfig(), ModelConfig()
    p.add_argument("--arch", choices=ARCHS, default=m.arch,
                   help="hybrid = ResNet50 + VGG16 side by side; small = the baseline CNN")
    p.add_argument("--stem", choices=STEMS, default=m.stem,
                   help="face: backbones keep the resolution of a 48x48 face (no ResNet stem "
                   "max-pool, no VGG fifth pool); imagenet: torchvision's layout")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=m.normalization,
                   help="face: each face by its own mean and contrast; imagenet: fixed stats")
    p.add_argument("--labels", choices=LABEL_SETS, default=t.labels,
                   help="training targets: FER2013 labels, FER+ vote distributions, or a mix")
    p.add_argument("--mix-weight", type=float, default=t.mix_weight,
                   help="--labels mix: weight of the FER+ votes (0..1)")
    p.add_argument("--ferplus", type=Path, default=None,
                   help="FER+ folder (fer2013new.csv, kaggle_to_ferplus.csv); default: "
                   "'ferplus' beside --data")
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default=t.optimizer)
    p.add_argument("--lr", type=float, default=t.lr, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=t.weight_decay)
    p.add_argument("--warmup", type=float, default=t.warmup, help="warm-up length in epochs")
    p.add_argument("--label-smoothing", type=float, default=t.label_smoothing)
    p.add_argument("--class-weights", choices=("none", "sqrt", "inverse"), default=t.class_weights)
    p.add_argument("--mixup", type=float, default=t.mixup, help="mixup alpha (0 = off)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-webcam", action="store_true",
                   help="no webcam augmentation (light, blur, noise, JPEG, pose, occlusion)")
    p.add_argument("--dropout", type=float, default=m.dropout)
    p.add_argument("--hidden", type=int, default=m.hidden, help="width of the dense layer")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--patience", type=int, default=4,
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto = bf16 autocast where the CPU/GPU supports it")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--backbone-weights", type=Path, action="append", default=[],
                   help="local torchvision ResNet50 / VGG16-BN weights (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved settings")
    p.add_argument("--stop-after-epochs", type=int, default=0,
                   help="end this invocation after N epochs (time-boxing); --resume continues")
    p.add_argument("--init", type=Path, default=None,
                   help="start from a model's weights with a fresh schedule (fine-tuning, warm "
                   "restarts): a best.pt/last.pt, or an exported .onnx such as the shipped model")
    p.set_defaults(func=_train)


def _need_torch(command: str) -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        raise MultiNetError(f"'{command}' needs PyTorch: install the training extras with "
                            "scripts/setup.sh full (or pip install 'multinet-emotion[train]')"
                            ) from None


def _train(args: argparse.Namespace) -> int:
    _need_torch("train")
    from .model import ModelConfig
    from .train import TrainConfig, train

    config = TrainConfig(
        out=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        labels=args.labels, mix_weight=args.mix_weight, ferplus=args.ferplus,
        optimizer=args.optimizer, webcam=not args.no_webcam,
        weight_decay=args.weight_decay, warmup=args.warmup,
        label_smoothing=args.label_smoothing, class_weights=args.class_weights,
        mixup=args.mixup, augment=not args.no_augment, patience=args.patience,
        seed=args.seed, precision=args.precision, threads=args.threads,
        max_steps_per_epoch=args.max_steps_per_epoch, resume=args.resume, init=args.init,
        stop_after_epochs=args.stop_after_epochs,
        model=ModelConfig(arch=args.arch, image_size=args.image_size, hidden=args.hidden,
                          dropout=args.dropout, stem=args.stem, normalization=args.normalization,
                          backbone_weights=[str(p) for p in args.backbone_weights]),
        data=_data_config(args, args.image_size, args.seed))
    history = train(config)
    if history.get("best_epoch"):
        print(f"best epoch {history['best_epoch']}: validation accuracy "
              f"{history['best_val_accuracy']:.4f}; model {args.out / 'best.pt'}")
    return 0


# --- evaluate / export (training half) ------------------------------------------------------

def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model (.pt checkpoint or .onnx) on a dataset",
                       description="Accuracy, per-class precision/recall/F1, macro and weighted "
                       "F1, confusion matrices; written as JSON, Markdown and PNG.")
    p.add_argument("--model", type=Path, default=None,
                   help="a .pt checkpoint or an .onnx file (default: the shipped model)")
    _add_data_args(p)
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="FER2013: train=Training, val=PublicTest, test=PrivateTest")
    p.add_argument("--ferplus", type=Path, default=None,
                   help="FER+ folder: score against the FER+ majority labels")
    p.add_argument("--tta-flip", action="store_true",
                   help="average with the mirrored face (PyTorch checkpoints)")
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets (PyTorch checkpoints; see export)")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="score a seeded random sample of N faces (a quick check; default all)")
    p.add_argument("--seed", type=int, default=0, help="the --sample seed")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/...)")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, evaluate, format_summary, markdown
    from .export import parse_class_bias

    model = args.model or _default_model_path()
    from .evaluate import model_facts

    size, disgust = model_facts(model)
    data = _data_config(args, size)
    if not args.merge_disgust:  # score the model on the label set it was trained with
        data.disgust = disgust
    result = evaluate(EvalConfig(model=model, data=data, split=args.split,
                                 out=args.out, ferplus=args.ferplus, tta_flip=args.tta_flip,
                                 class_bias=(parse_class_bias(args.class_bias)
                                             if args.class_bias else None),
                                 sample=args.sample, seed=args.seed))
    print(markdown(result))
    print(format_summary(result))
    print(f"reports written to {result['out']}/ (metrics.json, report.md, confusion*.png)")
    return 0


def _default_model_path() -> Path:
    from .classifier import default_model_path
    path = default_model_path()
    if not path.is_file():
        raise MultiNetError(f"no default model is installed (expected {path}); pass --model PATH")
    return path



def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (int8 by default)",
                       description="Write an ONNX model with its labels, input size and "
                       "preprocessing in the metadata, and check it against PyTorch.")
    p.add_argument("--model", type=Path, required=True, help="a .pt checkpoint (best.pt)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset for int8 calibration and the parity check on real faces")
    p.add_argument("--no-quantize", action="store_true", help="write fp32 only")
    p.add_argument("--tta-flip", action="store_true",
                   help="average each face with its mirror image inside the model")
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets built into the model (angry..surprise), "
                   "or the JSON that bench/class_bias.py writes")
    p.add_argument("--calibration-images", type=int, default=512)
    p.add_argument("--crop-scale", type=float, default=None,
                   help="face framing for the runtime to record in the file")
    p.add_argument("--report", type=Path, default=None, help="write the parity report (JSON)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    _need_torch("export")
    from .export import ExportConfig, export, parse_class_bias

    if args.out.suffix != ".onnx":
        raise MultiNetError(f"{args.out}: the output file must end in .onnx")
    if args.crop_scale is not None and not 0.5 <= args.crop_scale <= 4:
        raise MultiNetError(f"--crop-scale {args.crop_scale}: use a value from 0.5 to 4")
    if args.data is None and not args.no_quantize:
        raise MultiNetError("int8 quantisation is calibrated on real faces: pass --data "
                            "(e.g. the training dataset), or --no-quantize for fp32 only")
    report = export(ExportConfig(checkpoint=args.model, out=args.out,
                                 quantize=not args.no_quantize, tta_flip=args.tta_flip,
                                 calibration=args.data,
                                 calibration_images=args.calibration_images,
                                 crop_scale=args.crop_scale,
                                 class_bias=(parse_class_bias(args.class_bias)
                                             if args.class_bias else None)))
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



# --- detect (runtime half) ------------------------------------------------------------------

def _detect_parser(sub) -> None:
    p = sub.add_parser(
        "detect", help="detect faces and emotions in a camera, stream, video, image or folder",
        description="Find faces, follow them with stable ids and classify their emotions. "
        "Cameras and streams are live (the newest frame is always analysed); video files are "
        "analysed frame by frame. Ctrl-C stops and saves everything written so far.")
    p.add_argument("--source", required=True,
                   help="camera index (0), video file, stream URL, image, or folder of images")
    p.add_argument("--model", type=Path, default=None,
                   help="exported .onnx model (default: the model shipped in the package)")
    g = p.add_argument_group("outputs")
    g.add_argument("--out", type=Path, default=None,
                   help="folder for events.jsonl, summary.json and timeline.png (shortcut)")
    g.add_argument("--jsonl", type=Path, default=None,
                   help="JSON Lines events, one per face per analysed frame ('-' = stdout)")
    g.add_argument("--csv", type=Path, default=None, help="the same events as CSV")
    g.add_argument("--video-out", type=Path, default=None,
                   help="annotated video file (.mp4 or .avi)")
    g.add_argument("--video-fps", type=float, default=None,
                   help="frame rate of --video-out (default: the source's; 15 for live)")
    g.add_argument("--summary", type=Path, default=None,
                   help="summary JSON: per track, duration and share of time in each emotion")
    g.add_argument("--plot", type=Path, default=None, help="timeline plot PNG")
    g.add_argument("--show", action="store_true",
                   help="annotated window (needs a display and OpenCV with GUI support)")
    g = p.add_argument_group("faces")
    g.add_argument("--detector", default="haar",
                   help="face detector: haar (built in) or yunet (needs --detector-model)")
    g.add_argument("--detector-model", type=Path, default=None,
                   help="the detector's model file (YuNet .onnx, or another Haar cascade)")
    g.add_argument("--detect-width", type=int, default=320,
                   help="detect faces on a copy this many pixels wide (0 = full size; default 320)")
    g.add_argument("--detect-every", type=int, default=5,
                   help="scan the whole frame for faces every N frames; in between, known faces "
                   "are searched for only around their last box (default 5; 1 = full every frame)")
    g.add_argument("--min-face", type=int, default=48,
                   help="ignore faces narrower than this many pixels (default 48)")
    g.add_argument("--crop-scale", type=float, default=None,
                   help="face crop size relative to the detected box (default: the model's)")
    g = p.add_argument_group("tracking and smoothing")
    g.add_argument("--smoothing", choices=("ema", "window", "none"), default="ema")
    g.add_argument("--alpha", type=float, default=0.3,
                   help="EMA weight of the newest reading (default 0.3)")
    g.add_argument("--window", type=int, default=10,
                   help="window smoothing: number of readings averaged (default 10)")
    g.add_argument("--max-missed", type=int, default=5,
                   help="detection rounds without a face before its track ends (default 5)")
    g.add_argument("--min-dwell", type=float, default=1.0,
                   help="seconds (media time) a new emotion must stay on top before the shown "
                   "label (stable_label) changes to it (default 1.0; 0 = at once)")
    g.add_argument("--hysteresis", type=float, default=0.1,
                   help="how much the new emotion's smoothed probability must exceed the shown "
                   "label's before it changes (default 0.1; 0 with --min-dwell 0 = the top class)")
    g.add_argument("--refresh-hz", type=float, default=0.0,
                   help="re-read each face's emotion at most this often (0 = every frame)")
    g = p.add_argument_group("source")
    g.add_argument("--live", choices=("auto", "on", "off"), default="auto",
                   help="auto: cameras and URLs live (newest frame wins); on: also play files "
                   "at their frame rate; off: every frame of a stream")
    g.add_argument("--retry-seconds", type=float, default=10.0,
                   help="how long to reconnect a camera/stream that stopped (default 10)")
    g.add_argument("--frame-step", type=int, default=1,
                   help="video files: analyse every Nth frame (default 1 = all)")
    g.add_argument("--max-frames", type=int, default=0, help="stop after N analysed frames")
    g.add_argument("--max-seconds", type=float, default=0.0, help="stop after N seconds")
    g.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads (default 1; 0 = its default)")
    p.set_defaults(func=_detect)


def _detect(args: argparse.Namespace) -> int:
    from .classifier import ClassifierConfig
    from .faces import DetectorConfig
    from .tracking import TrackerConfig
    from .video import PipelineConfig, RunConfig, SourceConfig, run

    out = args.out
    config = RunConfig(
        source=args.source, model=args.model,
        pipeline=PipelineConfig(
            detector=DetectorConfig(kind=args.detector, model_path=args.detector_model,
                                    detect_width=args.detect_width, min_face=args.min_face),
            tracker=TrackerConfig(smoothing=args.smoothing, alpha=args.alpha, window=args.window,
                                  max_missed=args.max_missed, min_dwell=args.min_dwell,
                                  hysteresis=args.hysteresis),
            classifier=ClassifierConfig(threads=args.threads),
            detect_every=args.detect_every, refresh_hz=args.refresh_hz,
            crop_scale=args.crop_scale),
        source_config=SourceConfig(live=args.live, retry_seconds=args.retry_seconds,
                                   frame_step=args.frame_step),
        jsonl=args.jsonl or (out / "events.jsonl" if out else None),
        csv=args.csv, video_out=args.video_out, video_fps=args.video_fps,
        summary=args.summary or (out / "summary.json" if out else None),
        plot=args.plot or (out / "timeline.png" if out else None),
        show=args.show, max_frames=args.max_frames, max_seconds=args.max_seconds)
    report = run(config)
    s = report.summary
    # the events may be on stdout ("--jsonl -"): then the report goes to stderr
    stream = sys.stderr if str(config.jsonl) == "-" else sys.stdout
    speed = f" at {s['analysis_fps']:.1f} frames/s" if s["analysis_fps"] else ""
    lat = (f", latency p50 {s['latency_ms']['p50']:.0f} ms p95 {s['latency_ms']['p95']:.0f} ms"
           if s["live"] and s["latency_ms"] else "")
    print(f"{s['frames_analysed']} frames analysed{speed}{lat}; {s['no_face_frames']} without "
          f"a face, {s['unreadable_frames']} unreadable, {s['dropped_frames']} dropped",
          file=stream)
    for tid, tr in s["tracks"].items():
        top = sorted(tr["shares"].items(), key=lambda kv: -kv[1])[:3]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in top if v > 0)
        print(f"  track {tid}: {tr['duration']:.1f} {'images' if s['kind'] in ('image', 'images') else 's'}"
              f", {shares}", file=stream)
    for what, path in (("events", config.jsonl), ("csv", config.csv),
                       ("video", config.video_out), ("summary", config.summary),
                       ("plot", config.plot)):
        if path is not None and str(path) != "-":
            print(f"  {what}: {path}", file=stream)
    if s["source_lost"]:
        print(f"multinet-emotion detect: source {s['source']} stopped and did not come back "
              f"within {args.retry_seconds:g} s; everything analysed so far is saved",
              file=sys.stderr)
        return 1
    return 0



# --- serve (web service) --------------------------------------------------------------------

def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the e-learning web app and API",
        description="Serve the learner page (/learn), the instructor dashboard (/dashboard) and "
        "the API (/docs). Settings also come from MULTINET_* environment variables "
        "(MULTINET_DATABASE_URL, MULTINET_INSTRUCTOR_TOKEN, MULTINET_POLICY, ...); options "
        "given here win.")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--database", default=None, metavar="URL",
                   help="sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite under "
                        "~/.local/share/multinet-emotion/)")
    p.add_argument("--policy", type=Path, default=None, help="recommendation policy YAML/JSON")
    p.add_argument("--catalog", type=Path, default=None, help="content catalog YAML/JSON")
    p.add_argument("--model", type=Path, default=None, help="emotion model .onnx "
                   "(default: the model shipped in the package)")
    p.add_argument("--no-analysis", action="store_true",
                   help="no server-side frame analysis (clients post their own samples)")
    p.add_argument("--frame-rate", type=float, default=None,
                   help="frames per second the learner page sends (default 2)")
    p.add_argument("--max-frame-rate", type=float, default=None,
                   help="frames per second one connection may send before frames are skipped "
                   "(default: twice the frame rate, at least 10)")
    p.add_argument("--retention-days", type=float, default=None,
                   help="delete emotion samples older than this (default 30)")
    p.add_argument("--min-dwell", type=float, default=None,
                   help="seconds a new emotion must stay on top before the label shown to "
                   "learners and instructors changes (default 1.0; 0 = at once)")
    p.add_argument("--hysteresis", type=float, default=None,
                   help="how much the new emotion's probability must exceed the shown one's "
                   "before the label changes (default 0.1; 0 = any)")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--check", action="store_true",
                   help="load settings, policy, catalog, model and database, then exit")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import os
    import socket

    from .server import Settings, create_app

    settings = Settings.from_env(
        host=args.host, port=args.port, database_url=args.database, policy=args.policy,
        catalog=args.catalog, model=args.model, frame_rate=args.frame_rate,
        max_frame_rate=args.max_frame_rate, retention_days=args.retention_days,
        min_dwell=args.min_dwell, hysteresis=args.hysteresis,
        analysis="off" if args.no_analysis else None).with_token()
    app = create_app(settings)
    st = app.state
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '') else settings.host}:" \
           f"{settings.port}"
    token_note = ("from MULTINET_INSTRUCTOR_TOKEN" if os.environ.get("MULTINET_INSTRUCTOR_TOKEN")
                  else "generated; set MULTINET_INSTRUCTOR_TOKEN to keep one")
    analysis = "on" if st.analyzer_factory else f"off ({st.analysis_note})"
    print(f"MultiNetEmotion {'configuration is valid' if args.check else 'web app'}\n"
          f"  learners open:    {base}/learn\n"
          f"  instructor opens: {base}/dashboard#token={settings.instructor_token}\n"
          f"  instructor token: {settings.instructor_token}  ({token_note})\n"
          f"  API docs:         {base}/docs\n"
          f"  store:            {st.service.store.safe_url}\n"
          f"  emotion analysis: {analysis}", flush=True)
    if args.check:
        return 0
    with socket.socket() as probe:  # a clear message instead of uvicorn's traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as e:
            raise MultiNetError(f"cannot listen on {settings.host}:{settings.port} ({e.strerror});"
                                " pass another --port or stop what uses it") from None
    import uvicorn
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1,
                access_log=args.access_log, log_level="info",
                ws_max_size=max(4 * settings.max_frame_bytes, 1 << 20))
    return 0



# --- main ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multinet-emotion",
        description="Facial emotion recognition for e-learning (angry, fear, happy, neutral, "
                    "sad, surprise).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _detect_parser(sub)
    _evaluate_parser(sub)
    _export_parser(sub)
    _serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # libraries' chatter (alembic lists its plugins at INFO)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except MultiNetError as e:
        print(f"multinet-emotion {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"multinet-emotion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
