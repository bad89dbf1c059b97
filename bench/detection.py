"""What the Haar face detector finds, and what it costs, in frames like the learner page sends.

    python bench/detection.py                       # 1000 faces, 320x240 frames
    python bench/detection.py --scan-face-px 36,48 --limit 2000 --json reports/detection.json

FER2013 test faces (48x48, enlarged to 60..170 px) are pasted at random places in 320x240
frames (a grey gradient with sensor noise, JPEG quality 70, like bench/load.py's frames), one
face a frame, seeded. Prints, on one OpenCV thread (as the server runs it):

1. whole-frame scans (``HaarDetector.detect``) for each ``--scan-face-px`` (how wide the
   smallest face, ``min_face``, is seen; 48 or more = the frame as it is, which was the rule
   before 0.9): faces found, false ones, and CPU a scan; also the default on two threads;
2. the local search that follows a found face (``detect_near``) for each
   ``--near-size-change`` (sizes tried, from 1/g to g times the last; 1.4 before 0.9) and
   each ``--near-margins`` (the regions searched in turn: the last box grown by that much
   of its size on each side; 0.5 alone is the runtime's), on
   the next frame with the face moved up to 8 px and resized up to 10%: faces kept, false
   keeps (the face replaced by itself upside down, or by its 12-px blocks shuffled), and
   CPU a search;
3. what making a detector costs: parsing the cascade file, which happens once a process
   (and once more for each further scan at the same moment: ``faces._CascadePool``), and a
   new detector in a new thread, which shares the parsed copies;
4. tilted heads: the same frames turned about the face's centre by each of ``--tilts``
   degrees (half one way, half the other), scanned without the turned scans (``tilt`` 0)
   and with them (the default, 20 degrees): faces found, false ones, CPU a scan, and the
   emotion model's accuracy (the web app's single-pass model, FER2013 labels) on the faces
   found with them, the crop turned upright (as the runtime does) and cut unturned; then
   frames with nobody in them (the background with a few grey rectangles), where every
   scan is followed by the turned ones: false faces and CPU a scan;
5. (``--compare`` only) Haar and BlazeFace on the same frames: turned, rolled, small, dim
   and several faces, with a lamp, an emblem and a hand in every frame (see
   bench/detector_compare.py); ``--blazeface-fit`` measures BlazeFace's box against the
   face square.

FER2013 faces are cropped tightly (no hair, ears or background), so the detector misses more
of them than of webcam faces; the figures compare settings, they are not a webcam's rate.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from multinet_emotion.progress import bar
from multinet_emotion.runtime.faces import SCAN_FACE_PX, Box, DetectorConfig, HaarDetector

ROOT = Path(__file__).resolve().parents[1]
FER_TEST = ROOT.parent / "shared" / "data" / "fer2013" / "test"
W, H = 320, 240


def background(rng: np.random.Generator) -> np.ndarray:
    """A grey 320x240 scene: a gradient of random ends with sensor noise."""
    lo, hi = rng.integers(30, 120), rng.integers(130, 220)
    bg = np.tile(np.linspace(lo, hi, W, dtype=np.float32), (H, 1))
    return np.clip(bg + rng.normal(0, 6, (H, W)), 0, 255).astype(np.uint8)


def frame_with(face: np.ndarray, x: int, y: int, side: int, seed: int) -> tuple[np.ndarray, Box]:
    """A grey 320x240 JPEG-decoded frame with ``face`` pasted at (x, y), ``side`` px."""
    bg = background(np.random.default_rng(seed))
    x, y = min(max(x, 0), W - side), min(max(y, 0), H - side)
    bg[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", bg, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), Box(x, y, side, side)


#: The runtime's region (HaarDetector.detect_near's default margin).
NEAR_MARGINS = (0.5,)


def near_in_turn(det: HaarDetector, frame: np.ndarray, box: Box,
                 margins: tuple[float, ...]) -> Box | None:
    """detect_near on each region in turn (margins around the last box) until one holds it."""
    for m in margins:
        found = det.detect_near(frame, box, m)
        if found is not None:
            return found
    return None


def _margins(margins: tuple[float, ...]) -> str:
    return " then ".join(f"+{m:g}" for m in margins)


def cpu_ms(fn) -> tuple[object, float]:
    t = time.process_time()
    out = fn()
    return out, (time.process_time() - t) * 1000


def scans(frames: list[tuple[np.ndarray, Box]], detector: HaarDetector, desc: str) -> dict:
    found, false, times, hits = 0, 0, [], []
    progress = bar(len(frames), desc=desc, unit="frame")
    for img, truth in frames:
        boxes, ms = cpu_ms(lambda img=img: detector.detect(img))
        times.append(ms)
        hit = any(b.iou(truth) > 0.3 for b in boxes)
        found += hit
        hits.append(hit)
        false += sum(b.iou(truth) <= 0.3 for b in boxes)
        progress.update(1)
    progress.close()
    return {"found_pct": round(100 * found / len(frames), 1), "false_faces": false,
            "cpu_ms_median": round(statistics.median(times), 2),
            "cpu_ms_mean": round(statistics.fmean(times), 2), "_hits": hits}


def tilted_heads(frames: list[tuple[np.ndarray, Box]], labels: list[str],
                 tilts: list[float], seed: int) -> dict:
    """Section 4: the frames turned by each tilt, scanned with and without turned scans."""
    from multinet_emotion.runtime.classifier import default_model_path, load_model
    from multinet_emotion.runtime.faces import crop_faces
    from multinet_emotion.runtime.onnx_graph import single_pass_model

    model = load_model(single_pass_model(default_model_path()))
    emotions = list(model.info.labels)
    upright_only, turning = HaarDetector(DetectorConfig(tilt=0)), HaarDetector()
    out: dict = {"turns_deg": DetectorConfig().tilt, "by_tilt": {}}
    print(f"4. tilted heads: frames turned about the face's centre; scans without turned ones "
          f"(tilt 0) and with them (+-{out['turns_deg']:g} deg, the default); accuracy of "
          "the single-pass model (FER2013 labels) on the faces found with them")
    for tilt in tilts:
        turned = []
        for i, (img, truth) in enumerate(frames):
            a = tilt if i % 2 else -tilt
            m = cv2.getRotationMatrix2D(truth.center, a, 1.0)
            turned.append((cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REPLICATE), truth))
        row: dict = {}
        hits_by = {}
        for name, det in (("upright_only", upright_only), ("turning", turning)):
            r = scans(turned, det, f"tilt {tilt:g}, {name.replace('_', ' ')}")
            hits_by[name] = r.pop("_hits")
            row[name] = r
        # the model on the faces found, crop turned upright by the box's angle or not
        right = {"turned_crop": 0, "unturned_crop": 0}
        both = 0
        for (img, truth), label, hit in zip(turned, labels, hits_by["turning"]):
            if not (hit and label in emotions):
                continue
            box = next(b for b in turning.detect(img) if b.iou(truth) > 0.3)
            crops = [crop_faces(img, [box], model.input_size, model.crop_scale),
                     crop_faces(img, [Box(box.x, box.y, box.w, box.h)], model.input_size,
                                model.crop_scale)]
            picks = [emotions[int(model.predict(c)[0].argmax())] for c in crops]
            right["turned_crop"] += picks[0] == label
            right["unturned_crop"] += picks[1] == label
            both += 1
        row["classified"] = both
        row["accuracy_turned_crop"] = round(right["turned_crop"] / both, 4) if both else None
        row["accuracy_unturned_crop"] = round(right["unturned_crop"] / both, 4) if both else None
        out["by_tilt"][f"{tilt:g}"] = row
        a, b = row["upright_only"], row["turning"]
        acc = (f"accuracy on the {both} found: crop turned upright {row['accuracy_turned_crop']:.3f}"
               f", unturned {row['accuracy_unturned_crop']:.3f}" if both else "none found")
        print(f"   tilt {tilt:4g} deg: found {a['found_pct']:5.1f}% -> {b['found_pct']:5.1f}% with "
              f"the turned scans; false {a['false_faces']} -> {b['false_faces']}; CPU "
              f"{a['cpu_ms_median']:.1f} -> {b['cpu_ms_median']:.1f} ms a scan (median); {acc}")
    rng = np.random.default_rng(seed)
    empty = []
    for _ in range(max(50, len(frames) // 4)):
        bg = background(rng)
        for _ in range(6):  # some straight edges and flat patches, like a room
            p1, p2 = rng.integers(0, W, 2), rng.integers(0, H, 2)
            cv2.rectangle(bg, (int(p1[0]), int(p2[0])), (int(p1[1]), int(p2[1])),
                          int(rng.integers(0, 256)), -1)
        ok, buf = cv2.imencode(".jpg", bg, [cv2.IMWRITE_JPEG_QUALITY, 70])
        empty.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    nobody = {}
    for name, det in (("upright_only", upright_only), ("turning", turning)):
        false, times = 0, []
        for img in empty:
            boxes, ms = cpu_ms(lambda img=img, d=det: d.detect(img))
            false += len(boxes)
            times.append(ms)
        nobody[name] = {"false_faces": false, "cpu_ms_median": round(statistics.median(times), 2)}
    out["nobody"] = dict(nobody, frames=len(empty))
    print(f"   {len(empty)} frames with nobody: false faces {nobody['upright_only']['false_faces']}"
          f" -> {nobody['turning']['false_faces']}; CPU {nobody['upright_only']['cpu_ms_median']:.1f}"
          f" -> {nobody['turning']['cpu_ms_median']:.1f} ms a scan (median)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=FER_TEST, help="FER2013 test folder")
    p.add_argument("--limit", type=int, default=1000, help="faces (one frame each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scan-face-px", default=f"{SCAN_FACE_PX},48",
                   help=f"comma-separated widths to compare (default {SCAN_FACE_PX},48)")
    p.add_argument("--near-size-change", default="1.25,1.4",
                   help="comma-separated local-search size ranges to compare (default "
                        "1.25,1.4: 1.4 was the range before 0.9)")
    p.add_argument("--near-margins", default="0.5,0.2+0.5",
                   help="comma-separated local-search regions to compare, each the margins "
                        "tried in turn joined by + (default 0.5,0.2+0.5: the default region, "
                        "and a tight one first)")
    p.add_argument("--tilts", default="0,15,25,35",
                   help="comma-separated head tilts for section 4, degrees (default 0,15,25,35)")
    p.add_argument("--compare", action="store_true",
                   help="section 5 only: Haar and BlazeFace on the same frames "
                        "(bench/detector_compare.py says how they are made)")
    p.add_argument("--per", type=int, default=150,
                   help="--compare: frames per condition (default 150)")
    p.add_argument("--blazeface-score", type=float, default=None,
                   help="--compare: BlazeFace's score threshold (default: the runtime's, "
                        f"{DetectorConfig().blazeface_score})")
    p.add_argument("--blazeface-fit", action="store_true",
                   help="only: BlazeFace's box against the face square on FER2013 training "
                        "faces (blazeface.FIT)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.compare or args.blazeface_fit:
        return compare_detectors(args)
    try:
        widths = [int(v) for v in args.scan_face_px.split(",") if v.strip()]
    except ValueError:
        p.error(f"--scan-face-px: comma-separated whole numbers, got {args.scan_face_px!r}")
    if not widths or min(widths) < 24:
        p.error("--scan-face-px: widths of at least 24 (the cascade's window)")
    try:
        ranges = [float(v) for v in args.near_size_change.split(",") if v.strip()]
    except ValueError:
        p.error(f"--near-size-change: comma-separated numbers, got {args.near_size_change!r}")
    if not ranges or min(ranges) <= 1:
        p.error("--near-size-change: numbers above 1")
    try:
        margin_sets = [tuple(float(m) for m in v.split("+")) for v in args.near_margins.split(",")
                       if v.strip()]
    except ValueError:
        p.error(f"--near-margins: margins joined by + and separated by commas, got "
                f"{args.near_margins!r}")
    if not margin_sets or min(min(m) for m in margin_sets) <= 0:
        p.error("--near-margins: margins above 0")
    try:
        tilts = [float(v) for v in args.tilts.split(",") if v.strip()]
    except ValueError:
        p.error(f"--tilts: comma-separated numbers of degrees, got {args.tilts!r}")
    if not tilts or max(abs(t) for t in tilts) > 90:
        p.error("--tilts: degrees between -90 and 90")
    paths = sorted(args.data.glob("*/*.jpg")) if args.data.is_dir() else []
    if not paths:
        print(f"no FER2013 test images under {args.data} (expected CLASS/NAME.jpg)",
              file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    rng.shuffle(paths)
    paths = paths[:args.limit]
    frames, moved, labels = [], [], []
    for i, path in enumerate(paths):
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        labels.append(path.parent.name)
        side = rng.randint(60, 170)
        x, y = rng.randint(0, W - side), rng.randint(0, H - side)
        frames.append(frame_with(face, x, y, side, args.seed * 1_000_003 + i))
        # the next frame, for the local search: moved and resized a little
        side2 = max(50, round(side * (1 + rng.uniform(-0.1, 0.1))))
        x2, y2 = x + rng.randint(-8, 8), y + rng.randint(-8, 8)
        moved.append((face, x2, y2, side2, args.seed * 1_000_003 + i + 500_000))
    cv2.setNumThreads(1)
    out: dict = {"faces": len(frames), "frame": f"{W}x{H}", "min_face": DetectorConfig().min_face,
                 "scans": {}}
    print(f"{len(frames)} FER2013 test faces of 60..170 px, one per {W}x{H} frame (JPEG 70); "
          f"min_face {out['min_face']} px; CPU on one OpenCV thread unless said")
    print("1. whole-frame scans")
    base_hits = None
    for px in widths:
        det = HaarDetector(DetectorConfig(scan_face_px=px))
        r = scans(frames, det, f"scan at {px} px")
        hits = r.pop("_hits")
        if base_hits is None:
            base_hits = hits
        r["lost_vs_first"] = sum(a and not b for a, b in zip(base_hits, hits))
        r["gained_vs_first"] = sum(b and not a for a, b in zip(base_hits, hits))
        scale = min(1.0, px / out["min_face"])
        out["scans"][str(px)] = r
        print(f"   smallest face seen at {px:3d} px (frame scanned at {round(W * scale)} px "
              f"wide): found {r['found_pct']:5.1f}%, {r['false_faces']} false, CPU "
              f"{r['cpu_ms_median']:.1f} ms a scan (median; mean {r['cpu_ms_mean']:.1f}); vs "
              f"the first: {r['lost_vs_first']} lost, {r['gained_vs_first']} gained")
    cv2.setNumThreads(2)
    r2 = scans(frames[: max(1, len(frames) // 4)], HaarDetector(), "two threads")
    cv2.setNumThreads(1)
    r1 = scans(frames[: max(1, len(frames) // 4)], HaarDetector(), "one thread")
    out["two_threads"] = {"cpu_ms_median": r2["cpu_ms_median"],
                          "one_thread_cpu_ms_median": r1["cpu_ms_median"]}
    print(f"   the default on two OpenCV threads: CPU {r2['cpu_ms_median']:.1f} ms a scan "
          f"(one thread, same {len(frames) // 4} frames: {r1['cpu_ms_median']:.1f} ms)")

    print("2. local search (detect_near) on the next frame, face moved <= 8 px, resized <= 10%")
    det = HaarDetector()
    starts = []  # (the face found in the first frame, the next frame, the negatives)
    for (img, truth), (face, x2, y2, side2, seed) in zip(frames, moved):
        start = [b for b in det.detect(img) if b.iou(truth) > 0.3]
        if not start:
            continue
        nxt, truth2 = frame_with(face, x2, y2, side2, seed)
        blocks = [face[r:r + 12, c:c + 12] for r in range(0, 48, 12) for c in range(0, 48, 12)]
        order = np.random.default_rng(seed).permutation(16)
        shuffled = np.vstack([np.hstack([blocks[order[r * 4 + c]] for c in range(4)])
                              for r in range(4)])
        negatives = [frame_with(neg, x2, y2, side2, seed)[0] for neg in (face[::-1], shuffled)]
        starts.append((start[0], nxt, truth2, negatives))
    out["local_search"] = {}
    settings = [(f"sizes 1/{g:g}..{g:g} x the last, regions {_margins(NEAR_MARGINS)}", g,
                 NEAR_MARGINS) for g in ranges]
    grow0 = DetectorConfig().near_size_change
    settings += [(f"sizes 1/{grow0:g}..{grow0:g} x the last, regions {_margins(m)}", grow0, m)
                 for m in margin_sets if m != NEAR_MARGINS]
    for label, grow, margins in settings:
        det = HaarDetector(DetectorConfig(near_size_change=grow))
        kept, false_keeps, n_neg, times = 0, 0, 0, []
        progress = bar(len(starts), desc=label.split(",")[-1].strip(), unit="face")
        for box0, nxt, truth2, negatives in starts:
            box, ms = cpu_ms(lambda nxt=nxt, b=box0, d=det, m=margins: near_in_turn(d, nxt, b, m))
            times.append(ms)
            kept += box is not None and box.iou(truth2) > 0.3
            for img_neg in negatives:
                false_keeps += near_in_turn(det, img_neg, box0, margins) is not None
                n_neg += 1
            progress.update(1)
        progress.close()
        if not starts:
            break
        ls = out["local_search"][f"{grow:g} {_margins(margins)}"] = {
            "tracked": len(starts), "kept_pct": round(100 * kept / len(starts), 1),
            "false_keep_pct": round(100 * false_keeps / n_neg, 1),
            "cpu_ms_median": round(statistics.median(times), 2),
            "cpu_ms_mean": round(statistics.fmean(times), 2)}
        print(f"   {label}: of {len(starts)} faces found, kept {ls['kept_pct']:.1f}%, CPU "
              f"{ls['cpu_ms_median']:.1f} ms a search (median; mean {ls['cpu_ms_mean']:.1f}); "
              f"false keeps {ls['false_keep_pct']:.1f}% of {n_neg}")

    print("3. making a detector")
    import threading

    from multinet_emotion.runtime.faces import _CascadePool

    path = HaarDetector().cascades.path
    parses = [cpu_ms(lambda: _CascadePool(path).ensure(1))[1] for _ in range(5)]

    def in_new_thread(result: list) -> None:
        result.append(cpu_ms(HaarDetector)[1])

    news: list[float] = []
    for _ in range(5):
        t = threading.Thread(target=in_new_thread, args=(news,))
        t.start()
        t.join()
    out["detector_start_ms"] = {"parse_cascade": round(statistics.median(parses), 2),
                                "new_detector_new_thread": round(statistics.median(news), 3)}
    print(f"   parsing the cascade file {out['detector_start_ms']['parse_cascade']:.1f} ms CPU "
          "(once a process, and once more for each further scan at the same moment); a new "
          f"detector, in a new thread, {out['detector_start_ms']['new_detector_new_thread']:.2f}"
          " ms (it shares the parsed copies)")
    out["tilted"] = tilted_heads(frames, labels, tilts, args.seed)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def compare_detectors(args: argparse.Namespace) -> int:
    """--compare and --blazeface-fit (bench/detector_compare.py)."""
    import detector_compare

    detector_compare.SCORE = args.blazeface_score

    if args.blazeface_fit:
        train = sorted((args.data.parent / "train").glob("*/*.jpg"))
        random.Random(args.seed).shuffle(train)
        out = {"fit": detector_compare.fit(train[:args.limit], args.seed)}
    else:
        paths = sorted(p for p in args.data.glob("*/PrivateTest_*.jpg"))
        random.Random(args.seed).shuffle(paths)
        if not paths:
            print(f"no FER2013 PrivateTest images under {args.data}", file=sys.stderr)
            return 2
        faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
        out = detector_compare.compare(faces, [p.parent.name for p in paths], args.per,
                                       args.seed)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
