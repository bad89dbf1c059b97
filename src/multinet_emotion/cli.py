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
from typing import TYPE_CHECKING

from .emotions import DEFAULT_FACE_SIZE, DisgustPolicy
from .errors import MultiNetError

if TYPE_CHECKING:  # the server loads FastAPI and SQLAlchemy: only when serving
    from .server.settings import Settings as ServerSettings

log = logging.getLogger("multinet_emotion")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from . import options
    from .datasets import DataConfig
    options.add_options(p, DataConfig)
    p.add_argument("--merge-disgust", action="store_true",
                   help="merge FER2013 'disgust' into 'angry' (default: drop it; evaluate "
                   "follows the model's own policy)")


def _data_config(args: argparse.Namespace, image_size: int = DEFAULT_FACE_SIZE,
                 seed: int = 0):
    from . import options
    from .datasets import DataConfig
    return DataConfig(**options.values(DataConfig, args), image_size=image_size, seed=seed,
                      disgust=DisgustPolicy.MERGE if args.merge_disgust else DisgustPolicy.DROP)


# --- train --------------------------------------------------------------------------------

def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model on labelled faces",
                       description="Train the hybrid (or one backbone) with checkpoints after "
                       "every epoch; --resume continues an interrupted run exactly.")
    _add_data_args(p)
    from . import options
    from .config import ModelConfig, TrainConfig
    options.add_options(p, TrainConfig)  # each option from its one statement in config.py
    options.add_options(p, ModelConfig)
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
    from . import options
    from .model import ModelConfig
    from .train import TrainConfig, train
    config = TrainConfig(**options.values(TrainConfig, args),
                         model=ModelConfig(**options.values(ModelConfig, args)),
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
    from . import options
    from .evaluate import EvalConfig
    spec = options.specs(EvalConfig)
    p.add_argument("--model", type=Path, default=None, help=spec["model"][1].help)
    _add_data_args(p)
    options.add_options(p, EvalConfig)  # each option from its one statement in evaluate.py
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets (PyTorch checkpoints; see export)")
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
    from . import options
    result = evaluate(EvalConfig(model=model, data=data, **options.values(EvalConfig, args),
                                 class_bias=(parse_class_bias(args.class_bias)
                                             if args.class_bias else None)))
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
    from . import options
    from .export import ExportConfig
    options.add_options(p, ExportConfig)  # each option from its one statement in export.py
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets built into the model (angry..surprise), "
                   "or the JSON that bench/class_bias.py writes")
    p.add_argument("--report", type=Path, default=None, help="write the parity report (JSON)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from . import options
    from .export import ExportConfig, export, parse_class_bias

    # the settings' one check (crop scale: the range of detect's and the model file's) comes
    # before the need for PyTorch, so a bad value is named first
    config = ExportConfig(**options.values(ExportConfig, args),
                          class_bias=parse_class_bias(args.class_bias) if args.class_bias else None)
    if args.out.suffix != ".onnx":
        raise MultiNetError(f"{args.out}: the output file must end in .onnx")
    if config.checkpoint.suffix == ".onnx":  # an exported file: only offsets can be added
        return _bias_onnx(config, args.report)
    _need_torch("export")
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

    from .classifier import load_model
    from .export import add_class_bias_onnx
    from .metrics import apply_class_bias

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


# --- detect (runtime half) ------------------------------------------------------------------

def _detect_parser(sub) -> None:
    p = sub.add_parser(
        "detect", help="detect faces and emotions in a camera, stream, video, image or folder",
        description="Find faces, follow them with stable ids and classify their emotions. "
        "Cameras and streams are live (the newest frame is always analysed); video files are "
        "analysed frame by frame. Ctrl-C stops and saves everything written so far.")
    from . import options
    from .classifier import ClassifierConfig
    from .detect import PipelineConfig
    from .faces import DetectorConfig
    from .label_filter import FilterConfig
    from .tracking import TrackerConfig
    from .video import RunConfig, SourceConfig
    # each option from its one statement on the stage's config (faces, tracking, classifier,
    # detect, video/sources, video/runner), in the argument groups of the help
    options.add_options(p, RunConfig, only=("source", "model"))
    g = p.add_argument_group("outputs")
    g.add_argument("--out", type=Path, default=None,
                   help="folder for events.jsonl, summary.json and timeline.png (shortcut)")
    options.add_options(g, RunConfig, exclude=("source", "model", "max_frames", "max_seconds"))
    g = p.add_argument_group("faces")
    options.add_options(g, DetectorConfig)
    options.add_options(g, PipelineConfig, only=("detect_every", "search_every", "tilt_every",
                                                 "crop_scale"))
    g = p.add_argument_group("tracking and smoothing")
    options.add_options(g, TrackerConfig)
    options.add_options(g, PipelineConfig, only=("refresh_hz",))
    g = p.add_argument_group("the label shown (a sticky hidden-Markov filter over the "
                             "emotions, label_filter.py)")
    options.add_options(g, FilterConfig)
    g = p.add_argument_group("source")
    options.add_options(g, SourceConfig)
    options.add_options(g, RunConfig, only=("max_frames", "max_seconds"))
    options.add_options(g, ClassifierConfig)
    p.set_defaults(func=_detect)


def _detect(args: argparse.Namespace) -> int:
    from . import options
    from .classifier import ClassifierConfig
    from .faces import DetectorConfig
    from .label_filter import FilterConfig
    from .tracking import TrackerConfig
    from .video import PipelineConfig, RunConfig, SourceConfig, run

    out = args.out
    given = options.values(RunConfig, args)
    given.update(jsonl=args.jsonl or (out / "events.jsonl" if out else None),
                 summary=args.summary or (out / "summary.json" if out else None),
                 plot=args.plot or (out / "timeline.png" if out else None))
    config = RunConfig(
        **given,
        pipeline=PipelineConfig(
            **options.values(PipelineConfig, args),
            detector=DetectorConfig(**options.values(DetectorConfig, args)),
            tracker=TrackerConfig(**options.values(TrackerConfig, args),
                                  label=FilterConfig(**options.values(FilterConfig, args))),
            classifier=ClassifierConfig(**options.values(ClassifierConfig, args))),
        source_config=SourceConfig(**options.values(SourceConfig, args)))
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
        shares = ", ".join(f"{k} {v:.0%}" for k, v in top if v > 0) or "no label yet"
        print(f"  track {tid}: {tr['duration']:.1f} {'images' if s['kind'] in ('image', 'images') else 's'}"
              f", {shares}", file=stream)
    for what, path in (("events", config.jsonl), ("csv", config.csv),
                       ("video", config.video_out), ("summary", config.summary),
                       ("plot", config.plot)):
        if path is not None and str(path) != "-":
            print(f"  {what}: {path}", file=stream)
    if s["source_lost"]:
        print(f"multinet-emotion detect: source {s['source']} stopped and did not come back "
              f"within {config.source_config.retry_seconds:g} s; everything analysed so far "
              "is saved",
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
    from . import options
    from .server.settings import Settings
    # every setting of the web service, from its one statement in server/settings.py; not
    # given = the MULTINET_* variable, else the default
    options.add_options(p, Settings, defaults_from_class=False)
    p.add_argument("--no-analysis", dest="analysis", action="store_const", const="off",
                   help="the same as --analysis off")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--check", action="store_true",
                   help="load settings, policy, catalog, model and database, then exit")
    p.set_defaults(func=_serve)


def _measured(model: Path | None, mirror_pass: bool = True) -> str:
    """The shipped model's measured accuracy, from its model card's figures."""
    if model is not None:
        return "accuracy: see your model's own evaluation"
    from .classifier import default_model_path
    try:
        fig = json.loads((default_model_path().parent / "model_metrics.json").read_text())
        fp = fig["figures"]["test-ferplus"]
        return (f"right on {fp['accuracy']:.0%} of FER2013 PrivateTest faces (FER+ labels; "
                "model card" + ("" if mirror_pass else "; with its mirror pass, which the web "
                                "app leaves out: docs/web-app.md, 'One pass or two'") + ")")
    except (OSError, ValueError, KeyError, TypeError):
        return "its accuracy is in the model card"


def _serve(args: argparse.Namespace) -> int:
    import socket

    from . import options
    from .server import Settings, create_app
    from .server.settings import token_file
    settings, how = Settings.from_env(**options.values(Settings, args)).with_saved_token()
    app = create_app(settings)
    st = app.state
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '') else settings.host}:" \
           f"{settings.port}"
    if how == "generated":  # the only time the token is printed
        dashboard = f"{base}/dashboard#token={settings.instructor_token}"
        token_line = (f"{settings.instructor_token}  (generated; kept in {token_file()}, "
                      "readable by you only; set MULTINET_INSTRUCTOR_TOKEN to choose one)")
    elif how == "file":
        dashboard = f"{base}/dashboard  (add #token=TOKEN)"
        token_line = f"kept in {token_file()} (not shown; `cat` it to see it)"
    else:
        dashboard = f"{base}/dashboard  (add #token=TOKEN)"
        token_line = "from MULTINET_INSTRUCTOR_TOKEN (not shown)"
    from .server.browser import analysis_mode
    where = analysis_mode(settings.analysis, st.browser_analysis, st.analyzer_factory)
    analysis = {
        "auto": "in the learner's browser where it can run the model (only probabilities "
                "are sent), else on this server",
        "browser": "in the learner's browser only (no picture is sent)",
        "server": f"on this server (the learner page sends {settings.frame_rate:g} pictures a "
                  "second, analysed in memory, never stored)",
        "off": f"off ({st.analysis_note}; {st.browser_note})"}[where]
    print(f"MultiNetEmotion {'configuration is valid' if args.check else 'web app'}\n"
          f"  learners open:    {base}/learn\n"
          f"  instructor opens: {dashboard}\n"
          f"  instructor token: {token_line}\n"
          f"  API docs:         {base}/docs\n"
          f"  store:            {st.service.store.safe_url}\n"
          f"  emotion analysis: {analysis}\n"
          "  what it reads:    facial expressions, not feelings; "
          f"{_measured(settings.model, settings.mirror_pass)}\n"
          "  the law:          in the EU, the AI Act (Art. 5(1)(f)) prohibits emotion "
          "recognition in\n                    workplaces and education institutions (README, "
          "'Where it may be used')", flush=True)
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
    common = {"host": settings.host, "port": settings.port, "access_log": args.access_log,
              "log_level": "info", "ws_max_size": max(4 * settings.max_frame_bytes, 1 << 20),
              # no per-message compression: frames are JPEG (they do not shrink) and replies
              # a few hundred bytes; deflating every message costs CPU on both ends
              # (bench/load.py's 'client ms': 0.71 ms a frame with it, 0.45 without)
              "ws_per_message_deflate": False,
              # X-Forwarded-For believed from the named proxies only (not loopback)
              **settings.proxy_options()}
    if settings.workers == 1:
        uvicorn.run(app, workers=1, **common)
        return 0
    # each worker process builds its own app from the environment: hand the settings on
    # (the instructor token too: the environment of a process is its owner's only)
    _export_settings(settings)
    st.service.store.close()
    uvicorn.run("multinet_emotion.server.app:create_app", factory=True,
                workers=settings.workers, **common)
    return 0


