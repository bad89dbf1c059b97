"""Load test of the learner WebSocket: N simulated learners streaming real face frames.

Starts `multinet-emotion serve` on loopback (a fresh SQLite store in a temporary folder)
unless --url points at a running server, signs up N learners, opens N WebSockets and sends
JPEG frames at --fps each (default 2) for --seconds. Reports frames/s served, latency p50 /
p95 / p99 (send -> result) and lost or failed frames, for each level of --learners
(e.g. 10,20,30,40) and where it saturates (p95 over --target-ms, anything lost, or over
1% of frames answered with an error: a frame the server skipped because a newer one from
the same learner arrived first counts here, never as lost).

--mode samples: the learners send emotion samples (probabilities, as the page sends them when
it analyses in the browser) instead of frames. --workers N: the server runs N worker
processes, which needs PostgreSQL (--database postgresql+psycopg://USER@HOST/DB); the CPU
figure then sums the whole process tree.

    python bench/load.py --learners 20                   # the target: 20 learners at 2 fps
    python bench/load.py --learners 10,20,30,40 --seconds 20 --json reports/load.json
    python bench/load.py --learners 50 --timeline 5   # also the p95 of every 5 s
    python bench/load.py --model path/to/model.onnx      # another model (default: shipped)
    python bench/load.py --mode samples --fps 1 --learners 100,500
    python bench/load.py --workers 2 --database postgresql+psycopg://postgres@127.0.0.1/db

Frames are FER2013 test faces (../shared/data/fer2013/test) pasted on a 320x240 scene,
as the learner page sends them; drawn faces when the data is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
FER_TEST = ROOT.parent / "shared" / "data" / "fer2013" / "test"
TOKEN = "load-test-instructor-token"
INSTRUCTOR = {"Authorization": f"Bearer {TOKEN}"}
#: What a simulated learner sends in --mode samples (a steady, mostly neutral face).
SAMPLE = {"type": "sample", "face": True, "confidence": 0.8,
          "probs": {"angry": 0.05, "fear": 0.05, "happy": 0.1, "sad": 0.05, "surprise": 0.05,
                    "neutral": 0.7}}


def make_frames(n: int = 40, width: int = 320, height: int = 240, faces_from: str = "fer"
                ) -> tuple[list[list[bytes]], str]:
    """Per face, JPEG frames of it on a background, like the learner page's downscaled
    frames; each simulated learner streams one face (one person). ``faces_from`` "fer":
    FER2013 test faces (48x48, enlarged: the face detector misses about 4 in 10 of them,
    so those learners look like nobody is in view); "drawn": one drawn face it always
    finds (every learner in view, as when a class sits at its cameras)."""
    faces: list[np.ndarray] = []
    source = "drawn faces"
    if faces_from == "fer" and FER_TEST.is_dir():
        paths = sorted(p for d in sorted(FER_TEST.iterdir()) if d.is_dir()
                       for p in sorted(d.glob("*.jpg"))[: n // 6 + 1])
        for p in paths[:n]:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                faces.append(img)
        source = f"{len(faces)} FER2013 test faces"
    if not faces:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import draw_face  # noqa: E402 - test helper, only without FER2013
        faces = [draw_face(160)]
    frames = []  # per face: a few frames with the face jittering a little, like a person
    bg = np.tile(np.linspace(70, 170, width).astype(np.uint8), (height, 1))
    for i, face in enumerate(faces):
        clip = []
        for dx, dy in ((0, 0), (3, 1), (5, -2), (2, 2)):
            frame = bg.copy()
            s = 140
            x0, y0 = 70 + (i % 5) * 8 + dx, 40 + (i % 3) * 6 + dy
            frame[y0:y0 + s, x0:x0 + s] = cv2.resize(face, (s, s),
                                                     interpolation=cv2.INTER_CUBIC)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 70])
            clip.append(buf.tobytes())
        frames.append(clip)
    return frames, source


class Start:
    """Holds every learner of a level until all have signed up and connected, so that the
    server CPU of the streaming is measured apart from that of the sign-ups (``mark`` is
    called once, just before the streaming starts)."""

    def __init__(self, n: int, mark: Callable[[], None]):
        self.left, self.mark, self.go = n, mark, asyncio.Event()

    def arrive(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.mark()
            self.go.set()


@dataclass
class Learner:
    sent: int = 0
    results: int = 0
    errors: int = 0
    faces: int = 0
    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # perf_counter when each was sent
    failure: str | None = None


def join_code(base: str) -> str:
    """The join code of the class the simulated learners join (made when missing)."""
    with httpx.Client(base_url=base, timeout=30, headers=INSTRUCTOR) as http:
        r = http.post("/api/classes", json={"name": "Load test", "class_id": "load"})
        if r.status_code == 201:
            return r.json()["join_code"]
        if r.status_code != 409:  # 409: it exists already (an earlier level made it)
            r.raise_for_status()
        return next(c["join_code"] for c in http.get("/api/classes").json()
                    if c["class_id"] == "load")


async def run_learner(base: str, frames: list[bytes], fps: float, seconds: float,
                      offset: float, index: int, code: str = "", mode: str = "frames",
                      start_all: Start | None = None) -> Learner:
    out = Learner()
    arrived = False
    ws_url = base.replace("http", "ws", 1) + "/ws/learn"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            consent = (await http.get("/api/consent")).json()["version"]
            r = await http.post("/api/learners", json={"name": f"load-{index}", "consent": True,
                                                       "consent_version": consent})
            r.raise_for_status()
            token = r.json()["token"]
            r = await http.post("/api/sessions", json={
                "join_code": code, "source": "camera" if mode == "frames" else "client"},
                headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            session_id = r.json()["id"]
        async with websockets.connect(ws_url, max_size=1 << 20, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token,
                                      "session_id": session_id}))
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready" or (mode == "frames" and not ready.get("analysis")):
                raise RuntimeError(f"server not ready for {mode}: {ready}")
            sample = json.dumps(SAMPLE)
            pending: dict[int, float] = {}
            done = asyncio.Event()

            async def receive() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg.get("type") not in ("result", "error") or "seq" not in msg:
                        continue
                    t_sent = pending.pop(msg["seq"], None)
                    if t_sent is None:
                        continue
                    if msg["type"] == "result":
                        out.results += 1
                        out.faces += bool(msg["faces"])
                        out.latencies.append(time.perf_counter() - t_sent)
                        out.sent_at.append(t_sent)
                    else:
                        out.errors += 1
                    if done.is_set() and not pending:
                        return

            if start_all is not None:
                arrived = True
                start_all.arrive()
                await start_all.go.wait()
            receiver = asyncio.create_task(receive())
            await asyncio.sleep(offset)  # spread the learners over one frame period
            start = time.perf_counter()
            n_frames = int(seconds * fps)
            for k in range(n_frames):
                delay = start + k / fps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                out.sent += 1
                pending[out.sent] = time.perf_counter()
                await ws.send(frames[k % len(frames)] if mode == "frames" else sample)
            done.set()
            try:  # wait for the last replies (anything still missing after this is lost)
                await asyncio.wait_for(receiver, timeout=10)
            except TimeoutError:
                receiver.cancel()
    except Exception as e:  # noqa: BLE001 - report, do not crash the other learners
        out.failure = f"{type(e).__name__}: {e}"
        if start_all is not None and not arrived:
            start_all.arrive()
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


async def run_level(base: str, frames: list[list[bytes]], n: int, fps: float,
                    seconds: float, mode: str = "frames",
                    mark: Callable[[], None] = lambda: None, window: float = 5.0) -> dict:
    code = await asyncio.to_thread(join_code, base)
    t0 = time.perf_counter()
    start_all = Start(n, mark)
    learners = await asyncio.gather(*(run_learner(base, frames[i % len(frames)], fps, seconds,
                                                  i / (n * fps), i, code, mode, start_all)
                                      for i in range(n)))
    wall = time.perf_counter() - t0
    lat = [x for lr in learners for x in lr.latencies]
    sent_at = [x for lr in learners for x in lr.sent_at]
    go = min(sent_at, default=0.0)
    # p95 over consecutive windows of the streaming (see --timeline)
    by_window: dict[int, list[float]] = {}
    for t, x in zip(sent_at, lat):
        by_window.setdefault(int((t - go) // window), []).append(x)
    timeline = [round(percentile(by_window.get(i, []), 95) * 1000, 1)
                for i in range(max(by_window, default=-1) + 1)]
    sent = sum(lr.sent for lr in learners)
    results = sum(lr.results for lr in learners)
    errors = sum(lr.errors for lr in learners)
    return {"learners": n, "mode": mode, "fps_per_learner": fps, "seconds": seconds,
            "frames_sent": sent, "results": results, "errors": errors,
            "lost": sent - results - errors,
            "failed_learners": [lr.failure for lr in learners if lr.failure],
            "frames_with_face": sum(lr.faces for lr in learners),
            "served_fps": round(results / max(seconds, 1e-9), 2),
            "offered_fps": n * fps, "wall_seconds": round(wall, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p95_ms": round(percentile(lat, 95) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1) if lat else float("nan"),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else float("nan"),
            "window_s": window, "p95_ms_by_window": timeline}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process and its children alive now (the worker
    processes of ``--workers``), from Linux /proc; None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError, IndexError):
        return None
    return own + sum(cpu_seconds(int(c)) or 0.0 for c in children)


def postgres_cpu_seconds() -> float | None:
    """CPU time of the PostgreSQL server processes on this machine (a loopback database
    works for the app too), ended backends included (their parent's children time); None
    when there is none."""
    total, found = 0.0, False
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "postgres":
                continue
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found = True
        total += (int(f[11]) + int(f[12])) / tick
        if int(f[1]) == 1 or not (Path(f"/proc/{f[1]}/comm").exists() and Path(
                f"/proc/{f[1]}/comm").read_text().strip() == "postgres"):
            total += (int(f[13]) + int(f[14])) / tick  # the postmaster: ended backends
    return total if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = (shutil.which("multinet-emotion")
           or str(Path(sys.executable).parent / "multinet-emotion"))
    database = args.database or f"sqlite:///{tmp / 'load.db'}"
    cmd = [exe, "serve", "--port", str(port), "--database", database,
           "--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", str(args.model)]
    # many learners sign up from one address at once: no per-address limits here
    env = dict(os.environ, MULTINET_INSTRUCTOR_TOKEN=TOKEN, MULTINET_SIGNUP_RATE="0",
               MULTINET_SESSION_RATE="0", MULTINET_MAX_CONNECTIONS_PER_ADDRESS="100000",
               XDG_DATA_HOME=str(tmp))
    if args.analysis_workers:
        env["MULTINET_ANALYSIS_WORKERS"] = str(args.analysis_workers)
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{(tmp / 'server.log').read_text()}")
        try:
            health = httpx.get(base + "/api/health", timeout=2).json()
            if not health["analysis"] and args.mode == "frames":
                proc.terminate()
                raise SystemExit("the server has no emotion analysis (no model?); pass "
                                 f"--model PATH\n{(tmp / 'server.log').read_text()}")
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not start in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running server (default: start one on loopback)")
    ap.add_argument("--learners", default="20", help="simulated learners, e.g. 20 or 10,20,40")
    ap.add_argument("--fps", type=float, default=2.0, help="frames per second per learner")
    ap.add_argument("--seconds", type=float, default=30.0, help="streaming time per level")
    ap.add_argument("--target-ms", type=float, default=500.0, help="p95 latency target")
    ap.add_argument("--model", type=Path, help="model for the started server")
    ap.add_argument("--faces", choices=("fer", "drawn"), default="fer",
                    help="fer: FER2013 test faces (some never found: those learners look "
                         "away); drawn: a drawn face found in every frame")
    ap.add_argument("--mode", choices=("frames", "samples"), default="frames",
                    help="what learners send: camera frames (server analysis) or emotion "
                         "samples (analysis in the browser)")
    ap.add_argument("--workers", type=int, default=1,
                    help="server worker processes (more than 1 needs --database postgresql)")
    ap.add_argument("--database", help="the started server's database (default: a fresh "
                                       "SQLite file; PostgreSQL: use an empty database)")
    ap.add_argument("--analysis-workers", type=int,
                    help="frames analysed at once by each server process")
    ap.add_argument("--timeline", type=float, default=0.0, metavar="SECONDS",
                    help="also print the p95 latency of each SECONDS-long window of the "
                         "streaming, by when frames were sent (0 = not printed)")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.timeline < 0:
        ap.error("--timeline: seconds, 0 or more")
    levels = [int(x) for x in args.learners.split(",") if x.strip()]
    if args.workers > 1 and not args.url and not (args.database or "").startswith("postgresql"):
        ap.error("--workers > 1 needs --database postgresql+psycopg://USER@HOST/DB")
    frames, source = make_frames(faces_from=args.faces)
    kib = np.mean([len(f) for clip in frames for f in clip]) / 1024
    print(f"frames: {source} (one per learner), JPEGs of ~{kib:.1f} KiB; {os.cpu_count()} CPU"
          " cores", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="multinet-load-"))
    proc = None
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            proc, base = start_server(args, tmp)
        results = []
        item = "frame" if args.mode == "frames" else "sample"
        pg = (args.database or "").startswith("postgresql") and postgres_cpu_seconds() \
            is not None
        print(f"server CPU: ms per {item} answered while streaming (sign-ups and connections "
              f"apart: 'setup s'); 'client ms': the simulated learners' own CPU per {item} "
              "sent, on the same cores" + ("; 'db ms' is this machine's PostgreSQL, per " + item
                                     if pg else ""), flush=True)
        header = (f"{'learners':>8} {'offered/s':>9} {'served/s':>8} {'p50 ms':>7} {'p95 ms':>7}"
                  f" {'p99 ms':>7} {'max ms':>7} {'lost':>5} {'errors':>6} {'faces':>6}"
                  f" {'CPU ms/' + item:>14} {'setup s':>7} {'client ms':>10}"
                  + (f" {'db ms':>6}" if pg else ""))
        print(header, flush=True)
        saturated = None
        for n in levels:
            pid = proc.pid if proc else None
            marks: dict[str, float | None] = {"cpu0": cpu_seconds(pid),
                                              "db0": postgres_cpu_seconds() if pg else None}

            def mark(marks: dict = marks, pid: int | None = pid) -> None:
                marks["cpu_mid"] = cpu_seconds(pid)
                marks["client_mid"] = time.process_time()
                marks["db_mid"] = postgres_cpu_seconds() if pg else None

            r = asyncio.run(run_level(base, frames, n, args.fps, args.seconds, args.mode,
                                      mark, args.timeline or 5.0))
            cpu0, cpu_mid = marks["cpu0"], marks.get("cpu_mid", marks["cpu0"])
            cpu1 = cpu_seconds(pid)
            client = time.process_time() - marks.get("client_mid", time.process_time())
            # the simulated learners share the cores with the server: their own CPU
            r["client_cpu_ms_per_frame"] = round(client * 1000 / max(r["frames_sent"], 1), 2)
            answered = max(r["results"], 1)
            # CPU time per answered frame or sample while streaming: a capacity estimate
            # that does not depend on what else the machine is running
            known = None not in (cpu0, cpu_mid, cpu1)
            r["server_cpu_ms_per_frame"] = round((cpu1 - cpu_mid) * 1000 / answered, 2) \
                if known else None
            r["setup_cpu_s"] = round(cpu_mid - cpu0, 2) if known else None
            db_mid, db1 = marks.get("db_mid"), postgres_cpu_seconds() if pg else None
            r["db_cpu_ms_per_frame"] = round((db1 - db_mid) * 1000 / answered, 2) \
                if db_mid is not None and db1 is not None else None
            results.append(r)
            cpu, setup = r["server_cpu_ms_per_frame"], r["setup_cpu_s"]
            nan = float("nan")
            print(f"{n:>8} {r['offered_fps']:>9.1f} {r['served_fps']:>8.1f} {r['p50_ms']:>7.0f}"
                  f" {r['p95_ms']:>7.0f} {r['p99_ms']:>7.0f} {r['max_ms']:>7.0f} {r['lost']:>5}"
                  f" {r['errors']:>6} {r['frames_with_face']:>6}"
                  f" {cpu if cpu is not None else nan:>14.2f}"
                  f" {setup if setup is not None else nan:>7.1f}"
                  f" {r['client_cpu_ms_per_frame']:>10.2f}"
                  + (f" {r['db_cpu_ms_per_frame'] or nan:>6.2f}" if pg else ""), flush=True)
            if args.timeline:
                print(f"   p95 ms by {args.timeline:g}-s window of the streaming: "
                      + " ".join(f"{x:.0f}" for x in r["p95_ms_by_window"]))
            for f in r["failed_learners"][:3]:
                print(f"   failed learner: {f}")
            ok = (r["p95_ms"] <= args.target_ms and r["lost"] == 0
                  and r["errors"] <= 0.01 * r["frames_sent"] and not r["failed_learners"])
            if not ok and saturated is None:
                saturated = n
        per_frame = [r["server_cpu_ms_per_frame"] for r in results
                     if r["server_cpu_ms_per_frame"]]
        if per_frame:
            ms = statistics.median(per_frame)
            cores = os.cpu_count() or 1
            print(f"server CPU per {item} ~{ms:.2f} ms: {cores} idle cores could serve about "
                  f"{cores * 1000 / ms:.0f} {item}s/s ({cores * 1000 / ms / args.fps:.0f} "
                  f"learners at {args.fps:g}/s)")
        if saturated is None:
            print(f"within target (p95 <= {args.target_ms:.0f} ms, nothing lost) up to "
                  f"{levels[-1]} learners at {args.fps:g} {item}s/s: not saturated")
        else:
            print(f"SATURATES at {saturated} learners ({saturated * args.fps:g} {item}s/s "
                  f"offered): p95 over {args.target_ms:.0f} ms, {item}s lost, or over 1% "
                  "answered with an error")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"frames": source, "cpus": os.cpu_count(),
                                             "levels": results, "saturates_at": saturated},
                                            indent=2))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
