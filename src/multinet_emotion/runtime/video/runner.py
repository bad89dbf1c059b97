"""A whole ``detect`` run: a source through the detector into the outputs, and its summary."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ... import options
from ...emotions import Reading
from ...errors import MultiNetError
from ...files import atomic_write_text
from ...options import setting
from ...progress import bar
from ..detect import EmotionDetector, PipelineConfig
from ..tracking import Timeline
from .outputs import Display, EventWriter, VideoSink, annotate, check_plot_path, plot_timeline
from .sources import Frame, Source, SourceConfig, open_source

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """One ``detect`` run: the source, the analysis and the outputs the user chose."""

    source: str = setting(help="camera index (0), video file, stream URL, image, or folder of "
                               "images")
    model: Path | None = setting(None, metavar="hybrid|student|PATH",
                                 help="emotion model: a shipped one (hybrid, the accurate; "
                                      "student, the compact and fast) or an exported .onnx "
                                      "(default: hybrid)")
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    source_config: SourceConfig = field(default_factory=SourceConfig)
    jsonl: Path | None = setting(None, help="JSON Lines events, one per face per analysed frame "
                                 "('-' = stdout)")
    csv: Path | None = setting(None, help="the same events as CSV")
    video_out: Path | None = setting(None, help="annotated video file (.mp4 or .avi)")
    video_fps: float | None = setting(None, min=0, min_open=True, unit="frames per second",
                                      help="frame rate of --video-out (default: the source's; 15 "
                                           "for live)")
    summary: Path | None = setting(None, help="summary JSON: per track, duration and share of "
                                   "time in each emotion")
    plot: Path | None = setting(None, help="timeline plot PNG")
    show: bool = setting(False, help="annotated window (needs a display and OpenCV with GUI "
                         "support)")
    max_frames: int = setting(0, min=0, help="stop after N analysed frames (0 = no limit)")
    max_seconds: float = setting(0.0, min=0, unit="seconds",
                                 help="stop after N seconds of wall time (0 = no limit)")

    def __post_init__(self) -> None:
        options.check(self)


@dataclass
class RunReport:
    """What a run did: counts, speed, latency, and the summary written to disk."""

    summary: dict[str, Any]
    events: int = 0
    interrupted: bool = False


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "max": round(float(a.max()), 1)}


def quiet_opencv(verbose: bool = False) -> None:
    """Keep OpenCV's and FFmpeg's own warnings off the terminal; errors are ours to report."""
    if not verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:  # very old builds
            pass


def run(config: RunConfig, detector: EmotionDetector | None = None,
        source: Source | None = None,
        on_frame: Callable[[Frame, list[Reading]], None] | None = None) -> RunReport:
    """Analyse a whole source and write the outputs ``config`` asks for.

    Ctrl-C (KeyboardInterrupt) ends the run like the end of the source: every output is
    flushed and the summary is written; :attr:`RunReport.interrupted` tells it happened."""
    quiet_opencv(log.isEnabledFor(logging.DEBUG))
    options.check(config)  # also a config changed after it was made
    if config.plot is not None:  # fail before any work, not after the run
        check_plot_path(config.plot)
    display = Display() if config.show else None  # fail before any work when there is no GUI
    detector = detector or EmotionDetector(config.model, config.pipeline)
    source = source or open_source(config.source, config.source_config)
    events_out = video = None
    timeline = Timeline(max_gap=1.0)
    latencies: list[float] = []
    n_events = analysed = 0
    interrupted = False
    started = time.time()
    t_start = time.monotonic()
    # a file or a folder of images has a known length: a bar with its ETA
    total = getattr(source, "frame_count", None) or (
        len(getattr(source, "paths", [])) or None)
    progress = bar(total, f"analysing {Path(source.name).name}", unit="frame") \
        if total and total > 1 and not source.live else None
    try:
        events_out = EventWriter(config.jsonl, config.csv)
        if config.video_out is not None:
            fps = config.video_fps or (source.fps / max(1, config.source_config.frame_step)
                                       if source.fps and not source.live else 15.0)
            video = VideoSink(config.video_out, fps)
        for frame in source:
            if source.independent:
                detector.reset()
            faces = detector.process(frame.image, t=frame.t, still=source.independent)
            n_events += events_out.write(frame.t, frame.index, faces)
            analysed += 1
            if progress is not None and total:  # (a bar only with a total)
                progress.update(max(0, min(frame.index + 1, total) - progress.n))
            # the detector's faces are tracked: each has its track id
            timeline.add_frame(frame.t, {f.track_id: f.shown_label for f in faces if f.track_id is not None})
            if video is not None or display is not None:
                image = annotate(frame.image, faces)
                if video is not None:
                    video.write(image)
                if display is not None and not display.show(image):
                    break
            if on_frame is not None:
                on_frame(frame, faces)
            latencies.append(time.monotonic() - frame.captured_at)
            if config.max_frames and analysed >= config.max_frames:
                break
            if config.max_seconds and time.monotonic() - t_start >= config.max_seconds:
                break
    except KeyboardInterrupt:
        interrupted = True
        log.info("interrupted: saving what was analysed so far")
    finally:
        if progress is not None:
            progress.close()
        source.close()
        if events_out is not None:
            events_out.close()
        if video is not None:
            video.close()
        if display is not None:
            display.close()
    summary = _summary(config, detector, source, timeline, started=started,
                       wall=time.monotonic() - t_start, analysed=analysed,
                       interrupted=interrupted, latencies=latencies)
    _write_summary(config, summary)
    return RunReport(summary=summary, events=n_events, interrupted=interrupted)


def _summary(config: RunConfig, detector: EmotionDetector, source: Source, timeline: Timeline,
             *, started: float, wall: float, analysed: int, interrupted: bool,
             latencies: list[float]) -> dict[str, Any]:
    """The run's summary: the source, the frames, the speed, the settings and the tracks."""
    summary: dict[str, Any] = {
        "source": source.name, "kind": source.kind, "live": source.live,
        "model": str(detector.classifier.path),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(wall, 3),
        "frames_read": source.frames_read, "frames_analysed": analysed,
        "unreadable_frames": source.unreadable, "dropped_frames": source.dropped,
        "source_lost": source.lost, "reconnects": source.reconnects, "interrupted": interrupted,
        "analysis_fps": round(analysed / wall, 2) if wall > 0 else None,
        "latency_ms": _percentiles(latencies),
        "settings": _settings(config, detector),
        **timeline.summary(),
    }
    if source.labels:
        summary["images"] = source.labels
    return summary


def _write_summary(config: RunConfig, summary: dict[str, Any]) -> None:
    """The summary (``--summary``) and its timeline plot (``--plot``), where asked."""
    writers: tuple[tuple[str, Path | None, Callable[[Path], None]], ...] = (
        ("--summary", config.summary,
         lambda p: atomic_write_text(p, json.dumps(summary, indent=2) + "\n")),
        ("--plot", config.plot, lambda p: plot_timeline(summary, p)))
    for option, path, write in writers:
        if path is not None:
            try:
                write(path)
            except OSError as e:
                raise MultiNetError(f"{option} {path}: cannot write there ({e.strerror}); the "
                                    "events written so far are kept") from None


def _settings(config: RunConfig, detector: EmotionDetector) -> dict[str, Any]:
    p = detector.config
    d = asdict(p.detector)
    d["model_path"] = None if d["model_path"] is None else str(d["model_path"])
    return {"detector": d, "tracker": asdict(p.tracker), "detect_every": p.detect_every,
            "refresh_hz": p.refresh_hz, "crop_scale": detector.crop_scale,
            "input_size": detector.classifier.input_size,
            "frame_step": config.source_config.frame_step, "live": config.source_config.live}