def _export_settings(settings: ServerSettings) -> None:
    """Put every setting in this process's MULTINET_* variables, for worker processes."""
    import os

    from . import options
    for name, (_f, spec, _kind, _optional) in options.specs(type(settings)).items():
        if not spec.env:
            continue
        value = getattr(settings, name)
        var = options.env_of(name)
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)



# --- platform (LTI 1.3 registrations) -------------------------------------------------------

def _platform_parser(sub) -> None:
    p = sub.add_parser(
        "platform", help="register the learning platforms (LMSs) that launch the tool (LTI 1.3)",
        description="Platforms (Moodle, Canvas, Open edX, Brightspace, Sakai...) launch the "
        "tool with LTI 1.3. Register each one with the values it shows when the tool is "
        "added; `add` prints the URLs to give it back. Kept in the database "
        "(MULTINET_DATABASE_URL or --database), so every server process sees them.")
    from . import options
    from .server.lti.spec import PlatformSpec
    from .server.settings import Settings
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a platform and print the tool's URLs")
    options.add_options(add, PlatformSpec)  # each option from its one statement in lti/spec.py
    lst = actions.add_parser("list", help="the registered platforms")
    lst.add_argument("--json", action="store_true", help="print JSON")
    rm = actions.add_parser("remove", help="remove a platform's registration")
    rm.add_argument("--issuer", required=True, metavar="URL", help="the platform's issuer")
    rm.add_argument("--client-id", default=None, metavar="ID",
                    help="only this client id (default: every one of the issuer)")
    tr = actions.add_parser(
        "try", help="a try-out platform on this machine that launches the running tool",
        description="Start a stand-in learning platform on loopback, register it, and print "
        "its page: its links launch the tool (started with `multinet-emotion serve` on the "
        "same database) as a learner or as the instructor, with LTI 1.3, in a course page's "
        "frame. Ctrl-C stops it and removes its registration.")
    tr.add_argument("--tool-url", default=None, metavar="URL",
                    help="where the running tool is reached (default: --public-url, else "
                         "http://HOST:PORT of serve's settings)")
    tr.add_argument("--try-port", type=int, default=0, metavar="PORT",
                    help="the platform's port (default: a free one)")
    for q in (add, lst, rm, tr):
        options.add_options(q, Settings, only=("database_url", "public_url") +
                            (("host", "port") if q in (add, tr) else ()),
                            defaults_from_class=False)
    p.set_defaults(func=_platform)


