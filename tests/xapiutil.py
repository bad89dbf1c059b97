"""Helpers for the xAPI tests: a class flow over the API, and a tiny fake LRS.

:class:`FakeLrs` is a local HTTP server (loopback, a free port) that answers
``POST/PUT /xAPI/statements`` like an LRS: it stores statements by id, drops a resent one
with the same content (as ralph does), and follows a script of answers (``"503"``: a 5xx,
``"slow"``: store, then answer after the client gave up, ``"reject:ID"``: 400 from now on
for requests holding that statement, until ``rejects`` is cleared).
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apiutil import join_code, sign_up
from fastapi.testclient import TestClient
from test_api import HAPPY, NEUTRAL, SAD, T0, Clock, probs  # noqa: F401 - shared test vocabulary

from multinet_emotion.app import Settings, create_app

INSTRUCTOR = "instructor-secret-token"
IH = {"Authorization": f"Bearer {INSTRUCTOR}"}
LRS_USER = "lrs-user-7Qx"
LRS_PASSWORD = "lrs-pass-Zk93-never-shown"
PUBLIC_URL = "https://emotion.example.org"


def make_app(url: str, clock: Clock, lrs_url: str | None = "http://127.0.0.1:9/xAPI/",
             **settings: Any):
    s = Settings(database_url=url, instructor_token=INSTRUCTOR, signup_rate=0, session_rate=0,
                 public_url=PUBLIC_URL, lrs_url=lrs_url or "", lrs_username=LRS_USER,
                 lrs_password=LRS_PASSWORD, **settings)
    return create_app(s, analyzer_factory=None, clock=clock, rng=random.Random(0))


class Learner:
    """A learner of a class, driven through the API."""

    def __init__(self, client: TestClient, clock: Clock, name: str = "Ada",
                 class_id: str = "algebra-1", share: bool = True):
        self.client, self.clock = client, clock
        answer = sign_up(client, name)
        self.id = answer["learner_id"]
        self.h = {"Authorization": f"Bearer {answer['token']}"}
        if share:
            r = client.put("/api/me/sharing", json={"emotions": True}, headers=self.h)
            assert r.status_code == 200 and r.json() == {"emotions": True, "lrs": True}, r.text
        self.code = join_code(client, IH, class_id)
        self.session: str | None = None

    def start(self) -> str:
        r = self.client.post("/api/sessions", json={"join_code": self.code, "source": "client"},
                             headers=self.h)
        assert r.status_code == 201, r.text
        self.session = r.json()["id"]
        return self.session

    def mood(self, p: dict[str, float] | None, seconds: int, batch: int = 10) -> list[dict]:
        """One sample a second; the suggestions made meanwhile."""
        recs = []
        for start in range(0, seconds, batch):
            samples = []
            for _ in range(min(batch, seconds - start)):
                self.clock.t += 1
                samples.append({"t": self.clock.t, "probs": p} if p else
                               {"t": self.clock.t, "face": False})
            r = self.client.post(f"/api/sessions/{self.session}/samples",
                                 json={"samples": samples}, headers=self.h)
            assert r.status_code == 200, r.text
            if r.json()["recommendation"]:
                recs.append(r.json()["recommendation"])
        return recs

    def respond(self, rec_id: str, action: str) -> None:
        r = self.client.post(f"/api/recommendations/{rec_id}/{action}", headers=self.h)
        assert r.status_code == 200, r.text

    def rate(self, rec_id: str, value: str) -> None:
        r = self.client.post(f"/api/recommendations/{rec_id}/feedback",
                             json={"value": value}, headers=self.h)
        assert r.status_code == 200, r.text

    def end(self) -> None:
        r = self.client.post(f"/api/sessions/{self.session}/end", headers=self.h)
        assert r.status_code == 200, r.text

    def lesson(self) -> str:
        """A session: calm, then discouraged (a suggestion), accepted, mood lifts (its
        outcome is measured), rated; ended. Returns the suggestion's id."""
        self.start()
        recs = self.mood(NEUTRAL, 60) + self.mood(SAD, 120)
        assert len(recs) == 1, recs
        self.respond(recs[0]["id"], "accept")
        self.mood(HAPPY, 140)
        self.rate(recs[0]["id"], "up")
        self.end()
        return recs[0]["id"]


def verbs(bodies: list[dict]) -> list[str]:
    return [b["verb"]["id"].rsplit("/", 1)[-1] for b in bodies]


class FakeLrs:
    """A stand-in LRS on loopback (see the module's docstring)."""

    def __init__(self, script: list[str] | None = None, slow_seconds: float = 1.5,
                 port: int = 0):
        """``port``: a fixed one (an LRS that comes back where it was), else a free one."""
        self.script = list(script or [])
        self.slow_seconds = slow_seconds
        self.stored: dict[str, dict] = {}
        self.rejects: set[str] = set()  # statement ids answered with 400
        self.requests: list[dict[str, Any]] = []  # method, ids, auth, answer
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/xAPI/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLrs:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def auth_ok(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{LRS_USER}:{LRS_PASSWORD}".encode()).decode()
        return header == f"Basic {expected}"

    def _answer(self, method: str, statements: list[dict], auth: str | None
                ) -> tuple[int, Any, float]:
        """(status, JSON body, seconds to wait before answering)."""
        with self.lock:
            ids = [s.get("id") for s in statements]
            if not self.auth_ok(auth):  # before the script: a refused request takes no step
                self.requests.append({"method": method, "ids": ids, "auth": auth, "step": ""})
                return 401, {"detail": "Invalid authentication credentials"}, 0
            step = self.script.pop(0) if self.script else "ok"
            self.requests.append({"method": method, "ids": ids, "auth": auth, "step": step})
            if step.isdigit():
                return int(step), {"detail": "LRS is having a bad day"}, 0
            if step.startswith("reject:"):  # from now on, until cleared
                self.rejects.add(step[7:])
            for bad in self.rejects.intersection(ids):
                return 400, {"detail": f"statement {bad} is not valid"}, 0
            for s in statements:
                if s["id"] in self.stored and self.stored[s["id"]] != s:
                    return 409, {"detail": "Differing statements already exist"}, 0
            new = [s["id"] for s in statements if s["id"] not in self.stored]
            self.stored.update({s["id"]: s for s in statements})
            wait = self.slow_seconds if step == "slow" else 0
            if method == "PUT" or not new:
                return 204, None, wait
            return 200, new, wait

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        lrs = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                statements = body if isinstance(body, list) else [body]
                assert self.headers.get("X-Experience-API-Version") == "1.0.3"
                status, answer, wait = lrs._answer(method, statements,
                                                   self.headers.get("Authorization"))
                time.sleep(wait)
                data = b"" if answer is None else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting
                    pass

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

        return Handler
