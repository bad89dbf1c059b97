"""The ``detect`` sub-command (the runtime half): faces and emotions in a camera, stream,
video, image or folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def detect_parser(sub) -> None:
    p = sub.add_parser(
        "detect", help="detect faces and emotions in a camera, stream, video, image or folder",
        description="Find faces, follow them with stable ids and classify their emotions. "
        "Cameras and streams are live (the newest frame is always analysed); video files are "
        "analysed frame by frame. Ctrl-C stops and saves everything written so far.")
    from . import options
    from .runtime.classifier import ClassifierConfig
    from .runtime.detect import PipelineConfig
    from .runtime.faces import DetectorConfig
    from .runtime.label_filter import FilterConfig
    from .runtime.tracking import TrackerConfig
    from .runtime.video import RunConfig, SourceConfig
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
    from .runtime.classifier import ClassifierConfig
    from .runtime.faces import DetectorConfig
    from .runtime.label_filter import FilterConfig
    from .runtime.tracking import TrackerConfig
    from .runtime.video import PipelineConfig, RunConfig, SourceConfig, run

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
