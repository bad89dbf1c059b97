"""`multinet-emotion detect`: every setting stated once, on its stage's config dataclass.

The options, their defaults, help and ranges come from ``faces.DetectorConfig``,
``tracking.TrackerConfig``, ``classifier.ClassifierConfig``, ``detect.PipelineConfig``,
``video.SourceConfig`` and ``video.RunConfig``; a value out of range is one line naming the
option, whichever front end gave it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from multinet_emotion import options
from multinet_emotion.app import Settings
from multinet_emotion.cli import build_parser, main
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.runtime import video as video_module
from multinet_emotion.runtime.classifier import ClassifierConfig, parse_metadata
from multinet_emotion.runtime.detect import PipelineConfig
from multinet_emotion.runtime.faces import CROP_SCALE_RANGE, DetectorConfig
from multinet_emotion.runtime.label_filter import FilterConfig
from multinet_emotion.runtime.tracking import TrackerConfig
from multinet_emotion.runtime.video import RunConfig, SourceConfig

CLASSES = (RunConfig, DetectorConfig, PipelineConfig, TrackerConfig, FilterConfig,
           SourceConfig, ClassifierConfig)
LABEL = "the label shown (a sticky hidden-Markov filter over the emotions, label_filter.py)"

#: The argument group of every option of `detect --help` (unchanged by the refactoring).
GROUPS = {
    "source": None, "model": None,
    "out": "outputs", "jsonl": "outputs", "csv": "outputs", "video_out": "outputs",
    "video_fps": "outputs", "summary": "outputs", "plot": "outputs", "show": "outputs",
    "kind": "faces", "model_path": "faces", "blazeface": "faces", "detect_width": "faces",
    "detect_every": "faces",
    "search_every": "faces",
    "tilt_every": "faces",
    "min_face": "faces", "crop_scale": "faces",
    "smoothing": "tracking and smoothing", "alpha": "tracking and smoothing",
    "window": "tracking and smoothing", "max_missed": "tracking and smoothing",
    "confirm_hits": "tracking and smoothing", "refresh_hz": "tracking and smoothing",
    "stay": LABEL, "evidence": LABEL, "margin": LABEL, "min_evidence": LABEL, "gap": LABEL,
    "live": "source", "retry_seconds": "source", "frame_step": "source",
    "max_frames": "source", "max_seconds": "source", "threads": "source",
}


def _detect_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["detect"]


def test_every_detect_setting_is_an_option_with_its_default_help_and_group():
    p = _detect_parser()
    actions = {a.dest: a for a in p._actions if a.dest != "help"}
    group_of = {a.dest: g.title for g in p._action_groups for a in g._group_actions}
    seen = set()
    for cls in CLASSES:
        for name, (f, spec, _kind, _optional) in options.specs(cls).items():
            if not spec.cli:  # tuning set in code only: no option
                assert name not in actions, name
                continue
            seen.add(name)
            action = actions[name]
            assert options.flag_of(name, spec) in action.option_strings
            assert spec.help and spec.help in action.help
            if f.default is not dataclasses.MISSING:
                assert action.default == f.default, name  # the class's default, stated once
            else:
                assert action.required, name
            if spec.choices:
                assert tuple(action.choices) == spec.choices
            expected = GROUPS[name] or "options"
            assert group_of[name] == expected, (name, group_of[name])
    # nothing else is hand-written but the --out shortcut
    assert set(actions) - seen == {"out"}
    assert seen | {"out"} == set(GROUPS)


def test_detect_help_still_says_what_it_said(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("camera index (0), video file, stream URL, image, or folder of images",
                   "EMA weight of the newest reading (default 0.3)",
                   "window smoothing: number of readings averaged (default 10)",
                   "detect faces on a copy at most this many pixels wide (0 = full size) (default 320)",
                   "ignore faces narrower than this many pixels (default 48)",
                   "(1 = full every frame) (default 5)",
                   "face crop size relative to the detected box (default: the model's)",
                   "many frames in a row (1 = at once); until then a miss ends it (default 3)",
                   "starts afresh (its label shows 'reading...' again) (default 2)",
                   "how long to reconnect a camera/stream that stopped (default 10)",
                   "video files: analyse every Nth frame (1 = all) (default 1)",
                   "ONNX Runtime threads (0 = its default) (default 1)",
                   "--smoothing {ema,window,none}", "--live {auto,on,off}",
                   "frame rate of --video-out (default: the source's; 15 for live)"):
        assert phrase in text, phrase


class _Stop(Exception):
    pass


def _config_of(argv: list[str], monkeypatch) -> RunConfig:
    """The RunConfig `detect` builds from ``argv`` (the run itself is not started)."""
    made = []

    def fake_run(config):
        made.append(config)
        raise _Stop

    monkeypatch.setattr(video_module, "run", fake_run)
    with pytest.raises(_Stop):
        main(["detect", *argv])
    return made[0]


def test_detect_options_fill_the_configs(monkeypatch, tmp_path):
    assert _config_of(["--source", "clip.mp4"], monkeypatch) == RunConfig(source="clip.mp4")
    config = _config_of(
        ["--source", "0", "--model", "m.onnx", "--out", str(tmp_path), "--csv", "e.csv",
         "--show", "--detector", "yunet", "--detector-model", "y.onnx", "--detect-width", "0",
         "--min-face", "30", "--detect-every", "2", "--crop-scale", "1.2",
         "--smoothing", "window", "--alpha", "0.5", "--window", "4", "--max-missed", "2",
         "--confirm-hits", "1", "--label-stay", "0.5", "--label-evidence", "8",
         "--label-margin", "0", "--min-evidence", "0.5", "--label-gap", "3",
         "--refresh-hz", "5", "--live", "off",
         "--retry-seconds", "3", "--frame-step", "2", "--max-frames", "9", "--max-seconds",
         "1.5", "--threads", "2"], monkeypatch)
    assert (config.source, config.model, config.csv, config.show) == \
        ("0", Path("m.onnx"), Path("e.csv"), True)
    assert (config.jsonl, config.summary, config.plot) == \
        (tmp_path / "events.jsonl", tmp_path / "summary.json", tmp_path / "timeline.png")
    assert (config.max_frames, config.max_seconds) == (9, 1.5)
    p = config.pipeline
    assert p.detector == DetectorConfig(kind="yunet", model_path=Path("y.onnx"), detect_width=0,
                                        min_face=30)
    assert p.tracker == TrackerConfig(smoothing="window", alpha=0.5, window=4, max_missed=2,
                                      confirm_hits=1, label=FilterConfig(
                                          stay=0.5, evidence=8.0, margin=0.0,
                                          min_evidence=0.5, gap=3.0))
    assert p.classifier == ClassifierConfig(threads=2)
    assert (p.detect_every, p.crop_scale, p.refresh_hz) == (2, 1.2, 5.0)
    assert config.source_config == SourceConfig(live="off", retry_seconds=3.0, frame_step=2)


@pytest.mark.parametrize("option, value, message", [
    ("--alpha", "0", "--alpha 0.0: must be above 0 and at most 1"),
    ("--alpha", "1.5", "--alpha 1.5: must be above 0 and at most 1"),
    ("--window", "0", "--window 0: must be at least 1"),
    ("--max-missed", "-1", "--max-missed -1: must be at least 0"),
    ("--confirm-hits", "0", "--confirm-hits 0: must be 1 to 100 frames"),
    ("--label-stay", "1", "--label-stay 1.0: must be above 0 and below 1 per second"),
    ("--label-evidence", "0", "--label-evidence 0.0: must be above 0 and at most 100 per "
                              "second"),
    ("--label-margin", "nan", "--label-margin nan: must be at least 0 and below 1"),
    ("--min-evidence", "11", "--min-evidence 11.0: must be 0 to 10 seconds"),
    ("--detect-width", "-1", "--detect-width -1: must be at least 0 pixels"),
    ("--min-face", "-5", "--min-face -5: must be at least 0 pixels"),
    ("--detect-every", "0", "--detect-every 0: must be at least 1 frames"),
    ("--crop-scale", "5", "--crop-scale 5.0: must be 0.5 to 4"),
    ("--refresh-hz", "-1", "--refresh-hz -1.0: must be at least 0 per second"),
    ("--retry-seconds", "-1", "--retry-seconds -1.0: must be at least 0 seconds"),
    ("--frame-step", "0", "--frame-step 0: must be at least 1"),
    ("--max-frames", "-1", "--max-frames -1: must be at least 0"),
    ("--max-seconds", "-2", "--max-seconds -2.0: must be at least 0 seconds"),
    ("--threads", "-1", "--threads -1: must be at least 0"),
    ("--video-fps", "0", "--video-fps 0.0: must be above 0 frames per second"),
])
def test_out_of_range_detect_options_are_one_line_errors(option, value, message, tmp_path,
                                                          capsys):
    # checked before the source is opened or the model loaded
    assert main(["detect", "--source", str(tmp_path / "missing.mp4"), option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("multinet-emotion detect: error: ") and message in err, err


def test_the_python_api_gets_the_same_checks():
    with pytest.raises(MultiNetError, match="--alpha 0: must be above 0 and at most 1"):
        TrackerConfig(alpha=0)
    tracker = TrackerConfig()
    tracker.window = 0  # changed after it was made: validate() still catches it
    with pytest.raises(MultiNetError, match="--window 0: must be at least 1"):
        tracker.validate()
    pipeline = PipelineConfig()
    pipeline.detector.min_face = -1
    with pytest.raises(MultiNetError, match="--min-face -1"):
        pipeline.validate()
    # tuning set in code only is checked too, named by its field
    with pytest.raises(MultiNetError, match="scale_factor 1.0: must be above 1"):
        DetectorConfig(scale_factor=1.0)
    with pytest.raises(MultiNetError, match="color 'bgra': choose one of bgr, rgb"):
        PipelineConfig(color="bgra")
    with pytest.raises(MultiNetError, match="open_timeout 0: must be above 0 seconds"):
        SourceConfig(open_timeout=0)
    with pytest.raises(MultiNetError, match="--source: a value is required"):
        RunConfig(source=None)  # type: ignore[arg-type]


def test_crop_scale_has_one_range_for_detect_export_and_the_model_file(capsys):
    spec = options.specs(PipelineConfig)["crop_scale"][1]
    assert (spec.min, spec.max) == (CROP_SCALE_RANGE["min"], CROP_SCALE_RANGE["max"])
    lo, hi = CROP_SCALE_RANGE["min"], CROP_SCALE_RANGE["max"]
    PipelineConfig(crop_scale=lo), PipelineConfig(crop_scale=hi)
    with pytest.raises(MultiNetError, match=f"--crop-scale {hi + 1}: must be {lo:g} to {hi:g}"):
        PipelineConfig(crop_scale=hi + 1)
    # export: checked before anything is loaded
    assert main(["export", "--model", "best.pt", "--out", "m.onnx", "--no-quantize",
                 "--crop-scale", str(lo / 2)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--crop-scale {lo / 2}: must be {lo:g} to {hi:g}" in err, err
    # the model file's metadata
    meta = {"version": 1, "labels": list(EMOTIONS), "crop_scale": hi}
    assert parse_metadata(json.dumps(meta), Path("m.onnx")).crop_scale == hi
    for bad in (hi * 2, "big"):
        with pytest.raises(MultiNetError, match=f"m.onnx: crop_scale {bad}: must be {lo:g} to "
                                                f"{hi:g}; re-export"):
            parse_metadata(json.dumps({**meta, "crop_scale": bad}), Path("m.onnx"))


def test_the_label_filter_is_the_runtimes_in_the_server_too():
    """serve states no label settings of its own: the runtime's FilterConfig is the one."""
    assert not {"min_dwell", "hysteresis", "stay", "evidence", "margin"} & \
        set(options.specs(Settings))


def test_the_server_states_the_runtimes_scan_settings_once():
    """serve's --detect-every and --search-every are the runtime's settings (one help, one
    range) with the service's own defaults, stated in one place."""
    for name in ("detect_every", "search_every"):
        runtime, server = options.specs(PipelineConfig)[name], options.specs(Settings)[name]
        assert server[1].help == runtime[1].help and server[1].min == runtime[1].min
        assert server[1].env and not runtime[1].env  # MULTINET_DETECT_EVERY for serve
    assert (Settings().detect_every, PipelineConfig().detect_every) == (10, 5)
    assert (Settings().search_every, PipelineConfig().search_every) == (2, 1)
