"""Does what people are shown follow the face? A ground-truth benchmark of the temporal layer.

    python bench/temporal.py                    # PrivateTest clips: the table in the README
    python bench/temporal.py --tune             # choose the label filter on PublicTest clips
    python bench/temporal.py --seconds 60 --json reports/temporal.json

Clips are made of FER2013 faces the model never trained on, labelled by their FER+ majority
(clear faces only: at least ``--min-votes`` of the 10 annotators agree; and faces the face
detector finds when drawn alone, since the benchmark is about what is done with the faces
that are found), in 320x240 grey
frames like the learner page sends (a gradient with sensor noise, a few shapes, JPEG 70),
at ``--fps`` frames a second. A clip is a run of segments, one emotion each, 0.5 to 8 s
long, each showing one face of that emotion that drifts, grows and shrinks, with its blur
and light changing as a webcam's would. Inside segments come brief bad moments (0.2-0.5 s
of strong blur, darkness or a bar across the face: the expression does not change, the
picture does), and the face now and then leaves for 1-3 s and comes back. A bright lamp and
a hand-like shape stand in the background. Everything is drawn from ``--seed``.

The whole runtime pipeline (``EmotionDetector``: face detector, tracker, model, label
filter) reads every frame, as ``detect`` does on a video file; then again at 2 frames a
second (the learner page's rate in server mode), to show that the label does not depend on
the frame rate. Per frame of the true face, it compares with the truth:

- the raw top class, the smoothed top class and the label shown (a frame where the face is
  not reported, or is still "reading...", counts as a miss for each);
- the median switch latency: from a change of emotion to the shown label's first frame on
  the new one, over the changes whose new face the model reads right (raw top class) on
  most frames; censored at the segment's end (counted as its length);
- shown-label changes per minute inside segments, after the label reached the segment's
  emotion, and the same for the raw top class;
- the summary's error: the largest difference (points) between an emotion's share of the
  time in ``detect``'s summary (all tracks) and its share of the true face's time;
- false tracks: reported tracks that are mostly not on the true face.

``--tune`` runs the pipeline once on PublicTest clips and replays the label filter
(``label_filter.LabelFilter``, exactly as the tracks ran it) over a grid of its settings:
among settings with a median latency <= 0.8 s and <= 4 changes a minute at both frame
rates, and for a face between two expressions whose readings trade places every 0.5 or 1 s
(the eye sees one steady face), the steadiest of those within 0.1 point of the best mean
shown-label agreement wins; those are the defaults of ``FilterConfig``. The previous shown
label
(a dwell time of 1 s and a margin of 0.1 on the smoothed probabilities) is replayed beside
it for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.progress import bar
from multinet_emotion.runtime.detect import EmotionDetector, PipelineConfig
from multinet_emotion.runtime.faces import Box, DetectorConfig, HaarDetector
from multinet_emotion.runtime.label_filter import FilterConfig, LabelFilter
from multinet_emotion.runtime.tracking import Timeline, Track
from multinet_emotion.training.datasets import DataConfig, load_dataset
from multinet_emotion.training.ferplus import ferplus_majority, load_ferplus_votes

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
W, H = 320, 240
SPLITS = {"test": "PrivateTest", "val": "PublicTest"}


# --- the clips -----------------------------------------------------------------------------

@dataclass
class Segment:
    start: float
    end: float
    emotion: int | None  # None: nobody in view
    face: int = -1  # index into the faces of the split


@dataclass
class Clip:
    fps: float
    segments: list[Segment]
    frames: list[np.ndarray] = field(default_factory=list)
    boxes: list[Box | None] = field(default_factory=list)  # the true face's box per frame
    truth: list[int | None] = field(default_factory=list)  # the emotion per frame

    @property
    def times(self) -> list[float]:
        return [i / self.fps for i in range(len(self.frames))]


def clear_faces(split: str, min_votes: int) -> tuple[np.ndarray, np.ndarray]:
    """The split's 48x48 faces whose FER+ majority has at least ``min_votes`` of 10 votes."""
    data = load_dataset(DataConfig(path=SHARED / "fer2013", image_size=48))
    faces = data.split(split)
    votes = load_ferplus_votes(SHARED / "ferplus")
    keep, labels = [], []
    for i, src in enumerate(faces.sources):
        v = votes.get(src.replace("\\", "/"))
        label = None if v is None else ferplus_majority(v)
        if label is not None and v.max() >= min_votes:
            keep.append(i)
            labels.append(label)
    return faces.images[keep], np.asarray(labels)


