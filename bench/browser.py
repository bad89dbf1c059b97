"""In-browser analysis in headless Chromium: start-up, per-face latency, frames/s, memory.

    nice -n 10 python bench/browser.py                 # 3 cold starts, 40 timed frames
    python bench/browser.py --starts 5 --frames 100 --model path/to/model.onnx

Serves the app (``--analysis browser``, a temporary SQLite store) on loopback, opens the
learner page in Debian's Chromium (/usr/bin/chromium, Playwright) and prints medians of:
1. start-up, each time in a fresh browser context (empty cache): the model download (with
   the scripts, in parallel), the time until the model session exists, and until the first
   inference is done (ready);
2. per-face latency of ``analyseImage`` (static/analysis.js) on a 640x480 frame with one
   face (FER2013 test faces from ../shared/data, a drawing when absent): detection, crop +
   model, total, and the frames/s one page reaches analysing back to back;
3. the page's memory: JS heap (CDP Performance.getMetrics) and the WebAssembly memories
   (opencv.js and onnxruntime-web), and the renderer processes' resident memory;
4. the largest probability difference from the Python runtime on the same frames.
Needs scripts/setup_web.sh. Target (issue 13): per-face latency <= 60 ms.
"""

from __future__ import annotations

import argparse
import base64
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from multinet_emotion.classifier import load_model
from multinet_emotion.faces import HaarDetector, crop_faces
from multinet_emotion.server import Settings, create_app

CHROMIUM = "/usr/bin/chromium"
FER_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "test"
ANALYSE = """async ([w, h, b64, n]) => {
    const bytes = Uint8ClampedArray.from(atob(b64), c => c.charCodeAt(0));
    const image = new ImageData(bytes, w, h);
    const a = await BrowserAnalysis.ready();
    const runs = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) runs.push(await a.analyse(image));
    return {wall: performance.now() - t0, runs};
}"""
MEMORY = """() => {
    const ort = window.ort, cv = window.cv;
    return {cv: cv && cv.HEAP8 ? cv.HEAP8.byteLength : null,
            heap: performance.memory ? performance.memory.usedJSHeapSize : null};
}"""


def frames() -> list[np.ndarray]:
    """640x480 grey frames with one face each."""
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


def serve(tmp: Path, model: Path | None):  # noqa: ANN201 - (server, thread, url)
    import uvicorn
    app = create_app(Settings(database_url=f"sqlite:///{tmp / 'bench.db'}",
                              instructor_token="bench-instructor-token", analysis="browser",
                              model=model), rng=random.Random(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=3, help="cold starts to time")
    ap.add_argument("--frames", type=int, default=40, help="timed analyses per frame image")
    ap.add_argument("--model", type=Path, default=None, help="model .onnx (default: shipped)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    images = frames()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        srv, thread, url = serve(Path(tmp), args.model)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        starts = []
        for _ in range(args.starts):
            context = browser.new_context()  # an empty cache: the model is downloaded
            page = context.new_page()
            page.goto(url + "/learn")
            starts.append(page.evaluate("BrowserAnalysis.ready().then(a => a.timings)"))
            context.close()
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(url + "/learn")
        page.evaluate("BrowserAnalysis.ready().then(() => true)")
        totals, detects, classifies, fps = [], [], [], []
        worst, classifier, detector = 0.0, load_model(args.model), HaarDetector()
        for frame in images:
            got = page.evaluate(ANALYSE, [640, 480, rgba_b64(frame), 1 + args.frames // len(images)])
            runs = got["runs"][1:] or got["runs"]  # the first run of an image warms up
            totals += [r["ms"]["total"] for r in runs]
            detects += [r["ms"]["detect"] for r in runs]
            classifies += [r["ms"]["classify"] for r in runs]
            fps.append(1000 * len(got["runs"]) / got["wall"])
            boxes = detector.detect(frame)
            faces = got["runs"][0]["faces"]
            if boxes and [b.as_list() for b in boxes] == [f["box"] for f in faces]:
                want = classifier.predict(crop_faces(frame, boxes, classifier.input_size,
                                                     classifier.crop_scale))
                worst = max(worst, float(np.abs(want - np.asarray([f["probs"] for f in faces]))
                                         .max()))
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        mem = page.evaluate(MEMORY)
        rss = renderer_rss_mb(0)
        context.close()
        browser.close()
        srv.should_exit = True
        thread.join(timeout=10)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    model_mb = (args.model or classifier.path).stat().st_size / 1e6
    print(f"in-browser analysis, headless Chromium ({CHROMIUM}), loopback; {len(images)} "
          f"frame images, {len(totals)} timed analyses")
    print(f"start-up (median of {len(starts)} cold starts): model {model_mb:.1f} MB + scripts "
          f"downloaded in {med([s['download_ms'] for s in starts]):.0f} ms; session ready "
          f"{med([s['startup_ms'] for s in starts]):.0f} ms; first inference done "
          f"{med([s['ready_ms'] for s in starts]):.0f} ms")
    print(f"per-face latency (median): {med(totals):.1f} ms (detect {med(detects):.1f} ms, "
          f"crop + model {med(classifies):.1f} ms; p95 "
          f"{float(np.percentile(totals, 95)):.1f} ms); target <= 60 ms")
    print(f"frames/s, one page analysing back to back (median): {med(fps):.1f}")
    print(f"memory: JS heap used {metrics.get('JSHeapUsedSize', 0) / 1e6:.1f} MB (CDP), "
          f"opencv.js heap {(mem['cv'] or 0) / 1e6:.1f} MB, renderer processes resident "
          f"{rss:.0f} MB")
    print(f"largest probability difference from the Python runtime: {worst:.5f}")


if __name__ == "__main__":
    main()
