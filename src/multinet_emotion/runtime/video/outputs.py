"""What a run writes: the annotated frame, a video file, a window, the events (JSON Lines and
CSV, made here from :class:`~multinet_emotion.emotions.Reading` s) and the timeline plot."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, TextIO

import cv2
import numpy as np

from ...emotions import COLORS, EMOTIONS, Reading
from ...errors import MultiNetError
from ...files import atomic_path

#: Overlay colours (BGR) and plot colours (RGB hex) of the six emotions: emotions.COLORS
COLORS_HEX: dict[str, str] = dict(COLORS)
COLORS_BGR: dict[str, tuple[int, int, int]] = {
    k: (int(v[5:7], 16), int(v[3:5], 16), int(v[1:3], 16)) for k, v in COLORS.items()}


def annotate(frame: np.ndarray, faces: list[Reading], note: str = "") -> np.ndarray:
    """A copy of ``frame`` (BGR) with each face's box, id, shown label and that label's own
    percentage ("reading..." while the label is not decided yet)."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, min(out.shape[1] / 1280, 1.2))
    thick = max(1, round(2 * scale))
    for face in faces:
        if face.box is None:
            continue
        x, y0, w, h = face.box
        label = face.shown_label
        color = COLORS_BGR.get(label or "", (255, 255, 255))
        if face.angle:  # a tilted face: its square, turned as the face is
            corners = cv2.boxPoints(((x + w / 2, y0 + h / 2), (w, h), face.angle))
            cv2.polylines(out, [np.round(corners).astype(np.int32)], True, color, thick)
        else:
            cv2.rectangle(out, (x, y0), (x + w, y0 + h), color, thick)
        text = overlay_text(face)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale * 1.5, thick)
        y = y0 - 4 if y0 - th - base - 4 > 0 else y0 + h + th + 4
        cv2.rectangle(out, (x, y - th - base), (x + tw + 4, y + base), color, -1)
        cv2.putText(out, text, (x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale * 1.5,
                    (0, 0, 0), thick, cv2.LINE_AA)
    if note:
        cv2.putText(out, note, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale * 1.5,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out


def overlay_text(face: Reading) -> str:
    """A face's caption: its track, the label shown and that label's own percentage
    ("#1 happy 62%"), or "reading..." while the label is not decided."""
    if face.shown_label is None:
        return f"#{face.track_id} reading..."
    return f"#{face.track_id} {face.shown_label} {face.share or 0.0:.0%}"


class VideoSink:
    """An annotated video, written beside the target and renamed into place when closed."""

    FOURCC: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v",
                                        ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in self.FOURCC:
            raise MultiNetError(f"--video-out {path}: use a .mp4, .avi, .mkv or .mov file name")
        self.fps = fps
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter.fourcc(*self.FOURCC[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                self.tmp.unlink(missing_ok=True)
                raise MultiNetError(f"cannot write video {self.path}: OpenCV has no encoder "
                                    "for it here; try a .avi file name")
        if (image.shape[1], image.shape[0]) != self.size:  # image folders of mixed sizes
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.tmp, self.path)


class Display:
    """An OpenCV window; MultiNetError up front when this OpenCV build or machine has no GUI."""

    def __init__(self, title: str = "multinet-emotion") -> None:
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY")):
            raise MultiNetError("--show needs a display, and none is available here (no DISPLAY); "
                                "write an annotated video with --video-out instead")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise MultiNetError("--show needs OpenCV with GUI support, and this one has none "
                                "(opencv-python-headless); install opencv-python instead, or "
                                "write an annotated video with --video-out") from None

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc or closed the window."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


CSV_FIELDS = (["t", "frame", "track_id", "face", "x", "y", "w", "h", "angle", "label",
               "smoothed_label", "shown_label", "shown_share", "confidence"]
              + [f"p_{k}" for k in EMOTIONS] + [f"s_{k}" for k in EMOTIONS])


def face_event(reading: Reading, frame: int) -> dict[str, Any]:
    """The JSON Lines event of one face in one frame (the schema consumers rely on)."""
    return {"t": round(reading.t, 4), "frame": int(frame), "track_id": reading.track_id,
            "face": True, **reading.face_json()}


def no_face_event(t: float, frame: int) -> dict[str, Any]:
    """The event for an analysed frame without any face: no emotion is invented."""
    return {"t": round(float(t), 4), "frame": int(frame), "track_id": None, "face": False}


def frame_events(t: float, frame: int, faces: list[Reading]) -> list[dict[str, Any]]:
    """The events of one analysed frame: one per face, or one "no face" event."""
    return [face_event(r, frame) for r in faces] or [no_face_event(t, frame)]


def event_to_row(event: dict[str, Any]) -> dict[str, Any]:
    """A flat CSV row for an event (empty cells for a frame without a face)."""
    row: dict[str, Any] = {"t": event["t"], "frame": event["frame"],
                           "track_id": "" if event["track_id"] is None else event["track_id"],
                           "face": int(event["face"])}
    if event["face"]:
        row.update(zip("xywh", event["box"]))
        row["angle"] = event.get("angle", 0.0)
        row.update(label=event["label"], smoothed_label=event["smoothed_label"],
                   shown_label=event["shown_label"] or "", shown_share=event["shown_share"],
                   confidence=event["confidence"])
        row.update({f"p_{k}": v for k, v in event["probs"].items()})
        row.update({f"s_{k}": v for k, v in event["smoothed"].items()})
    return row


def _open_output(path: Path, option: str, newline: str | None = None) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", newline=newline)
    except OSError as e:
        raise MultiNetError(f"{option} {path}: cannot write there ({e.strerror}); choose "
                            "another path") from None


class EventWriter:
    """JSON Lines (``-`` = standard output) and/or CSV events, flushed after every frame, so
    a run that is stopped keeps everything written so far."""

    def __init__(self, jsonl: Path | None, csv_path: Path | None) -> None:
        self.jsonl = self.csv = None
        self._writer = None
        self._own_jsonl = jsonl is not None and str(jsonl) != "-"
        if jsonl is not None and not self._own_jsonl:
            self.jsonl = sys.stdout  # "-": events to standard output, for a pipe
        elif jsonl is not None:
            self.jsonl = _open_output(jsonl, "--jsonl")
        try:
            if csv_path is not None:
                self.csv = _open_output(csv_path, "--csv", newline="")
                self._writer = csv.DictWriter(self.csv, CSV_FIELDS)
                self._writer.writeheader()
        except BaseException:  # do not leave the JSON Lines file open
            self.close()
            raise

    def write(self, t: float, frame: int, faces: list[Reading]) -> int:
        """Write the events of one analysed frame (time ``t``, index ``frame``); their count."""
        events = frame_events(t, frame, faces)
        if self.jsonl is not None:
            self.jsonl.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
            self.jsonl.flush()
        if self._writer is not None:
            self._writer.writerows(event_to_row(e) for e in events)
            assert self.csv is not None  # opened with the writer
            self.csv.flush()
        return len(events)

    def close(self) -> None:
        if self.jsonl is not None and self._own_jsonl:
            self.jsonl.close()
        if self.csv is not None:
            self.csv.close()


#: Plot formats, chosen by the file's suffix (those matplotlib's Agg canvas writes).
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def check_plot_path(path: Path) -> None:
    """One clear error for a ``--plot`` path whose suffix names no image format."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        kind = f"a {suffix} file" if suffix else "a file without a suffix"
        raise MultiNetError(f"--plot {path}: cannot draw the plot as {kind}; name it with one "
                            f"of {', '.join(PLOT_SUFFIXES)} (e.g. timeline.png)")


def plot_timeline(summary: dict[str, Any], path: Path) -> None:
    """A PNG (or another format of :data:`PLOT_SUFFIXES`, by ``path``'s suffix): per track,
    its shown emotion over time, and its shares of time per emotion."""
    check_plot_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: never touches the user's backend
    from matplotlib.patches import Patch

    tracks = summary.get("tracks", {})
    n = max(len(tracks), 1)
    fig = Figure(figsize=(10, 1.6 + 0.9 * n))
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    unit = "image" if summary.get("kind") in ("image", "images") else "time (s)"
    for row, (_tid, tr) in enumerate(tracks.items()):
        for start, end, label in tr["segments"]:
            ax.broken_barh([(start, max(end - start, 1e-3))], (row - 0.4, 0.8),
                           color=COLORS_HEX[label])
        left = 0.0
        for label in EMOTIONS:
            share = tr["shares"][label]
            if share > 0:
                ax2.barh(row, share, left=left, height=0.8, color=COLORS_HEX[label])
                left += share
    ax.set_yticks(range(len(tracks)), [f"track {t}" for t in tracks])
    ax.set_ylim(-0.6, n - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(f"emotion per track - {Path(str(summary.get('source', ''))).name}")
    if not tracks:
        ax.text(0.5, 0.5, "no faces found", ha="center", va="center", transform=ax.transAxes)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of time")
    fig.legend(handles=[Patch(color=COLORS_HEX[k], label=k) for k in EMOTIONS],
               loc="lower center", ncol=6, frameon=False)
    fig.tight_layout(rect=(0, 0.12 if n > 1 else 0.18, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
