"""`multinet-emotion detect`: outputs, one-line errors, and no torch in the runtime half."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from multinet_emotion.cli import main
from multinet_emotion.runtime import classifier


def test_detect_writes_the_outputs_the_user_asks_for(drawn_face_clip, brightness_onnx_model,
                                                     tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--out", str(out), "--csv", str(out / "events.csv"),
               "--video-out", str(out / "annotated.mp4"), "--smoothing", "window",
               "--window", "5", "--refresh-hz", "10"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "60 frames analysed" in printed and "track 1" in printed and "track 2" in printed
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    # no-face frames (0-11: nobody, then A not confirmed yet) + one event per reported face
    # per frame (A: 12-44, B: 27-59)
    assert len(events) == 12 + 33 + 33
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["refresh_hz"] == 10
    assert summary["settings"]["tracker"]["smoothing"] == "window"
    for name in ("timeline.png", "events.csv", "annotated.mp4"):
        assert (out / name).stat().st_size > 0
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    cap.release()


def test_events_can_go_to_stdout_for_a_pipe(drawn_face_clip, brightness_onnx_model, capsys):
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--jsonl", "-", "--max-frames", "12"])
    assert rc == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert [e["frame"] for e in events][:10] == list(range(10)) and events[0]["face"] is False
    assert "12 frames analysed" in captured.err


def _one_error_line(capfd) -> str:
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("multinet-emotion detect: error: ")
    return err[0]


def test_a_missing_source_is_one_error_line(brightness_onnx_model, tmp_path, capfd):
    rc = main(["detect", "--source", str(tmp_path / "missing.mp4"), "--model",
               str(brightness_onnx_model)])
    assert rc == 2
    assert "missing.mp4 does not exist" in _one_error_line(capfd)


def test_no_camera_is_one_error_line(brightness_onnx_model, capfd):
    rc = main(["detect", "--source", "97", "--model", str(brightness_onnx_model)])
    if rc == 0:
        pytest.skip("this machine has a camera at index 97")
    assert rc == 2
    assert "cannot open camera 97" in _one_error_line(capfd)


def test_no_default_model_is_one_error_line(drawn_face_clip, monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(classifier, "default_model_path", lambda: tmp_path / "model.onnx")
    rc = main(["detect", "--source", str(drawn_face_clip.path)])
    assert rc == 2
    line = _one_error_line(capfd)
    assert "no default model is installed" in line and "--model PATH" in line


def test_show_on_headless_opencv_is_one_error_line(drawn_face_clip, brightness_onnx_model,
                                                   monkeypatch, capfd):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--show"])
    assert rc == 2
    assert "--video-out" in _one_error_line(capfd)


def test_bad_options_are_refused(drawn_face_clip, brightness_onnx_model, capfd):
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--alpha", "1.5"])
    assert rc == 2
    assert "--alpha" in _one_error_line(capfd)


def test_the_runtime_half_never_imports_torch(drawn_face_clip, brightness_onnx_model, tmp_path):
    code = f"""
import sys
import multinet_emotion
from multinet_emotion import EmotionDetector, load_model
import multinet_emotion.runtime.faces, multinet_emotion.runtime.classifier, multinet_emotion.runtime.tracking
import multinet_emotion.runtime.video
from multinet_emotion.cli import main
assert main(["detect", "--source", {str(drawn_face_clip.path)!r}, "--model",
             {str(brightness_onnx_model)!r}, "--max-frames", "3",
             "--summary", {str(tmp_path / "s.json")!r}]) == 0
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print("TORCH:", bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "TORCH: []" in done.stdout
    assert Path(tmp_path / "s.json").is_file()


def test_the_server_and_every_runtime_module_never_import_torch(brightness_onnx_model,
                                                                 tmp_path):
    """Not only the detect path: the web service, the store, the recommender and the other
    runtime modules import (and the app builds, with its analyser) without torch."""
    code = f"""
import sys
import multinet_emotion.app, multinet_emotion.app.store, multinet_emotion.recommend
import multinet_emotion.runtime.video, multinet_emotion.runtime.classifier, multinet_emotion.runtime.faces
import multinet_emotion.runtime.tracking
from multinet_emotion.app import Settings, create_app
app = create_app(Settings(database_url={f"sqlite:///{tmp_path / 'm.db'}"!r},
                          instructor_token="x" * 12, model={str(brightness_onnx_model)!r}))
assert app.state.context.analyzer_factory is not None, app.state.context.analysis_note
app.state.context.analyzer_factory()
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print("TORCH:", bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "TORCH: []" in done.stdout


def test_the_server_imports_the_detector_but_never_the_video_io(brightness_onnx_model,
                                                                tmp_path):
    """The web service analyses frames with multinet_emotion.runtime.detect; sources, capture
    threads, writers and plots (multinet_emotion.runtime.video) stay out of its process."""
    code = f"""
import sys
import multinet_emotion.app
from multinet_emotion.app import Settings, create_app
app = create_app(Settings(database_url={f"sqlite:///{tmp_path / 'm.db'}"!r},
                          instructor_token="x" * 12, model={str(brightness_onnx_model)!r}))
assert app.state.context.analyzer_factory is not None, app.state.context.analysis_note
analyzer = app.state.context.analyzer_factory()
import numpy as np
assert analyzer.analyze(np.zeros((48, 64, 3), np.uint8), 12.5) == []
assert "multinet_emotion.runtime.detect" in sys.modules
bad = sorted(m for m in sys.modules if m == "multinet_emotion.runtime.video"
             or m.startswith("multinet_emotion.runtime.video."))
print("VIDEO:", bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "VIDEO: []" in done.stdout


def test_an_output_that_cannot_be_written_is_one_error_line(drawn_face_clip,
                                                            brightness_onnx_model, tmp_path,
                                                            capfd):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    rc = main(["detect", "--source", str(drawn_face_clip.path), "--model",
               str(brightness_onnx_model), "--jsonl", str(blocker / "events.jsonl")])
    assert rc == 2
    assert "--jsonl" in _one_error_line(capfd)
