"""xAPI against a real LRS: ralph (``ralph runserver -b fs``) on loopback, started here.

Ralph lives in its own virtualenv, ``.venv-ralph`` (``scripts/setup_ralph.sh``, which
``.ci/run`` calls), because it pins its own FastAPI; these tests skip where it is missing.
A class runs through the API with the server's real sender (the app's lifespan); every
statement is read back through ralph's xAPI API, validated with ralph's strict statement
model, and counted by id: all of them, each once, also when the LRS goes away in the middle
of the class and comes back. (Ralph 5.1's file-system backend takes only one write per
file; ``ralph_shim/sitecustomize.py`` makes it append.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from xapiutil import (
    HAPPY,
    IH,
    LRS_PASSWORD,
    LRS_USER,
    NEUTRAL,
    SAD,
    Clock,
    Learner,
    make_app,
    verbs,
)

ROOT = Path(__file__).resolve().parents[1]
RALPH = ROOT / ".venv-ralph" / "bin" / "ralph"
#: Makes ralph's file-system LRS backend append its writes (see its docstring).
SHIM = Path(__file__).resolve().parent / "ralph_shim"
VALIDATE = """
import json, sys
from ralph.models.xapi.base.statements import BaseXapiStatement
statements = json.load(sys.stdin)
bad = []
for s in statements:
    try:
        BaseXapiStatement(**s)
    except Exception as e:
        bad.append(f"{s.get('id')}: {e}")