def _platform(args: argparse.Namespace) -> int:
    from . import options
    from .server.lti.keys import key_file, load_or_create
    from .server.lti.platforms import Platforms
    from .server.lti.spec import PlatformSpec
    from .server.settings import Settings
    from .store import LtiRecords, Store
    settings = Settings.from_env(**options.values(Settings, args))
    store = Store(settings.database_url)
    try:
        store.migrate()
        platforms = Platforms(LtiRecords(store))
        if args.action == "add":
            row = platforms.add(PlatformSpec(**options.values(PlatformSpec, args)))
            key, created = load_or_create()
            base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
            print(f"registered {row.issuer} (client id {row.client_id}; deployments "
                  f"{', '.join(row.deployment_ids)}); frames allowed from "
                  f"{' '.join(row.frame_origins)}\n"
                  "Give the platform these (the names vary by platform):\n"
                  f"  login initiation URL (OIDC login):   {base}/lti/login\n"
                  f"  redirect URI / target link URI:      {base}/lti/launch\n"
                  f"  public keyset URL (JWKS):            {base}/lti/jwks\n"
                  f"  deep linking (content selection) URL: {base}/lti/launch\n"
                  "  its iframe must allow the camera:    allow=\"camera\" (else choose "
                  "\"open in a new window\")\n"
                  f"tool key: {key_file()} ({'generated now' if created else 'kept'}; "
                  f"kid {key.kid})")
            if not settings.public_url:
                print(f"note: MULTINET_PUBLIC_URL (or --public-url) is not set; the URLs above "
                      f"use {base}, where `serve` listens with these settings (--host, "
                      "--port). Give the address the platform reaches: --public-url "
                      "https://...", file=sys.stderr)
        elif args.action == "list":
            rows = platforms.list()
            if args.json:
                print(json.dumps([r.to_dict() for r in rows], indent=2))
            elif not rows:
                print("no platform is registered (multinet-emotion platform add --help)")
            for r in rows if not args.json else []:
                print(f"{r.issuer}  client id {r.client_id}\n"
                      f"  deployments: {', '.join(r.deployment_ids)}\n"
                      f"  login: {r.auth_login_url}\n  token: {r.auth_token_url}\n"
                      f"  keys:  {r.key_set_url}\n  frames: {' '.join(r.frame_origins)}")
        elif args.action == "try":
            return _try_platform(args, settings, platforms)
        else:
            n = platforms.remove(args.issuer, args.client_id)
            print(f"removed {n} registration{'s' if n != 1 else ''} of {args.issuer.strip()}")
    finally:
        store.close()
    return 0


