"""xAPI statements and their durable outbox: what a class flow queues (and, without the
learner's consent, does not), deletion, the sender's back-off and answers, the dashboard's
view, and credentials that never show. The LRS here is a fake on loopback (xapiutil); the
real one (ralph) is in test_xapi_lrs.py."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import uuid
from pathlib import Path

import pytest
from dbutil import BACKENDS, database_url
from fastapi.testclient import TestClient
from xapiutil import (
    HAPPY,
    IH,
    LRS_PASSWORD,
    LRS_USER,
    PUBLIC_URL,
    SAD,
    Clock,
    FakeLrs,
    Learner,
    make_app,
    verbs,
)

from multinet_emotion.app import Settings
from multinet_emotion.app.lti.store import LtiRecords
from multinet_emotion.app.xapi import LrsClient, Sender
from multinet_emotion.app.xapi import profile as P
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path):
    clock = Clock()
    with database_url(request.param, tmp_path) as url:
        application = make_app(url, clock)
        yield application, TestClient(application), clock  # no lifespan: nothing is sent
        application.state.context.service.store.close()


def bodies(application, learner_id: str | None = None) -> list[dict]:
    return [r.body for r in application.state.context.xapi.outbox.rows(learner_id)]


def test_a_lesson_queues_its_statements_with_the_event(app) -> None:
    application, client, clock = app
    ada = Learner(client, clock)
    rec_id = ada.lesson()
    got = bodies(application, ada.id)
    v = verbs(got)
    assert v[0] == "initialized" and v[-1] == "terminated"
    for verb in ("was-shown", "launched", "was-helped-by", "rated"):
        assert v.count(verb) == 1, v
    assert v.index("was-shown") < v.index("launched") < v.index("was-helped-by")
    # one summary per minute with samples: 320 s from T0 (22:13:20) touch 6 minutes
    summaries = [b for b in got if b["verb"]["id"] == P.VERBS["emotion_summary"].id]
    assert len(summaries) == 6
    assert len({b["id"] for b in got}) == len(got)  # ids fixed once, each its own
    for b in got:
        uuid.UUID(b["id"])
        assert b["actor"] == {"objectType": "Agent",
                              "account": {"homePage": PUBLIC_URL, "name": ada.id}}
        assert b["context"]["registration"] == str(uuid.UUID(hex=ada.session))
        assert b["context"]["contextActivities"]["grouping"][0]["id"] == \
            f"{PUBLIC_URL}/xapi/classes/algebra-1"
        assert b["version"] == "1.0.3" and b["timestamp"].endswith("+00:00")
        assert "Ada" not in json.dumps(b)  # the learner's name never leaves
    shares = summaries[2]["result"]["extensions"][P.EXT_SHARES]
    assert set(shares) == set(EMOTIONS) and shares["sad"] == 1.0  # 22:15-22:16: all sad
    assert summaries[-1]["context"]["extensions"][P.EXT_MINUTE]["end"].startswith(
        "2023-11-14T22:18:40")  # the last, partial minute ends with the session
    by_verb = {verbs([b])[0]: b for b in got}
    helped = by_verb["was-helped-by"]
    assert helped["result"]["success"] is True and helped["result"]["score"]["scaled"] == 1.0
    assert helped["result"]["extensions"][P.EXT_OUTCOME]["delta"] > 0.3
    assert helped["context"]["extensions"][P.EXT_SUGGESTION] == rec_id
    assert by_verb["rated"]["result"]["score"]["raw"] == 1
    assert by_verb["launched"]["object"]["definition"]["moreInfo"].startswith("https://")
    assert by_verb["terminated"]["result"]["duration"] == "PT05M20S"
    assert by_verb["was-shown"]["context"]["extensions"][P.EXT_RULE] == "persistent_negative"
    status = client.get("/api/xapi/outbox", headers=IH).json()
    assert status["configured"] and status["queued"] == len(got) and status["sent"] == 0


def test_without_consent_no_emotion_data_is_queued(tmp_path: Path) -> None:
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock)
    client = TestClient(application)
    bob = Learner(client, clock, "Bob", share=False)
    assert client.get("/api/me/sharing", headers=bob.h).json() == {"emotions": False,
                                                                     "lrs": True}
    bob.lesson()
    got = bodies(application, bob.id)
    assert "showed-emotions" not in verbs(got) and "was-helped-by" in verbs(got)
    text = json.dumps(got)
    for leak in (P.EXT_SHARES, P.EXT_RULE, P.EXT_OUTCOME, "persistent_negative"):
        assert leak not in text
    # the learner changes their mind: summaries from then on
    assert client.put("/api/me/sharing", json={"emotions": True},
                      headers=bob.h).json()["emotions"] is True
    bob.start()
    bob.mood(HAPPY, 70)
    assert "showed-emotions" in verbs(bodies(application, bob.id))


def test_a_dismissal_is_recorded_and_an_expiry_is_not(tmp_path: Path) -> None:
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock)
    client = TestClient(application)
    ada = Learner(client, clock)
    ada.start()
    rec = ada.mood(SAD, 130)[0]
    ada.respond(rec["id"], "dismiss")
    ada.rate(rec["id"], "down")
    v = verbs(bodies(application, ada.id))
    assert v.count("dismissed") == 1 and "launched" not in v
    rated = [b for b in bodies(application, ada.id) if verbs([b]) == ["rated"]][0]
    assert rated["result"] == {"response": "down", "score": {"raw": -1.0, "min": -1.0,
                                                             "max": 1.0, "scaled": -1.0}}
    n = len(v)
    ada.mood(SAD, 600)  # a second suggestion, left open until it expires
    v = verbs(bodies(application, ada.id))
    assert v.count("was-shown") == 2 and v.count("dismissed") == 1 and len(v) > n


def test_no_lrs_no_statements(tmp_path: Path) -> None:
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock, lrs_url=None)
    client = TestClient(application)
    ada = Learner(client, clock, share=False)
    ada.lesson()
    assert bodies(application) == []
    assert client.get("/api/xapi/outbox", headers=IH).json()["configured"] is False


def test_deleting_a_learner_removes_their_unsent_statements(app) -> None:
    application, client, clock = app
    ada, bob = Learner(client, clock), Learner(client, clock, "Bob")
    ada.lesson()
    bob.start()
    bob.mood(HAPPY, 90)
    outbox = application.state.context.xapi.outbox
    ada_ids = [r.statement_id for r in outbox.rows(ada.id)]
    assert ada_ids and outbox.rows(bob.id)
    outbox.mark_sent(ada_ids[:2], clock())  # sent ones go too: they hold personal data
    deleted = client.delete("/api/me", headers=ada.h).json()["deleted"]
    assert deleted["statements"] == len(ada_ids)
    assert outbox.rows(ada.id) == [] and all(outbox.get(i) is None for i in ada_ids)
    assert outbox.rows(bob.id)  # others untouched
    deleted = client.delete(f"/api/learners/{bob.id}", headers=IH).json()["deleted"]
    assert deleted["statements"] > 0 and outbox.rows() == []


# --- the sender ----------------------------------------------------------------------------

class Runner:
    """Drives a Sender step by step on a fake clock: a back-off passes at once."""

    def __init__(self, application, lrs: FakeLrs, timeout: float = 0.5, batch: int = 50):
        self.clock = Clock(1_800_000_000.0)
        self.outbox = application.state.context.xapi.outbox
        self.sender = Sender(self.outbox, LrsClient(lrs.url, LRS_USER, LRS_PASSWORD, timeout),
                             batch=batch, max_backoff=60, timeout=timeout, clock=self.clock,
                             rng=random.Random(1))
        self.waits: list[float] = []

    def drain(self, rounds: int = 40) -> list[str]:
        async def go() -> list[str]:
            outcomes = []
            for _ in range(rounds):
                outcome = await self.sender.send_once()
                outcomes.append(outcome)
                if outcome == "idle":
                    break
                if outcome == "retry":
                    wait = self.sender.status.next_try_at - self.clock.t
                    self.waits.append(wait)
                    self.clock.t += wait
            await self.sender.client.aclose()
            return outcomes
        return asyncio.run(go())


def queue_a_lesson(tmp_path: Path) -> tuple[object, list[str]]:
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock)
    Learner(TestClient(application), clock).lesson()
    return application, [r.statement_id for r in application.state.context.xapi.outbox.rows()]


def test_5xx_is_retried_with_exponential_backoff_and_jitter(tmp_path: Path) -> None:
    application, ids = queue_a_lesson(tmp_path)
    with FakeLrs(["503", "502", "500", "503"]) as lrs:
        run = Runner(application, lrs, batch=100)
        outcomes = run.drain()
    assert outcomes == ["retry"] * 4 + ["sent", "idle"]
    # doubling from 1 s, each between half and all of it
    for n, wait in enumerate(run.waits):
        assert 2 ** n * 0.5 <= wait <= 2 ** n, run.waits
    assert sorted(lrs.stored) == sorted(ids)  # every statement, once
    posts = [r for r in lrs.requests if r["method"] == "POST"]
    assert len(posts) == 5 and all(sorted(p["ids"]) == sorted(ids) for p in posts)
    rows = run.outbox.rows()
    assert {r.state for r in rows} == {"sent"} and {r.attempts for r in rows} == {5}
    assert all(r.last_error is None for r in rows)
    assert run.sender.status.failures == 0 and run.sender.status.last_error.startswith("HTTP 503")


def test_a_resend_after_a_timeout_is_idempotent(tmp_path: Path) -> None:
    application, ids = queue_a_lesson(tmp_path)
    with FakeLrs(["slow"], slow_seconds=1.5) as lrs:  # stores, then answers too late
        run = Runner(application, lrs, timeout=0.4)
        outcomes = run.drain()
    assert outcomes == ["retry", "sent", "idle"]
    assert "Timeout" in run.sender.status.last_error
    first, second = (r for r in lrs.requests if r["method"] == "POST")
    assert first["ids"] == second["ids"]  # the same ids: the LRS keeps one of each
    assert sorted(lrs.stored) == sorted(ids)
    assert {r.state for r in run.outbox.rows()} == {"sent"}


def test_a_rejected_statement_is_kept_as_failing_and_the_rest_sent(tmp_path: Path) -> None:
    application, ids = queue_a_lesson(tmp_path)
    bad = ids[3]
    with FakeLrs([f"reject:{bad}"]) as lrs:
        run = Runner(application, lrs)
        outcomes = run.drain()
        assert outcomes == ["sent", "idle"]  # no back-off: the LRS works
        assert sorted(lrs.stored) == sorted(set(ids) - {bad})
        row = run.outbox.get(bad)
        assert row.state == "failing" and row.last_error.startswith("HTTP 400: statement")
        puts = [r for r in lrs.requests if r["method"] == "PUT"]
        assert len(puts) == len(ids)  # the batch, one by one, to find the bad one
        n = len(lrs.requests)
        assert Runner(application, lrs).drain() == ["idle"] and len(lrs.requests) == n
        client = TestClient(application)
        status = client.get("/api/xapi/outbox", headers=IH).json()
        assert status["failing"] == 1 and status["sent"] == len(ids) - 1
        assert status["failing_error"].startswith("HTTP 400")
        # the operator fixed it: send again
        assert client.post("/api/xapi/outbox/retry", headers=IH).json() == {"requeued": 1}
        lrs.rejects.clear()
        assert Runner(application, lrs).drain() == ["sent", "idle"]
    assert sorted(lrs.stored) == sorted(ids)


def test_credentials_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    application, ids = queue_a_lesson(tmp_path)
    settings = application.state.context.settings
    assert LRS_PASSWORD not in repr(settings) and LRS_USER not in repr(settings)
    with FakeLrs() as down:
        pass  # its port is closed now: the LRS is down, connections are refused
    run = Runner(application, down)
    assert run.drain(rounds=1) == ["retry"] and "ConnectError" in run.sender.status.last_error
    assert repr(run.sender.client) == f"LrsClient('{down.url}')"
    with FakeLrs(["503"]) as lrs:
        run.sender.client = LrsClient(lrs.url, LRS_USER, "a-wrong-password", 0.5)
        assert run.drain(rounds=1) == ["retry"]  # 401: the LRS or its credentials are wrong
        assert "401" in run.sender.status.last_error
        status = TestClient(application).get("/api/xapi/outbox", headers=IH)
        assert "401" in status.json()["last_error"]
        run.sender.client = LrsClient(lrs.url, LRS_USER, LRS_PASSWORD, 0.5)
        assert run.drain() == ["retry", "sent", "idle"]
    assert all(lrs.auth_ok(r["auth"]) for r in lrs.requests[1:])  # basic auth was sent
    for text in (caplog.text, status.text, json.dumps([r.last_error for r in run.outbox.rows()])):
        assert LRS_PASSWORD not in text and LRS_USER not in text
        assert "a-wrong-password" not in text
    assert "401" in caplog.text and "503" in caplog.text  # the errors are logged, bare


def test_the_outbox_status_needs_the_instructor(tmp_path: Path) -> None:
    application, ids = queue_a_lesson(tmp_path)
    client = TestClient(application)
    assert client.get("/api/xapi/outbox").status_code == 401
    assert client.post("/api/xapi/outbox/retry").status_code == 401
    status = client.get("/api/xapi/outbox", headers=IH).json()
    assert status["queued"] == len(ids) and status["oldest_queued_age"] >= 0
    assert status["endpoint"] == "http://127.0.0.1:9/xAPI/"
    assert client.put("/api/me/sharing", json={"emotions": True}).status_code == 401


def test_the_lrs_url_takes_no_credentials() -> None:
    with pytest.raises(MultiNetError, match="MULTINET_LRS_URL: put no credentials"):
        Settings.from_env({"MULTINET_LRS_URL": "https://u:secret@lrs.example.org/xAPI/"})
    with pytest.raises(MultiNetError, match="http"):
        Settings.from_env({"MULTINET_LRS_URL": "ftp://lrs.example.org/"})
    s = Settings.from_env({"MULTINET_LRS_URL": "https://lrs.example.org/xAPI/",
                           "MULTINET_LRS_USERNAME": "u1", "MULTINET_LRS_PASSWORD": "p-secret"})
    assert (s.lrs_username, s.lrs_password) == ("u1", "p-secret") and "p-secret" not in repr(s)


def test_the_profile_document_names_every_iri() -> None:
    doc = (ROOT / "docs" / "xapi-profile.md").read_text()
    iris = [v.id for v in P.VERBS.values()] + list(P.ACTIVITY_TYPES) + list(P.EXTENSIONS)
    missing = [i for i in iris if i not in doc]
    assert not missing, f"docs/xapi-profile.md does not name {missing}"
    named = set(re.findall(re.escape(P.PROFILE) + r"/[a-z-]+/[a-z-]+", doc))
    assert named <= set(iris), f"the document names IRIs the code does not use: {named - set(iris)}"
    assert "docs/xapi-profile.md" in (ROOT / "README.md").read_text()


def test_an_identity_resolver_names_the_learner(tmp_path: Path) -> None:
    """The LTI module can name learners who came through a launch by the platform's user."""
    clock = Clock()
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", clock)
    client = TestClient(application)
    ada, bob = Learner(client, clock), Learner(client, clock, "Bob")
    platform = {"objectType": "Agent",
                "account": {"homePage": "https://lms.example.edu", "name": "sub-42"}}
    application.state.context.xapi.actors.resolvers.append(
        lambda learner_id: platform if learner_id == ada.id else None)
    ada.start()
    bob.start()
    assert bodies(application, ada.id)[0]["actor"] == platform
    assert bodies(application, bob.id)[0]["actor"]["account"] == {"homePage": PUBLIC_URL,
                                                                   "name": bob.id}


def test_learners_who_came_through_lti_are_named_as_the_platform_knows_them(
        tmp_path: Path) -> None:
    """The LTI module's resolver: a launched learner is the platform's account (issuer, sub);
    a learner who signed up by hand stays an account on this service."""
    application = make_app(f"sqlite:///{tmp_path / 'm.db'}", Clock())
    records: LtiRecords = application.state.context.lti.records
    lti_id, made = records.sign_in_learner("https://lms.example.edu", "sub-7", "Ada", "2-x",
                                           learner_id="lti-learner-1", token="t" * 32)
    assert made
    actors = application.state.context.xapi.actors
    assert actors(lti_id).as_version("1.0.3")["account"] == {
        "homePage": "https://lms.example.edu", "name": "sub-7"}
    assert actors("someone-else").as_version("1.0.3")["account"] == {
        "homePage": PUBLIC_URL, "name": "someone-else"}