print(json.dumps({"valid": len(statements) - len(bad), "errors": bad}))
"""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not RALPH.exists(), reason="ralph is not installed in .venv-ralph (run "
                               "scripts/setup_ralph.sh; .ci/run does)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ralph:
    """A ralph LRS on loopback with the file-system backend and basic-auth credentials."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/xAPI/"
        (folder / "cwd").mkdir()  # runserver reloads on changes in its working directory
        self.env = os.environ | {
            "RALPH_RUNSERVER_BACKEND": "fs", "RALPH_APP_DIR": str(folder / "app"),
            "RALPH_AUTH_FILE": str(folder / "auth.json"),
            "RALPH_RUNSERVER_MAX_SEARCH_HITS_COUNT": "1000", "PYTHONPATH": str(SHIM)}
        self.proc: subprocess.Popen | None = None
        subprocess.run([str(RALPH), "auth", "-u", LRS_USER, "-p", LRS_PASSWORD, "-s", "all",
                        "-A", LRS_USER, "http://127.0.0.1", "-w"], env=self.env, check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        log = open(self.folder / "ralph.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(
            [str(RALPH), "runserver", "-b", "fs", "--fs-default-directory-path",
             str(self.folder / "data"), "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=self.folder / "cwd", env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: the reloader and its server
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "ralph.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/__heartbeat__",
                             timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("ralph did not start: " +
                             (self.folder / "ralph.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the process started above
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def statements(self) -> list[dict]:
        """Every statement the LRS holds, through its xAPI GET (following ``more``)."""
        out: list[dict] = []
        url = f"{self.url}statements?limit=1000"
        with httpx.Client(auth=(LRS_USER, LRS_PASSWORD), timeout=30,
                          headers={"X-Experience-API-Version": "1.0.3"}) as c:
            while url:
                r = c.get(url)
                assert r.status_code == 200, r.text
                page = r.json()
                out += page["statements"]
                more = page.get("more")
                url = f"http://127.0.0.1:{self.port}{more}" if more else ""
        return out

    def validate(self, statements: list[dict]) -> dict:
        """Each statement against ralph's strict xAPI statement model."""
        done = subprocess.run([str(RALPH.parent / "python"), "-c", VALIDATE],
                              input=json.dumps(statements), capture_output=True, text=True,
                              env=self.env, timeout=120, check=True)
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def ralph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ralph]:
    lrs = Ralph(tmp_path_factory.mktemp("ralph"))
    lrs.start()
    try:
        yield lrs
    finally:
        lrs.stop()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(client: TestClient) -> dict:
    return client.get("/api/xapi/outbox", headers=IH).json()


def delivered(client: TestClient) -> bool:
    s = status(client)
    return s["queued"] == 0 and s["sent"] > 0


def check_exactly_once(application, ralph: Ralph, *learners: str) -> list[dict]:
    """Every statement of the outbox is in the LRS exactly once, and nothing else of theirs."""
    ours = {r.statement_id: r for r in application.state.context.xapi.outbox.rows()}
    assert ours and {r.state for r in ours.values()} == {"sent"}
    theirs = [s for s in ralph.statements() if s["actor"]["account"]["name"] in learners]
    counts = Counter(s["id"] for s in theirs)
    assert set(counts) == set(ours), (set(ours) - set(counts), set(counts) - set(ours))
    assert set(counts.values()) == {1}, [i for i, n in counts.items() if n > 1]
    for s in theirs:  # the LRS holds what was queued, as it was queued
        sent = ours[s["id"]].body
        assert {k: s[k] for k in sent} == sent, s["id"]
    return theirs


def test_a_class_arrives_in_ralph_and_passes_its_validation(
        ralph: Ralph, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock, lrs_url=ralph.url,
                           lrs_max_backoff=2)
    with TestClient(application) as client:
        ada, bob = Learner(client, clock), Learner(client, clock, "Bob", share=False)
        ada.lesson()
        bob.lesson()
        wait_for(lambda: delivered(client), 60, "the outbox to empty")
        s = status(client)
        assert s["failing"] == 0 and s["last_error"] is None and s["oldest_queued_age"] is None
        assert LRS_PASSWORD not in json.dumps(s)
    got = check_exactly_once(application, ralph, ada.id, bob.id)
    v = verbs([x for x in got if x["actor"]["account"]["name"] == ada.id])
    for verb in ("initialized", "was-shown", "launched", "was-helped-by", "rated",
                 "showed-emotions", "terminated"):
        assert verb in v, (verb, v)
    assert "showed-emotions" not in verbs([x for x in got
                                          if x["actor"]["account"]["name"] == bob.id])
    assert all(x["authority"]["account"]["name"] == LRS_USER for x in got)  # ralph stored
    report = ralph.validate(got)
    assert report == {"valid": len(got), "errors": []}
    assert LRS_PASSWORD not in caplog.text and "HTTP Request: POST" in caplog.text


def test_every_statement_arrives_once_across_an_lrs_outage(
        ralph: Ralph, tmp_path: Path) -> None:
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock, lrs_url=ralph.url,
                           lrs_max_backoff=2, lrs_batch=7)
    with TestClient(application) as client:
        ada, bob = Learner(client, clock, "Ada"), Learner(client, clock, "Bob")
        ada.start()
        ada.mood(NEUTRAL, 60)
        wait_for(lambda: delivered(client), 60, "the first statements")
        before = status(client)["sent"]
        ralph.stop()  # the LRS goes away in the middle of the class
        try:
            recs = ada.mood(SAD, 120)
            bob.start()
            bob.mood(HAPPY, 70)
            wait_for(lambda: status(client)["failures_in_a_row"] >= 2, 30,
                     "the sender to notice")
            ada.respond(recs[0]["id"], "accept")
            ada.mood(HAPPY, 140)
            ada.rate(recs[0]["id"], "up")
            ada.end()
            bob.end()
            s = status(client)
            assert s["queued"] > 10 and s["sent"] == before and s["oldest_queued_age"] > 0
            assert "ConnectError" in s["last_error"], s
        finally:
            ralph.start()  # it comes back
        wait_for(lambda: delivered(client), 90, "the outbox to empty after the outage")
        s = status(client)
        assert s["failing"] == 0 and s["failures_in_a_row"] == 0
    got = check_exactly_once(application, ralph, ada.id, bob.id)
    assert len(got) == s["sent"] > before
    assert ralph.validate(got)["errors"] == []
