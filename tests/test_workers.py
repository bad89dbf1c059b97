"""Two worker processes on one PostgreSQL serve the same learner: the learner streams samples
over the WebSocket to one, while the instructor's dashboard and the learner's HTTP calls land
on the other; nothing is lost or counted twice, and the live view, suggestions, rate limits
and revocations are the same in both.

Each worker is a real ``multinet-emotion serve`` process on its own loopback port (as two
machines behind a load balancer would be). Needs PostgreSQL: ``MULTINET_TEST_POSTGRES_URL``
(``bash .ci/run`` starts a throwaway one); skipped without it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from apiutil import consent_fields
from dbutil import database_url
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from multinet_emotion.emotions import EMOTIONS

INSTRUCTOR = "instructor-secret-123"
IH = {"Authorization": f"Bearer {INSTRUCTOR}"}
SAD = {e: 0.7 if e == "sad" else (0.1 if e == "angry" else 0.05) for e in EMOTIONS}
CLI = Path(sys.executable).parent / "multinet-emotion"
STEP = 0.13  # seconds between samples: more than sample_interval, so each is stored alone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_policy(tmp_path: Path) -> Path:
    """The shipped policy, with sadness acted on after 2 s instead of 90 s."""
    from multinet_emotion.recommend import load_policy
    data = yaml.safe_load(Path(load_policy(None).source).read_text())
    rule = next(r for r in data["rules"] if r["name"] == "persistent_negative")
    rule["min_duration"] = 2
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def server_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTINET_")}
    return env | {"MULTINET_DATABASE_URL": url, "MULTINET_INSTRUCTOR_TOKEN": INSTRUCTOR,
                  "XDG_DATA_HOME": str(tmp_path / "data"), "MULTINET_PROGRESS": "0"} | extra


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server at {base} did not answer within {timeout:g} s:\n"
                f"{log.read_text()[-3000:]}")


def start(name: str, env: dict[str, str], tmp_path: Path, *args: str
          ) -> tuple[str, subprocess.Popen, Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port),
                             *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}", proc, log


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with database_url("postgresql", tmp_path) as url:
        env = server_env(url, tmp_path, MULTINET_POLICY=str(fast_policy(tmp_path)),
                         MULTINET_SAMPLE_INTERVAL="0.1", MULTINET_SIGNUP_RATE="3",
                         MULTINET_SESSION_RATE="0")
        # the first creates the schema; then the second starts beside it
        a_url, a, a_log = start("a", env, tmp_path)
        try:
            wait_healthy(a_url, a, a_log)
            b_url, b, b_log = start("b", env, tmp_path)
            try:
                wait_healthy(b_url, b, b_log)
                with httpx.Client(base_url=a_url, timeout=30) as ca, \
                        httpx.Client(base_url=b_url, timeout=30) as cb:
                    yield ca, cb
            finally:
                stop(b)
        finally:
            stop(a)


def ws_url(client: httpx.Client) -> str:
    return str(client.base_url).replace("http://", "ws://").rstrip("/") + "/ws/learn"


def receive_result(ws, recs: list[dict]) -> dict:  # noqa: ANN001
    """Read up to the next result (collecting recommendations on the way)."""
    while True:
        msg = json.loads(ws.recv(timeout=20))
        if msg["type"] == "recommendation":
            recs.append(msg["recommendation"])
        elif msg["type"] == "result":
            return msg
        else:
            pytest.fail(f"unexpected message {msg}")


def stored_samples(client: httpx.Client, learner_id: str) -> list[dict]:
    """Every stored sample of the learner (the instructor's export, which first stores the
    readings waiting for their sample interval)."""
    r = client.get(f"/api/learners/{learner_id}/export", headers=IH)
    assert r.status_code == 200, r.text
    return [smp for sess in r.json()["sessions"] for smp in sess["samples"]]


def test_two_workers_share_one_learner(two_workers) -> None:
    a, b = two_workers
    # rate limits count over both workers: 3 sign-ups a minute from this address in all
    r = b.post("/api/learners", json={"name": "Ada", **consent_fields(b)})
    assert r.status_code == 201, r.text
    token, lid = r.json()["token"], r.json()["learner_id"]
    h = {"Authorization": f"Bearer {token}"}
    assert a.post("/api/learners", json={"name": "Bo", **consent_fields(a)}).status_code == 201
    assert b.post("/api/learners", json={"name": "Cy", **consent_fields(b)}).status_code == 201
    refused = a.post("/api/learners", json={"name": "Di", **consent_fields(a)})
    assert refused.status_code == 429 and "Retry-After" in refused.headers, refused.text

    code = b.post("/api/classes", json={"name": "Algebra", "class_id": "algebra"},
                  headers=IH).json()["join_code"]
    r = b.post("/api/sessions", json={"join_code": code, "source": "client"}, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    sent_http: list[float] = []
    ws_results: list[dict] = []
    recs: list[dict] = []
    with connect(ws_url(a)) as ws:
        ws.send(json.dumps({"type": "hello", "token": token, "session_id": sid}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        # samples alternate: the WebSocket on worker A, the HTTP API on worker B
        deadline = time.monotonic() + 30
        while len(ws_results) < 12 or (not recs and time.monotonic() < deadline):
            ws.send(json.dumps({"type": "sample", "face": True, "probs": SAD}))
            ws_results.append(receive_result(ws, recs))
            time.sleep(STEP)
            t = time.time()
            r = b.post(f"/api/sessions/{sid}/samples",
                       json={"samples": [{"t": t, "probs": SAD}]}, headers=h)
            assert r.status_code == 200 and r.json()["stored"] >= 1, r.text
            sent_http.append(t)
            if r.json()["recommendation"]:
                recs.append(r.json()["recommendation"])
            time.sleep(STEP)
        assert len(recs) == 1, f"one suggestion expected (cool-down), got {recs}"
        rec = recs[0]

        # the dashboard on B sees the learner live, in the state streamed to A
        overview = b.get("/api/classes/algebra/overview", headers=IH).json()
        entry = next(e for e in overview["learners"] if e["learner_id"] == lid)
        assert entry["live"] and entry["current"]["label"] == "sad", entry
        assert entry["recommendation"]["title"] == rec["item"]["title"]
        assert next(c for c in a.get("/api/classes", headers=IH).json()
                    if c["class_id"] == "algebra")["live"] == 1

        # the suggestion, made by whichever worker, is open on both; accepted on B ...
        for c in (a, b):
            current = c.get(f"/api/sessions/{sid}/recommendation", headers=h).json()
            assert current["recommendation"]["id"] == rec["id"]
        r = b.post(f"/api/recommendations/{rec['id']}/accept", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        # ... and no longer open on A, nor answered twice
        assert a.get(f"/api/sessions/{sid}/recommendation",
                     headers=h).json()["recommendation"] is None
        assert a.post(f"/api/recommendations/{rec['id']}/dismiss", headers=h).status_code == 409
        ws.send(json.dumps({"type": "sample", "face": True, "probs": SAD}))
        ws_results.append(receive_result(ws, recs))
        assert len(recs) == 1  # the cool-down holds across the workers

        # nothing lost or counted twice: every sample sent is stored once (the export on B
        # also stores the reading that waits for its interval in A's live state)
        samples = stored_samples(b, lid)
        times = [s["t"] for s in samples]
        assert len(times) == len(set(times)) == len(ws_results) + len(sent_http), \
            (len(times), len(ws_results), len(sent_http))
        assert set(sent_http) <= set(times)
        # labelled by the session's one filter, whichever worker took the sample: the first
        # reading of the face is still "reading", the rest sad
        assert samples[0]["label"] is None and all(s["label"] == "sad" for s in samples[1:])

        # replacing the token on B closes the learner's socket on A
        assert b.post(f"/api/learners/{lid}/token", headers=IH).status_code == 200
        msg = json.loads(ws.recv(timeout=10))
        assert msg["type"] == "error" and "token was replaced" in msg["message"], msg
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert len(stored_samples(b, lid)) == len(times)  # nothing stored after the revocation


def test_serve_workers_starts_n_processes_on_postgresql(tmp_path: Path) -> None:
    with database_url("postgresql", tmp_path) as url:
        base, proc, log = start("w", server_env(url, tmp_path), tmp_path, "--workers", "2")
        try:
            wait_healthy(base, proc, log, timeout=180)  # two apps start on a busy machine
            assert httpx.get(f"{base}/api/health").json()["database"] == "postgresql"
        finally:
            stop(proc)
        text = log.read_text()
        assert text.count("Application startup complete") == 2, text[-3000:]


def test_several_workers_with_sqlite_are_refused(tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    r = subprocess.run([str(CLI), "serve", "--workers", "2", "--check"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert "--workers 2" in r.stderr and "PostgreSQL" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_each_process_keeps_to_its_postgresql_connections(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """A worker process opens at most MULTINET_DB_CONNECTIONS connections (the store half,
    the live state's locks and listener the rest); more workers than PostgreSQL's
    max_connections allows are warned about at start."""
    import logging
    import random

    from multinet_emotion.app.app import create_app
    from multinet_emotion.app.settings import Settings
    from multinet_emotion.app.store.database import store_pool

    for n in (6, 32, 100):
        size, overflow = store_pool(n)
        assert size >= 1 and overflow >= 0 and size + overflow <= n // 2
    with database_url("postgresql", tmp_path) as url:
        def app(**settings):  # noqa: ANN003, ANN202
            made = create_app(Settings(database_url=url, instructor_token="t" * 20,
                                       analysis="off", **settings), rng=random.Random(0))
            shared = made.state.context.shared
            opened = (made.state.context.service.store.engine.pool.size()
                      + made.state.context.service.store.engine.pool._max_overflow
                      + shared._locks.pool.size() + shared._locks.pool._max_overflow + 1)
            shared.close()
            made.state.context.service.store.close()
            return opened

        with caplog.at_level(logging.WARNING, logger="multinet_emotion.app.app"):
            assert app(db_connections=32) <= 32
            assert "MULTINET_DB_CONNECTIONS" not in caplog.text
            assert app(db_connections=40, workers=4) <= 40  # 160 > PostgreSQL's 100
        assert "4 worker processes x 40 connections (MULTINET_DB_CONNECTIONS) = 160" in caplog.text
