"""In-browser analysis in headless Chromium: start-up, per-face latency, frames/s, memory.

    nice -n 10 python bench/browser.py                 # before/after, 3 cold starts each
    python bench/browser.py --starts 5 --frames 100 --model path/to/model.onnx
    python bench/browser.py --variant threads=1,arena=0,isolated=0 --variant threads=2

Serves the app (``--analysis browser``, a temporary SQLite store) on loopback, opens the
learner page in Debian's Chromium (/usr/bin/chromium, Playwright), once per VARIANT of the
page's settings, each in its own browser context, and prints for each (and its ratio to the
first, measured in the same run, frame images taken in turns so that the load of the machine
falls on all alike):
1. start-up, each time in a fresh browser context (empty cache): the model download (with
   the scripts, in parallel), the time until the model session exists, and until the first
   inference is done (ready);
2. latency of ``analyse`` (static/analysis.js) on a frame with one face, 320x240 as the
   learner page analyses a camera's picture (``--width 640``: 640x480), FER2013 test faces
   from ../shared/data, a drawing when absent: per face (crop + model), the frame's face
   detection, the total, and the frames/s one page reaches analysing back to back; and the
   detection of a face followed from frame to frame as the learner page does it
   (``BrowserAnalysis.follower``: a local search between whole-frame scans);
3. the WebAssembly threads onnxruntime-web runs, whether the page is cross-origin isolated,
   and the cores the browser reports;
4. the page's memory (last variant): JS heap (CDP Performance.getMetrics), the opencv.js
   heap and the renderer processes' resident memory;
5. the largest probability difference from the Python runtime on the same frames.

A VARIANT is comma-separated KEY=VALUE: ``threads=N`` (at most N WebAssembly threads; the
page's own choice, 1, without it; at most 4 and the cores), ``arena=1`` (onnxruntime-web's
CPU memory arena and memory pattern on; the page leaves them off), ``mode=parallel``
(execution mode), ``batch=N`` (the model's batch dimension fixed at N), ``isolated=0``
(the learner page without its cross-origin isolation headers, as before they were sent:
one thread), ``detector=haar`` or ``detector=blazeface`` (the face detector the page runs;
the server's otherwise). ``default``: the page as served; ``before``: threads=1,isolated=0.
Default variants: ``detector=haar`` and ``default`` (BlazeFace).
Needs scripts/setup_web.sh. Target: per-face latency <= 60 ms.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from multinet_emotion.app import Settings, create_app
from multinet_emotion.app.browser import BROWSER_DETECTORS
from multinet_emotion.runtime.classifier import load_model, model_file
from multinet_emotion.runtime.faces import DetectorConfig, crop_faces, make_detector

CHROMIUM = "/usr/bin/chromium"
FER_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "test"
LOAD = """async ([detector, options]) => {
    const info = await (await fetch("/api/analysis")).json();
    const cfg = detector ? Object.assign({}, info.browser, {detector}) : info.browser;
    window.benchAnalyser = await BrowserAnalysis.load(cfg, options);
    return Object.assign({}, window.benchAnalyser.timings, window.benchAnalyser.runtime);
}"""
ANALYSE = """async ([w, h, b64, n]) => {
    const bytes = Uint8ClampedArray.from(atob(b64), c => c.charCodeAt(0));
    const image = new ImageData(bytes, w, h);
    const a = window.benchAnalyser;
    const runs = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) runs.push(await a.analyse(image));
    const wall = performance.now() - t0;
    // as the learner page runs: followed from frame to frame, a whole-frame scan first,
    // then local searches (until the next scan, cfg.detect_every frames on)
    const follower = BrowserAnalysis.follower(a);
    const followed = [];
    for (let i = 0; i < n; i++) followed.push((await a.analyse(image, 1, follower)).ms.detect);
    return {wall, runs, followed: followed.slice(1)};
}"""
MEMORY = """() => {
    const ort = window.ort, cv = window.cv;
    return {cv: cv && cv.HEAP8 ? cv.HEAP8.byteLength : null,
            heap: performance.memory ? performance.memory.usedJSHeapSize : null};
}"""


def frames(width: int = 320) -> list[np.ndarray]:
    """Grey 4:3 frames ``width`` pixels wide with one face each (drawn on 640x480, then
    scaled as the learner page scales the camera's picture)."""
    faces = []
    for label in ("angry", "happy", "neutral", "sad", "surprise", "fear"):
        faces += [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                  for p in sorted((FER_TEST / label).glob("*.jpg"))[:2]]
    if not faces:
        face = np.full((160, 160), 60, np.uint8)
        cv2.ellipse(face, (80, 83), (58, 74), 0, 0, 360, 200, -1)
        for ex in (54, 106):
            cv2.ellipse(face, (ex, 64), (13, 7), 0, 0, 360, 30, -1)
        cv2.ellipse(face, (80, 118), (25, 9), 0, 0, 360, 60, -1)
        faces = [face]
    out = []
    for i, face in enumerate(faces):
        frame = np.tile(np.linspace(60, 180, 640).astype(np.uint8), (480, 1))
        frame[100:270, 180 + 10 * i:350 + 10 * i] = cv2.resize(face, (170, 170),
                                                               interpolation=cv2.INTER_CUBIC)
        if width != 640:
            frame = cv2.resize(frame, (width, width * 3 // 4), interpolation=cv2.INTER_AREA)
        out.append(frame)
    return out


def rgba_b64(frame: np.ndarray) -> str:
    return base64.b64encode(np.dstack([frame] * 3 + [np.full_like(frame, 255)]).tobytes()).decode()


def renderer_rss_mb(pid: int) -> float:
    """Resident memory of the browser's renderer processes (children of ``pid``), MB."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            cmd = (proc / "cmdline").read_bytes()
            if b"--type=renderer" not in cmd:
                continue
            status = (proc / "status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def serve(tmp: Path, model: Path | None, mirror_pass: bool = False):  # noqa: ANN201
    """(server, thread, url, the model file the page runs)."""
    import uvicorn
    app = create_app(Settings(database_url=f"sqlite:///{tmp / 'bench.db'}",
                              instructor_token="bench-instructor-token", analysis="browser",
                              model=model, mirror_pass=mirror_pass), rng=random.Random(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}", app.state.context.browser_model_path


def parse_variant(spec: str) -> tuple[str, dict, bool]:
    """``threads=2,arena=0`` -> (name, options for BrowserAnalysis.load, isolated); the
    options' ``detector`` is the face detector the page runs (None: the server's)."""
    if spec in ("default", ""):
        return "default", {"detector": None}, True
    if spec == "before":
        spec = "threads=1,isolated=0"
    options: dict = {"detector": None}
    isolated = True
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key == "threads":
            options["threads"] = int(value)
        elif key == "arena":
            options.setdefault("session", {}).update(enableCpuMemArena=value != "0",
                                                     enableMemPattern=value != "0")
        elif key == "mode":
            options.setdefault("session", {})["executionMode"] = value
        elif key == "batch":  # the model's free batch dimension fixed: every shape known
            options.setdefault("session", {})["freeDimensionOverrides"] = {"batch": int(value)}
        elif key == "isolated":
            isolated = value != "0"
        elif key == "detector":
            if value not in BROWSER_DETECTORS:
                raise SystemExit(f"bench/browser.py: detector={value}: the page runs "
                                 f"{' or '.join(BROWSER_DETECTORS)}")
            options["detector"] = value
        else:
            raise SystemExit(f"bench/browser.py: unknown variant setting {key!r} in {spec!r}")
    return spec, options, isolated


def open_page(browser, url: str, options: dict, isolated: bool):  # noqa: ANN001, ANN201
    """A fresh context (empty cache) on the learner page, its analysis loaded with
    ``options``; without the isolation headers when not ``isolated``. (context, page,
    timings and runtime of the load)."""
    context = browser.new_context()  # the page's real CSP
    if not isolated:
        def strip(route) -> None:  # noqa: ANN001
            response = route.fetch()
            headers = {k: v for k, v in response.headers.items()
                       if not k.lower().startswith("cross-origin-")}
            route.fulfill(response=response, headers=headers)
        context.route("**/learn", strip)
    page = context.new_page()
    page.goto(url + "/learn")
    load = {k: v for k, v in options.items() if k != "detector"}
    return context, page, page.evaluate(LOAD, [options["detector"], load])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=3, help="cold starts to time per variant")
    ap.add_argument("--frames", type=int, default=40,
                    help="timed analyses per variant (spread over the frame images)")
    ap.add_argument("--model", default=None,
                    help="hybrid, student or a model .onnx (default: the page's, the student)")
    ap.add_argument("--variant", action="append", default=None, metavar="SPEC",
                    help="page settings to measure (repeat; default: before, default, "
                         "threads=2)")
    ap.add_argument("--width", type=int, default=320,
                    help="frame width (4:3): 320 as the learner page analyses (its "
                         "frame_width), 640 for a camera's full picture")
    ap.add_argument("--mirror-pass", action="store_true",
                    help="serve the model with its mirror-image pass (serve --mirror-pass; "
                         "the default is the single-pass copy the web app runs)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    variants = [parse_variant(v) for v in (args.variant or ["detector=haar", "default"])]
    model_path = model_file(args.model, "student")
    model_at_start = model_path.read_bytes()
    images = frames(args.width)
    per_image = 1 + max(1, args.frames // len(images))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        srv, thread, url, served = serve(Path(tmp), args.model, args.mirror_pass)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        starts: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
        for _ in range(args.starts):  # in turns
            for name, options, isolated in variants:
                context, _page, timings = open_page(browser, url, options, isolated)
                starts[name].append(timings)
                context.close()
        pages = {name: open_page(browser, url, options, isolated)
                 for name, options, isolated in variants}
        res = {name: {"total": [], "detect": [], "classify": [], "fps": [], "other_boxes": 0,
                      "followed": []} for name in pages}
        worst = dict.fromkeys(pages, 0.0)
        classifier = load_model(served)  # what the pages run, and their face detectors
        detectors = {name: make_detector(DetectorConfig(kind=options["detector"] or
                                                        Settings().detector))
                     for name, options, _isolated in variants}
        for frame in images:
            b64 = rgba_b64(frame)
            for name, (_context, page, _timings) in pages.items():
                boxes = detectors[name].detect(frame)
                want = classifier.predict(crop_faces(frame, boxes, classifier.input_size,
                                                     classifier.crop_scale)) if boxes else None
                got = page.evaluate(ANALYSE, [frame.shape[1], frame.shape[0], b64, per_image])
                runs = got["runs"][1:] or got["runs"]  # the first run of an image warms up
                r = res[name]
                r["total"] += [x["ms"]["total"] for x in runs]
                r["detect"] += [x["ms"]["detect"] for x in runs]
                r["classify"] += [x["ms"]["classify"] for x in runs]
                r["fps"].append(1000 * len(got["runs"]) / got["wall"])
                r["followed"] += got["followed"]
                for run in got["runs"]:  # every run: a data race would show here
                    faces = run["faces"]
                    if [b.as_list() for b in boxes] != [f["box"] for f in faces]:
                        r["other_boxes"] += 1
                    elif want is not None:
                        worst[name] = max(worst[name], float(np.abs(
                            want - np.asarray([f["probs"] for f in faces])).max()))
        last_context, last_page, _ = pages[variants[-1][0]]
        cdp = last_context.new_cdp_session(last_page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        mem = last_page.evaluate(MEMORY)
        rss = renderer_rss_mb(0)
        for context, _page, _timings in pages.values():
            context.close()
        browser.close()
        srv.should_exit = True
        thread.join(timeout=10)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    ran = Path(served) if served else model_path
    model_mb = ran.stat().st_size / 1e6
    passes = "with its mirror-image pass" if load_model(ran).info.tta_flip else "single pass"
    if model_path.read_bytes() != model_at_start:
        print(f"WARNING: {model_path} changed during the run (a model shipped meanwhile): the "
              "pages and the Python runtime may have run different models; run it again")
    print(f"in-browser analysis, headless Chromium ({CHROMIUM}), loopback; {len(images)} "
          f"frame images, {per_image - 1} timed analyses each per variant, variants in turns; "
          f"model {model_mb:.1f} MB, {passes} ({ran})")
    first = variants[0][0]
    base = med(res[first]["total"])
    for name, _options, _isolated in variants:
        r, s, rt = res[name], starts[name], pages[name][2]
        print(f"== {name}: {rt['threads']} WebAssembly thread(s), cross-origin isolated: "
              f"{'yes' if rt['isolated'] else 'no'}, cores reported: {rt['cores']}")
        if s:
            print(f"   start-up (median of {len(s)} cold starts): model + scripts downloaded "
                  f"in {med([x['download_ms'] for x in s]):.0f} ms; session ready "
                  f"{med([x['startup_ms'] for x in s]):.0f} ms; first inference done "
                  f"{med([x['ready_ms'] for x in s]):.0f} ms")
        total = med(r["total"])
        face = med(r["classify"])
        print(f"   per face, crop + model (median of {len(r['classify'])}): {face:.1f} ms, p95 "
              f"{float(np.percentile(r['classify'], 95)):.1f} ms [target <= 60 ms: "
              f"{'met' if face <= 60 else 'MISSED'}]; the frame's face detection "
              f"{med(r['detect']):.1f} ms")
        print(f"   the face followed from frame to frame (the learner page between "
              f"whole-frame scans): detection {med(r['followed']):.1f} ms a frame (median of "
              f"{len(r['followed'])})")
        print(f"   a frame with one face, detection included: {total:.1f} ms, p95 "
              f"{float(np.percentile(r['total'], 95)):.1f} ms; x{total / base:.2f} of {first}")
        print(f"   frames/s, one page analysing back to back (median): {med(r['fps']):.1f}")
        print(f"   largest probability difference from the Python runtime (every run): "
              f"{worst[name]:.5f}; runs with other boxes than Python's: {r['other_boxes']}")
    print(f"memory ({variants[-1][0]}): JS heap used {metrics.get('JSHeapUsedSize', 0) / 1e6:.1f}"
          f" MB (CDP), opencv.js heap {(mem['cv'] or 0) / 1e6:.1f} MB, renderer processes "
          f"resident {rss:.0f} MB (the {len(variants)} variant pages together)")
    print("   downloaded on a first visit (then cached): " + download_sizes(ran))


def download_sizes(model: Path) -> str:
    """What the learner page downloads, by file, and in all per face detector."""
    from multinet_emotion.app import browser
    from multinet_emotion.runtime import blazeface

    mb = {"the emotion model": model.stat().st_size / 1e6,
          "onnxruntime-web": sum((browser.VENDOR / n).stat().st_size for n in
                                 browser.VENDOR_FILES if n.startswith("ort")) / 1e6,
          "opencv.js": sum((browser.VENDOR / n).stat().st_size for n in browser.VENDOR_FILES
                           if n.startswith("opencv")) / 1e6}
    files = {blazeface.MODELS[DetectorConfig().blazeface][0],
             blazeface.MODELS[blazeface.FOLLOW][0]}  # the whole frame's and the follower's
    face = {"blazeface": sum(blazeface.model_path(f).stat().st_size for f in files) / 1e6,
            "haar": (browser.cascade_path() or Path(os.devnull)).stat().st_size / 1e6}
    return ", ".join(f"{k} {v:.1f} MB" for k, v in mb.items()) + "; " + ", ".join(
        f"with {k} {v:.2f} MB more, {sum(mb.values()) + v:.1f} MB in all"
        for k, v in face.items())


if __name__ == "__main__":
    main()