def _try_platform(args: argparse.Namespace, settings, platforms) -> int:  # noqa: ANN001
    """``platform try``: the try-out platform, registered while it runs."""
    import signal
    import time

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and a termination stop it (a job started in the background has SIGINT ignored)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    from .server.lti.spec import PlatformSpec
    from .server.lti.trial import Simulator
    tool = (args.tool_url or settings.public_url or
            f"http://{settings.host}:{settings.port}").rstrip("/")
    try:
        sim = Simulator(tool_url=tool, client_id="try-out", deployment_id="try-out",
                        port=args.try_port)
    except OSError as e:
        raise MultiNetError(f"--try-port {args.try_port}: cannot listen there "
                            f"({e.strerror})") from None
    reg = sim.registration()
    platforms.add(PlatformSpec(issuer=reg["issuer"], client_id=reg["client_id"],
                               deployment_ids=reg["deployment_ids"],
                               auth_login_url=reg["auth_login_url"],
                               auth_token_url=reg["auth_token_url"],
                               key_set_url=reg["key_set_url"]))
    print(f"a try-out learning platform runs at {sim.issuer}/ (registered with the tool's "
          f"database)\n  open it in a browser: its links launch the tool at {tool} as a "
          "learner or as the instructor\n  the tool must be running: multinet-emotion serve "
          "(same database)\nCtrl-C stops it and removes its registration", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
        platforms.remove(reg["issuer"], reg["client_id"])
        print(f"stopped; removed the registration of {reg['issuer']}")
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
    _platform_parser(sub)
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