def findable(face: np.ndarray, detector: HaarDetector) -> bool:
    """Whether the face detector finds this face drawn at 100 px in a plain scene: the
    clips test what is done with faces that are found, so they use faces a webcam's
    detector would find (FER2013 has profiles and cut-off faces it never finds)."""
    frame = np.full((H, W), 120.0, np.float32)
    head(frame, cv2.resize(face, (100, 100), interpolation=cv2.INTER_CUBIC).astype(np.float32),
         110, 70, 100)
    image = cv2.cvtColor(frame.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return any(b.iou(Box(110, 70, 100, 100)) > 0.3 for b in detector.detect(image))


def plan(rng: np.random.Generator, seconds: float, faces: np.ndarray,
         labels: np.ndarray) -> list[Segment]:
    """Segments of one emotion (each emotion in turn, shuffled), with absences between;
    each segment a findable face of its emotion."""
    by_class = {k: np.flatnonzero(labels == k) for k in range(len(EMOTIONS))}
    detector = HaarDetector()

    def pick(e: int) -> int:
        while True:
            i = int(rng.choice(by_class[e]))
            if findable(faces[i], detector):
                return i

    segments: list[Segment] = []
    t, order = 0.0, []
    while t < seconds:
        if not order:
            order = list(rng.permutation(len(EMOTIONS)))
        if segments and segments[-1].emotion is not None and rng.random() < 0.12:
            d = float(rng.uniform(1.0, 3.0))
            segments.append(Segment(t, t + d, None))
        else:
            e = int(order.pop())
            if segments and segments[-1].emotion == e:
                continue
            d = float(rng.choice([rng.uniform(0.5, 2.0), rng.uniform(2.0, 8.0)], p=[0.3, 0.7]))
            segments.append(Segment(t, t + d, e, pick(e)))
        t += d
    return segments


def scene(rng: np.random.Generator) -> np.ndarray:
    """A grey room: a gradient, a few shelves and frames, a lamp, a hand-like shape."""
    lo, hi = rng.integers(40, 110), rng.integers(130, 210)
    bg = np.tile(np.linspace(lo, hi, W, dtype=np.float32), (H, 1))
    for _ in range(4):
        x, y = int(rng.integers(0, W - 40)), int(rng.integers(0, H - 30))
        cv2.rectangle(bg, (x, y), (x + int(rng.integers(20, 80)), y + int(rng.integers(10, 50))),
                      float(rng.integers(20, 230)), -1)
    cv2.circle(bg, (int(rng.integers(20, 80)), int(rng.integers(20, 60))), 14, 245.0, -1)  # lamp
    hand = (int(rng.integers(230, 300)), int(rng.integers(150, 210)))
    cv2.ellipse(bg, hand, (16, 22), 10, 0, 360, 170.0, -1)
    for k in range(4):  # fingers
        cv2.line(bg, (hand[0] - 9 + 6 * k, hand[1] - 14), (hand[0] - 11 + 7 * k, hand[1] - 38),
                 170.0, 5)
    return bg


def head(frame: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> None:
    """Paste a tightly cropped face into ``frame`` at (x, y) inside a head: an oval of the
    face's own border tone with dark hair on top, the face's edges feathered into it (a
    FER2013 crop alone has no outline, which a face detector looks for)."""
    tone = float(np.median(np.concatenate([face[0], face[-1], face[:, 0], face[:, -1]])))
    cx, cy = x + side // 2, y + side // 2
    cv2.ellipse(frame, (cx, cy - side // 8), (int(side * 0.62), int(side * 0.78)), 0, 180, 360,
                max(tone - 90, 15.0), -1)  # hair
    cv2.ellipse(frame, (cx, cy), (int(side * 0.58), int(side * 0.68)), 0, 0, 360, tone, -1)
    ramp = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    feather = np.clip(ramp / (side * 0.08), 0, 1)
    alpha = np.outer(feather, feather)
    region = frame[y:y + side, x:x + side]
    region[:] = alpha * face + (1 - alpha) * region


def render(split_faces: np.ndarray, segments: list[Segment], fps: float,
           rng: np.random.Generator) -> Clip:
    """The frames of a clip: the segment's face moving, scaled, blurred and lit."""
    clip = Clip(fps, segments)
    background = scene(rng)
    n = int(segments[-1].end * fps)
    phase = rng.uniform(0, 2 * np.pi, 4)
    bad_until = -1.0
    bad_kind = 0
    seg_i = 0
    for i in range(n):
        t = i / fps
        while segments[seg_i].end <= t:
            seg_i += 1
        seg = segments[seg_i]
        frame = background + rng.normal(0, 5, (H, W)).astype(np.float32)
        box = None
        if seg.emotion is not None:
            side = int(100 + 25 * np.sin(0.21 * t + phase[0]))
            cx = W / 2 + 50 * np.sin(0.13 * t + phase[1])
            cy = H / 2 + 12 * np.sin(0.17 * t + phase[2])
            x, y = int(cx - side / 2), int(cy - side / 2)
            face = cv2.resize(split_faces[seg.face], (side, side),
                              interpolation=cv2.INTER_CUBIC).astype(np.float32)
            blur = 0.4 + 0.6 * (1 + np.sin(0.31 * t + phase[3]))
            gain = 0.85 + 0.2 * np.sin(0.07 * t + phase[1])
            if t >= bad_until and rng.random() < 0.35 / fps and t - seg.start > 0.3:
                bad_until, bad_kind = t + float(rng.uniform(0.2, 0.5)), int(rng.integers(3))
            if t < bad_until:  # a bad moment: the picture, not the expression
                if bad_kind == 0:
                    blur = 3.5
                elif bad_kind == 1:
                    gain = 0.35
                else:
                    face[int(side * 0.55):int(side * 0.8)] = 60.0  # a hand or a mug
            face = cv2.GaussianBlur(face, (0, 0), min(blur, 2.0))
            head(frame, face, x, y, side)
            frame[:] = cv2.GaussianBlur(frame, (0, 0), blur) if blur > 2 else frame
            frame[max(y - side // 2, 0):y + side + side // 3] *= gain
            box = Box(x, y, side, side)
        ok, buf = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, 70])
        grey = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        clip.frames.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        clip.boxes.append(box)
        clip.truth.append(seg.emotion)
    return clip


def make_clip(split: str, seconds: float, fps: float, seed: int, min_votes: int) -> Clip:
    faces, labels = clear_faces(split, min_votes)
    rng = np.random.default_rng(seed)
    return render(faces, plan(rng, seconds, faces, labels), fps, rng)


# --- running the pipeline ------------------------------------------------------------------

@dataclass
class Record:
    """What the pipeline did on one frame: the reported faces and every track's reading."""

    t: float
    reported: list[tuple[int, Box, np.ndarray, np.ndarray, int | None]]  # id, box, raw, smoothed, shown
    updates: list[tuple[int, np.ndarray]]  # (track id, raw probs) read on this frame


def run_pipeline(clip: Clip, step: int, model: Path | None, desc: str,
                 detector_kind: str = "haar") -> list[Record]:
    """``EmotionDetector`` over every ``step``-th frame of the clip (``detect``'s defaults,
    with ``detector_kind``'s face detector)."""
    detector = EmotionDetector(model, PipelineConfig(detector=DetectorConfig(kind=detector_kind)))
    records: list[Record] = []
    updates: list[tuple[int, np.ndarray]] = []
    original = Track.set_probs

    def spy(track: Track, probs: np.ndarray, t: float, settle: bool = False) -> None:
        updates.append((track.id, np.asarray(probs, np.float64)))
        original(track, probs, t, settle)

    progress = bar(len(clip.frames) // step, desc=desc, unit="frame")
    Track.set_probs = spy  # type: ignore[method-assign]
    try:
        for i in range(0, len(clip.frames), step):
            t = i / clip.fps
            faces = detector.process(clip.frames[i], t)
            reported = [(f.track_id, Box(*f.box), np.asarray(f.raw_probs, np.float64),
                         np.asarray(f.probs, np.float64),
                         None if f.shown_label is None else EMOTIONS.index(f.shown_label))
                        for f in faces]
            records.append(Record(t, reported, list(updates)))
            updates.clear()
            progress.update(1)
    finally:
        Track.set_probs = original  # type: ignore[method-assign]
        progress.close()
    return records


def replay(records: list[Record], config: FilterConfig) -> list[dict[int, int | None]]:
    """The labels the reported tracks would show with another filter setting: the same
    readings, fed to the same LabelFilter as the tracks feed theirs."""
    filters: dict[int, LabelFilter] = {}
    out = []
    for rec in records:
        for tid, probs in rec.updates:
            f = filters.setdefault(tid, LabelFilter(config))
            f.update(probs, rec.t)
        out.append({tid: filters[tid].index for tid, *_ in rec.reported})
    return out


def replay_dwell(records: list[Record], min_dwell: float = 1.0,
                 hysteresis: float = 0.1) -> list[dict[int, int | None]]:
    """The previous shown label, for comparison: the smoothed top class after a dwell time
    and a margin, the first reading taken at once."""
    state: dict[int, list] = {}
    out = []
    for rec in records:
        now = {}
        for tid, _box, _raw, smoothed, _shown in rec.reported:
            index, candidate, since = state.get(tid, [None, None, None])
            top = int(np.argmax(smoothed))
            if index is None or top == index:
                index, candidate, since = (top if index is None else index), None, None
            else:
                if top != candidate:
                    candidate, since = top, rec.t
                if rec.t - since >= min_dwell - 1e-9 and \
                        smoothed[top] - smoothed[index] >= hysteresis - 1e-9:
                    index, candidate, since = top, None, None
            state[tid] = [index, candidate, since]
            now[tid] = index
        out.append(now)
    return out


# --- scoring -------------------------------------------------------------------------------

def _on_face(rec: Record, box: Box | None) -> tuple | None:
    """The reported face on the true face's box (the best overlap), or None."""
    if box is None:
        return None
    best = max(rec.reported, key=lambda r: r[1].iou(box), default=None)
    return best if best is not None and best[1].iou(box) > 0.3 else None


def score(clip: Clip, records: list[Record], step: int,
          shown: list[dict[int, int | None]] | None = None) -> dict:
    """The figures of one run (``shown``: labels replayed with another filter)."""
    fps = clip.fps / step
    idx = list(range(0, len(clip.truth), step))
    truth = [clip.truth[i] for i in idx]
    boxes = [clip.boxes[i] for i in idx]
    raw, smooth, label, track = [], [], [], []
    for k, rec in enumerate(records):
        hit = _on_face(rec, boxes[k])
        if hit is None:
            raw.append(None), smooth.append(None), label.append(None), track.append(None)
            continue
        tid = hit[0]
        raw.append(int(np.argmax(hit[2])))
        smooth.append(int(np.argmax(hit[3])))
        label.append(hit[4] if shown is None else shown[k][tid])
        track.append(tid)
    face_frames = [k for k, e in enumerate(truth) if e is not None]

    def agree(series: list) -> float:
        return round(100 * sum(series[k] == truth[k] for k in face_frames) / len(face_frames), 1)

    # segments in frames of this run
    segs = []
    for s in clip.segments:
        ks = [k for k, i in enumerate(idx) if s.start <= i / clip.fps < s.end]
        if ks:
            segs.append((s, ks))
    latencies, changes_shown, changes_raw, seg_minutes = [], 0, 0, 0.0
    for j, (s, ks) in enumerate(segs):
        if s.emotion is None:
            continue
        seg_minutes += len(ks) / fps / 60
        reached = next((n for n, k in enumerate(ks) if label[k] == s.emotion), None)
        prev = segs[j - 1][0] if j else None
        model_reads_it = sum(raw[k] == s.emotion for k in ks) * 2 > len(ks)
        if prev is not None and prev.emotion is not None and prev.emotion != s.emotion \
                and model_reads_it:
            latencies.append((len(ks) if reached is None else reached) / fps)
        if reached is not None:  # (frames where the face is not reported do not count)
            after = [label[k] for k in ks[reached:] if label[k] is not None]
            changes_shown += sum(a != b for a, b in zip(after, after[1:]))
        rr = [raw[k] for k in ks if raw[k] is not None]
        changes_raw += sum(a != b for a, b in zip(rr, rr[1:]))
    # the summary over every reported track, as detect writes it
    timeline = Timeline(max_gap=1.0)
    for k, rec in enumerate(records):
        labels = {}
        for tid, _box, _raw, _sm, sh in rec.reported:
            lab = sh if shown is None else shown[k][tid]
            labels[tid] = None if lab is None else EMOTIONS[lab]
        timeline.add_frame(rec.t, labels)
    summary = timeline.summary()["tracks"]
    time_by = dict.fromkeys(EMOTIONS, 0.0)
    for tr in summary.values():
        labelled = tr["duration"] - tr["reading"]
        for e in EMOTIONS:
            time_by[e] += tr["shares"][e] * labelled
    total = sum(time_by.values()) or 1.0
    true_counts = np.bincount([e for e in truth if e is not None], minlength=len(EMOTIONS))
    true_share = true_counts / true_counts.sum()
    share_error = max(abs(time_by[e] / total - true_share[i]) for i, e in enumerate(EMOTIONS))
    raw_counts = np.bincount([raw[k] for k in face_frames if raw[k] is not None],
                             minlength=len(EMOTIONS))
    raw_error = float(np.max(np.abs(raw_counts / max(raw_counts.sum(), 1) - true_share)))
    # false tracks: reported tracks mostly off the true face
    on, off = {}, {}
    for k, rec in enumerate(records):
        for tid, box, *_ in rec.reported:
            good = boxes[k] is not None and box.iou(boxes[k]) > 0.3
            (on if good else off)[tid] = (on if good else off).get(tid, 0) + 1
    false_tracks = sum(off.get(t, 0) > on.get(t, 0) for t in set(on) | set(off))
    return {
        "frames": len(records), "fps": fps, "face_frames": len(face_frames),
        "face_reported_pct": round(100 * sum(raw[k] is not None for k in face_frames)
                                   / len(face_frames), 1),
        "agree_raw_pct": agree(raw), "agree_smoothed_pct": agree(smooth),
        "agree_shown_pct": agree(label),
        "switches": len(latencies),
        "median_latency_s": round(statistics.median(latencies), 2) if latencies else None,
        "changes_per_min_shown": round(changes_shown / seg_minutes, 2) if seg_minutes else None,
        "changes_per_min_raw": round(changes_raw / seg_minutes, 2) if seg_minutes else None,
        "summary_error_pts": round(100 * share_error, 1),
        "raw_share_error_pts": round(100 * raw_error, 1),
        "tracks_reported": len(set(on) | set(off)), "false_tracks": false_tracks}


# --- the command ---------------------------------------------------------------------------

def _mix(**kw: float) -> np.ndarray:
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return np.array([kw.get(e, rest) for e in EMOTIONS])


def ambivalent_changes(config: FilterConfig) -> float:
    """Label changes a minute for a face between two expressions: readings whose top two
    classes (0.45 and 0.40) trade places every 0.5 s or every 1 s, read at 10 or at 2
    frames a second (the worst of the four). The eye sees one steady face; the label must
    not flip with the readings."""
    a, b = _mix(happy=0.45, neutral=0.40), _mix(happy=0.40, neutral=0.45)
    worst = 0.0
    for fps, period in ((10, 0.5), (10, 1.0), (2, 0.5), (2, 1.0)):
        f = LabelFilter(config)
        labels = [f.update(a if int(i / fps / period) % 2 == 0 else b, i / fps)
                  for i in range(60 * fps)]
        shown = [x for x in labels if x is not None]
        worst = max(worst, float(sum(x != y for x, y in zip(shown, shown[1:]))))
    return worst


def tune(clip: Clip, runs: list[tuple[str, int, list[Record]]]) -> tuple[FilterConfig, list[dict]]:
    """The label filter's settings over a grid, each replayed on every run (frame rate):
    among the settings whose median latency is at most 0.8 s and that change the label at
    most 4 times a minute inside segments at every frame rate and for an ambivalent face
    (:func:`ambivalent_changes`), those within 0.1 point of the best mean shown-label
    agreement, and of these the one that changes the label least."""
    grid = itertools.product((0.2, 0.35, 0.5, 0.65, 0.8, 0.9),
                             (4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0),
                             (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.2, 0.3, 0.5))
    rows = []
    for stay, evidence, margin, min_evidence in grid:
        config = FilterConfig(stay=stay, evidence=evidence, margin=margin,
                              min_evidence=min_evidence)
        if ambivalent_changes(config) > 4:
            continue
        by_run = {name: score(clip, records, step, replay(records, config))
                  for name, step, records in runs}
        ok = all(r["median_latency_s"] is not None and r["median_latency_s"] <= 0.8
                 and r["changes_per_min_shown"] <= 4 for r in by_run.values())
        mean = statistics.fmean(r["agree_shown_pct"] for r in by_run.values())
        rows.append({"config": asdict(config), "ok": ok, "mean_agree_pct": round(mean, 2),
                     "runs": by_run})
    ok = [r for r in rows if r["ok"]] or rows
    top = max(r["mean_agree_pct"] for r in ok)
    near = [r for r in ok if r["mean_agree_pct"] >= top - 0.1 - 1e-9]  # as good: steadiest
    best = min(near, key=lambda r: (statistics.fmean(
        x["changes_per_min_shown"] for x in r["runs"].values()), -r["mean_agree_pct"]))
    return FilterConfig(**best["config"]), rows


def table(rows: list[tuple[str, dict]]) -> str:
    head = ("| run | frames/s | face reported | raw top class | smoothed | shown label | "
            "median switch latency | shown changes/min in segments (raw) | summary error "
            "(raw) | false tracks |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for name, r in rows:
        lat = "-" if r["median_latency_s"] is None else f"{r['median_latency_s']:.2f} s"
        lines.append(
            f"| {name} | {r['fps']:g} | {r['face_reported_pct']}% | {r['agree_raw_pct']}% | "
            f"{r['agree_smoothed_pct']}% | **{r['agree_shown_pct']}%** | {lat} | "
            f"{r['changes_per_min_shown']} ({r['changes_per_min_raw']}) | "
            f"{r['summary_error_pts']} ({r['raw_share_error_pts']}) pts | {r['false_tracks']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=sorted(SPLITS), default=None,
                   help="faces of FER2013 test (PrivateTest) or val (PublicTest); default: "
                        "test, and val with --tune")
    p.add_argument("--seconds", type=float, default=300.0, help="clip length (default 300)")
    p.add_argument("--fps", type=float, default=10.0, help="frames a second (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-votes", type=int, default=6,
                   help="a face's FER+ majority needs this many of 10 votes (default 6)")
    p.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--detector", choices=("haar", "blazeface"), default=DetectorConfig().kind,
                   help=f"the face detector (default {DetectorConfig().kind}, detect's default)")
    p.add_argument("--tune", action="store_true",
                   help="replay the label filter over a grid of settings and print the best")
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)
    split = args.split or ("val" if args.tune else "test")
    began = time.monotonic()
    clip = make_clip(split, args.seconds, args.fps, args.seed, args.min_votes)
    print(f"{SPLITS[split]} faces (FER+ majority of >= {args.min_votes} votes), "
          f"{len(clip.frames)} frames of {args.seconds:g} s at {args.fps:g} frames/s, "
          f"{sum(s.emotion is not None for s in clip.segments)} segments, seed {args.seed}")
    out: dict = {"split": SPLITS[split], "seconds": args.seconds, "seed": args.seed,
                 "filter": asdict(FilterConfig()), "runs": {}}
    slow = max(1, round(args.fps / 2))
    steps = [("every frame", 1)] + ([("2 frames/s", slow)] if slow > 1 else [])
    rows, runs = [], []
    for name, step in steps:
        records = run_pipeline(clip, step, args.model, name, args.detector)
        runs.append((name, step, records))
        live = score(clip, records, step)
        if score(clip, records, step, replay(records, FilterConfig())) != live:
            print("the replay differs from the pipeline's own labels", file=sys.stderr)
            return 1  # (the replay must be the tracks' own filter, exactly)
        previous = score(clip, records, step, replay_dwell(records))
        rows += [(f"label filter, {name}", live), (f"previous dwell label, {name}", previous)]
        out["runs"][name] = {"filter": live, "previous": previous}
    if args.tune:
        best, grid = tune(clip, runs)
        out["tuned"], out["grid"] = asdict(best), grid
        for name, step, records in runs:
            rows.append((f"tuned, {name}", score(clip, records, step, replay(records, best))))
        print(f"best on {SPLITS[split]}: {asdict(best)}")
    print(table(rows))
    print(f"({time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
