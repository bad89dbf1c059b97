"""The API end to end (SQLite always, PostgreSQL when available), auth, and every rejection."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from apiutil import consent_fields, join_code, sign_up
from dbutil import BACKENDS, database_url
from fastapi.testclient import TestClient

from multinet_emotion.app import Settings, create_app
from multinet_emotion.emotions import EMOTIONS, Reading

INSTRUCTOR = "instructor-secret-token"
T0 = 1_700_000_000.0


def probs(**kw: float) -> dict[str, float]:
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return {e: kw.get(e, rest) for e in EMOTIONS}


SAD = probs(sad=0.7, angry=0.1)
HAPPY = probs(happy=0.8)
NEUTRAL = probs(neutral=0.8)


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_client(url: str, clock: Clock, seed: int = 0, **settings: Any) -> TestClient:
    settings = {"signup_rate": 0, "session_rate": 0} | settings  # tests sign many up at once
    s = Settings(database_url=url, instructor_token=INSTRUCTOR, **settings)
    app = create_app(s, analyzer_factory=None, clock=clock, rng=random.Random(seed))
    return TestClient(app)


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path):
    clock = Clock()
    with database_url(request.param, tmp_path) as url:
        client = make_client(url, clock)
        yield client, clock
        client.app.state.context.service.store.close()


@pytest.fixture
def sqlite_env(tmp_path: Path):
    clock = Clock()
    client = make_client(f"sqlite:///{tmp_path / 'm.db'}", clock)
    yield client, clock
    client.app.state.context.service.store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


IH = auth(INSTRUCTOR)


def signup(client: TestClient, name: str = "Ada", class_id: str = "algebra-1"
           ) -> tuple[dict[str, str], str]:
    h = auth(sign_up(client, name)["token"])
    code = join_code(client, IH, class_id)
    r = client.post("/api/sessions", json={"join_code": code, "tags": ["algebra"],
                                           "level": 3, "source": "client"}, headers=h)
    assert r.status_code == 201, r.text
    return h, r.json()["id"]


def post_mood(client: TestClient, clock: Clock, h: dict, sid: str, mood: dict | None,
              seconds: int, batch: int = 60) -> list[dict]:
    """Post one sample per second for `seconds`, advancing the clock; returns responses."""
    out = []
    for start in range(0, seconds, batch):
        samples = []
        for _ in range(min(batch, seconds - start)):
            clock.t += 1
            samples.append({"t": clock.t, "probs": mood} if mood else
                           {"t": clock.t, "face": False})
        r = client.post(f"/api/sessions/{sid}/samples", json={"samples": samples}, headers=h)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_end_to_end(env) -> None:
    client, clock = env
    h, sid = signup(client)
    assert client.get("/api/me", headers=h).json()["name"] == "Ada"
    # a brief negative moment: nothing
    responses = post_mood(client, clock, h, sid, NEUTRAL, 60) + \
        post_mood(client, clock, h, sid, SAD, 40)
    assert all(r["recommendation"] is None for r in responses)
    assert client.get(f"/api/sessions/{sid}/recommendation",
                      headers=h).json()["recommendation"] is None
    # persistent: one recommendation, explained
    responses = post_mood(client, clock, h, sid, SAD, 80, batch=10)
    recs = [r["recommendation"] for r in responses if r["recommendation"]]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["rule"] == "persistent_negative" and rec["status"] == "open"
    assert rec["reason"].startswith("You seemed discouraged for the last")
    assert rec["item"]["kind"] == rec["kind"] and rec["item"]["url"]
    assert rec["evidence"]["shares"]["sad"] > 0.7
    current = client.get(f"/api/sessions/{sid}/recommendation", headers=h).json()
    assert current["recommendation"]["id"] == rec["id"]
    # still negative: no second suggestion while one is open or in the cool-down
    assert all(r["recommendation"] is None for r in post_mood(client, clock, h, sid, SAD, 30))
    r = client.post(f"/api/recommendations/{rec['id']}/accept", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert client.post(f"/api/recommendations/{rec['id']}/accept", headers=h).status_code == 409
    # the mood lifts after accepting: the outcome is measured once the window is over
    post_mood(client, clock, h, sid, HAPPY, 140)
    store = client.app.state.context.service.store
    outcome = store.outcome(rec["id"])
    assert outcome is not None and outcome.reward == 1.0 and outcome.delta > 0.3
    r = client.post(f"/api/recommendations/{rec['id']}/feedback",
                    json={"value": "up", "comment": "that helped"}, headers=h)
    assert r.status_code == 200 and r.json()["value"] == 1
    # the learner's own views
    tl = client.get("/api/me/timeline", params={"session_id": sid}, headers=h).json()
    assert len(tl["samples"]) == 350 and tl["samples"][-1]["label"] == "happy"
    summary = client.get("/api/me/summary", headers=h).json()
    assert summary["recommendations"] == {"accepted": 1} and summary["helped"] == 1
    # the instructor's views
    classes = client.get("/api/classes", headers=IH).json()
    assert classes[0]["class_id"] == "algebra-1" and classes[0]["live"] == 1
    ov = client.get("/api/classes/algebra-1/overview", headers=IH).json()
    assert ov["learners"][0]["name"] == "Ada" and ov["learners"][0]["live"]
    assert ov["learners"][0]["current"]["label"] == "happy"
    kind = ov["outcomes"][rec["kind"]]
    assert kind["accepted"] == 1 and kind["helped"] == 1 and kind["thumbs_up"] == 1
    ct = client.get("/api/classes/algebra-1/timeline", params={"minutes": 10, "bucket": 30},
                    headers=IH).json()
    assert ct["points"] and ct["points"][-1]["probs"]["happy"] > 0.5
    # end, export, delete
    assert client.post(f"/api/sessions/{sid}/end", headers=h).json()["ended_at"] == clock.t
    r = client.post(f"/api/sessions/{sid}/samples",
                    json={"samples": [{"t": clock.t + 1, "probs": SAD}]}, headers=h)
    assert r.status_code == 409 and "ended" in r.json()["detail"]
    export = client.get("/api/me/export", headers=h).json()
    assert len(export["sessions"][0]["samples"]) == 350
    assert export["recommendations"][0]["id"] == rec["id"]
    assert export["feedback"][0]["comment"] == "that helped"
    deleted = client.delete("/api/me", headers=h).json()["deleted"]
    assert deleted["samples"] == 350 and deleted["learners"] == 1
    assert client.get("/api/me", headers=h).status_code == 401  # token gone with the data
    assert store.counts() == {k: 0 for k in store.counts()} | {"classes": 1}  # the class stays


def test_a_token_rotated_during_a_lookup_stays_revoked(sqlite_env, monkeypatch) -> None:
    """A request whose lookup of the old token is in flight while the instructor rotates it
    must not leave the old token working afterwards."""
    client, _ = sqlite_env
    h, _ = signup(client)
    svc = client.app.state.context.service.ingest
    old = h["Authorization"][7:]
    lid = svc.learner_for_token(old)
    real = svc.store.learner_by_token
    rotated: list[str] = []

    def racing(token: str):
        found = real(token)  # read the old row, then the instructor rotates the token
        if not rotated:
            rotated.append(svc.new_token(lid))
        return found

    monkeypatch.setattr(svc.store, "learner_by_token", racing)
    assert svc.learner_for_token(old) == lid  # this request was already under way
    monkeypatch.setattr(svc.store, "learner_by_token", real)
    assert svc.learner_for_token(old) is None
    assert client.get("/api/me", headers=h).status_code == 401
    assert client.get("/api/me", headers=auth(rotated[0])).status_code == 200


def test_a_rule_in_its_own_cooldown_costs_no_bandit_statistics(tmp_path: Path,
                                                              monkeypatch) -> None:
    """While the only rule that holds is in its own cool-down, a stored sample neither
    recommends nor scans the recommendations for the bandit."""
    clock = Clock()
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHORT_POLICY.replace("    min_duration: 8\n",
                                           "    min_duration: 8\n    cooldown: 600\n", 1))
    with make_client(f"sqlite:///{tmp_path / 'm.db'}", clock, policy=policy) as client:
        h, sid = signup(client)
        recs = [r["recommendation"] for r in post_mood(client, clock, h, sid, SAD, 20, batch=1)
                if r["recommendation"]]
        assert len(recs) == 1
        assert client.post(f"/api/recommendations/{recs[0]['id']}/dismiss",
                           headers=h).status_code == 200
        svc = client.app.state.context.service
        calls = []
        real = svc.store.responses
        monkeypatch.setattr(svc.store, "responses",
                            lambda *a, **k: calls.append(1) or real(*a, **k))
        out = post_mood(client, clock, h, sid, SAD, 60, batch=1)  # past the policy cool-down
        assert not any(r["recommendation"] for r in out) and calls == []
        client.app.state.context.service.store.close()


def test_the_dashboards_negative_share_follows_the_policys_attention_rule(
        tmp_path: Path) -> None:
    """What counts as negative on the dashboard is the policy's attention rule, not a list
    of emotions of its own; without an attention rule there is no negative share."""
    clock = Clock()
    only_sad = tmp_path / "sad.yaml"
    only_sad.write_text(SHORT_POLICY.replace("attention:\n  states: [angry, sad, fear]",
                                             "attention:\n  states: [sad]"))
    no_attention = tmp_path / "none.yaml"
    no_attention.write_text(SHORT_POLICY.split("attention:")[0])
    angry, sad = probs(angry=0.8), probs(sad=0.8)
    for policy, expected in ((only_sad, {"Ann": 0.0, "Sam": 1.0}),
                             (no_attention, {"Ann": None, "Sam": None})):
        with make_client(f"sqlite:///{tmp_path / policy.stem}.db", clock,
                         policy=policy) as client:
            for name, mood in (("Ann", angry), ("Sam", sad)):
                h, sid = signup(client, name)
                post_mood(client, clock, h, sid, mood, 5)
            ov = client.get("/api/classes/algebra-1/overview", headers=IH).json()
            assert {e["name"]: e["negative_share"] for e in ov["learners"]} == expected
            client.app.state.context.service.store.close()


def test_instructor_export_and_delete(sqlite_env) -> None:
    client, clock = sqlite_env
    h, sid = signup(client)
    post_mood(client, clock, h, sid, SAD, 10)
    lid = client.get("/api/me", headers=h).json()["learner_id"]
    assert client.get(f"/api/learners/{lid}/summary", headers=IH).json()["samples"] == 10
    assert len(client.get(f"/api/learners/{lid}/timeline", headers=IH).json()["samples"]) == 10
    assert client.get(f"/api/learners/{lid}/export", headers=IH).json()["learner"]["id"] == lid
    new = client.post(f"/api/learners/{lid}/token", headers=IH).json()["token"]
    assert client.get("/api/me", headers=h).status_code == 401  # old token revoked
    assert client.get("/api/me", headers=auth(new)).status_code == 200
    assert client.delete(f"/api/learners/{lid}", headers=IH).json()["deleted"]["samples"] == 10
    assert client.delete(f"/api/learners/{lid}", headers=IH).status_code == 404
    assert client.get(f"/api/learners/{lid}/export", headers=IH).status_code == 404


def test_auth_and_isolation(sqlite_env) -> None:
    client, clock = sqlite_env
    ha, sa = signup(client, "Ada")
    hb, sb = signup(client, "Bob")
    post_mood(client, clock, ha, sa, SAD, 100)
    rec = client.get(f"/api/sessions/{sa}/recommendation", headers=ha).json()["recommendation"]
    assert rec is not None
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=auth("nope")).status_code == 401
    assert client.get("/api/me", headers=auth("nope")).headers["www-authenticate"] == "Bearer"
    for path in ("/api/classes", "/api/classes/algebra-1/overview", "/api/learners/x/export"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=ha).status_code == 401  # a learner is no instructor
        assert client.get(path, headers=auth("wrong-instructor")).status_code == 401
    # Bob cannot reach Ada's session or recommendation (and cannot tell they exist)
    assert client.get(f"/api/sessions/{sa}/recommendation", headers=hb).status_code == 404
    r = client.post(f"/api/sessions/{sa}/samples",
                    json={"samples": [{"t": clock.t + 1, "probs": HAPPY}]}, headers=hb)
    assert r.status_code == 404
    assert client.post(f"/api/recommendations/{rec['id']}/accept", headers=hb).status_code == 404
    assert client.post(f"/api/recommendations/{rec['id']}/feedback", json={"value": "down"},
                       headers=hb).status_code == 404
    assert client.get("/api/me/timeline", params={"session_id": sa},
                      headers=hb).status_code == 404
    assert client.get("/api/me/timeline", headers=hb).json()["samples"] == []
    # choosing a learner id needs the instructor token
    assert client.post("/api/learners", json={"learner_id": "ada-1"}).status_code == 401
    assert sign_up(client, "Ada", IH, learner_id="ada-1")["learner_id"] == "ada-1"
    assert client.post("/api/learners", json={"learner_id": "ada-1", **consent_fields(client)},
                       headers=IH).status_code == 409


def test_closed_registration(tmp_path: Path) -> None:
    client = make_client(f"sqlite:///{tmp_path / 'm.db'}", Clock(), open_registration=False)
    assert client.post("/api/learners", json={"name": "x", **consent_fields(client)}
                       ).status_code == 401
    sign_up(client, "x", IH)


@pytest.mark.parametrize("body, words", [
    ({"samples": [{"t": T0 + 1, "probs": {**SAD, "sad": 1.5}}]}, "sad must be between 0 and 1"),
    ({"samples": [{"t": T0 + 1, "probs": {**SAD, "sad": -0.1}}]}, "between 0 and 1"),
    ({"samples": [{"t": T0 + 1, "probs": {"sad": 1.0}}]}, "all six emotions"),
    ({"samples": [{"t": T0 + 1, "probs": {**SAD, "bored": 0.0}}]}, "bored"),
    ({"samples": [{"t": T0 + 1, "probs": {**SAD, "sad": 0.2}}]}, "sum to 1"),
    ({"samples": [{"t": T0 + 1, "face": False, "probs": SAD}]}, "no probabilities"),
    ({"samples": [{"t": T0 + 1}]}, "all six emotions"),
    ({"samples": [{"t": "soon", "probs": SAD}]}, "valid number"),
    ({"samples": [{"t": T0 + 1, "probs": SAD, "image": "AAAA"}]}, "extra inputs"),
    ({"samples": [{"t": T0 + 1, "probs": SAD, "confidence": 2}]}, "confidence"),
    ({"samples": []}, "at least 1 item"),
    ({"samples": [{"t": T0 + 1 + i, "face": False} for i in range(601)]}, "at most 600"),
    ({"sample": []}, "samples: field required"),
    ({"samples": [{"t": T0 + 2, "probs": SAD}, {"t": T0 + 1, "probs": SAD}]},
     "not after the previous sample"),
    ({"samples": [{"t": T0 + 86_400, "probs": SAD}]}, "outside the session"),
    ({"samples": [{"t": T0 - 86_400, "probs": SAD}]}, "outside the session"),
])
def test_bad_samples_are_rejected_and_change_nothing(sqlite_env, body: dict, words: str) -> None:
    client, clock = sqlite_env
    h, sid = signup(client)
    store = client.app.state.context.service.store
    before = store.counts()
    # a batch whose first samples are fine is still rejected as a whole
    r = client.post(f"/api/sessions/{sid}/samples", json=body, headers=h)
    assert 400 <= r.status_code < 500
    assert words.lower() in r.json()["detail"].lower(), r.json()
    assert store.counts() == before


def test_malformed_and_oversized_requests(sqlite_env) -> None:
    client, clock = sqlite_env
    h, sid = signup(client)
    store = client.app.state.context.service.store
    before = store.counts()
    r = client.post(f"/api/sessions/{sid}/samples", content=b"{not json",
                    headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422 and "json" in r.json()["detail"].lower()
    big = {"samples": [{"t": T0 + 1, "probs": SAD, "confidence": 0.5}] * 3000}
    r = client.post(f"/api/sessions/{sid}/samples", json=big, headers=h)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert store.counts() == before
    assert client.post("/api/sessions", json={"class_id": "no spaces"},
                       headers=h).status_code == 422
    assert client.post("/api/sessions", json={"level": 9}, headers=h).status_code == 422
    assert client.post("/api/sessions", json={"tags": ["x" * 41]}, headers=h).status_code == 422
    assert client.post("/api/learners", json={"name": "x" * 101}).status_code == 422
    assert client.post(f"/api/sessions/{sid}/end", headers=h).status_code == 200
    assert client.post("/api/sessions/nope/end", headers=h).status_code == 404
    assert client.post("/api/recommendations/nope/accept", headers=h).status_code == 404
    r = client.post("/api/recommendations/nope/feedback", json={"value": "meh"}, headers=h)
    assert r.status_code == 422
    r = client.get("/api/classes/c/timeline", params={"minutes": 1440, "bucket": 1},
                   headers=IH)
    assert r.status_code == 422
    assert client.get("/api/me/timeline", params={"limit": 0}, headers=h).status_code == 422


def test_recommendations_expire_and_can_be_dismissed(sqlite_env) -> None:
    client, clock = sqlite_env
    h, sid = signup(client)
    post_mood(client, clock, h, sid, SAD, 100)
    rec = client.get(f"/api/sessions/{sid}/recommendation", headers=h).json()["recommendation"]
    clock.t += 601  # expire_after: 600 s
    assert client.get(f"/api/sessions/{sid}/recommendation",
                      headers=h).json()["recommendation"] is None
    assert client.post(f"/api/recommendations/{rec['id']}/accept", headers=h).status_code == 409
    post_mood(client, clock, h, sid, SAD, 100)
    rec2 = client.get(f"/api/sessions/{sid}/recommendation", headers=h).json()["recommendation"]
    assert rec2 is not None and rec2["id"] != rec["id"]
    assert rec2["item"]["id"] != rec["item"]["id"] or rec2["kind"] != rec["kind"]
    r = client.post(f"/api/recommendations/{rec2['id']}/dismiss", headers=h)
    assert r.json()["status"] == "dismissed"


def test_personalisation_learns_through_the_api(tmp_path: Path) -> None:
    """A learner whose mood lifts only after a break: the service learns to offer breaks."""
    clock = Clock()
    client = make_client(f"sqlite:///{tmp_path / 'm.db'}", clock, seed=3)
    h, sid = signup(client)
    kinds, pending = [], None
    for _ in range(24):
        rec = pending
        while rec is None:  # negative until a suggestion comes
            rec = post_mood(client, clock, h, sid, SAD, 10)[0]["recommendation"]
        kinds.append(rec["kind"])
        client.post(f"/api/recommendations/{rec['id']}/accept", headers=h)
        after = post_mood(client, clock, h, sid, HAPPY if rec["kind"] == "break" else SAD,
                          140, batch=20)
        # still negative after the cool-down: the next suggestion may come right away
        pending = next((r["recommendation"] for r in after if r["recommendation"]), None)
        if pending is None:
            clock.t += 200  # a pause (no samples) before the next episode
    assert kinds[-6:].count("break") >= 5, kinds
    assert kinds[:6].count("break") < 6
    lid = client.get("/api/me", headers=h).json()["learner_id"]
    assert client.get(f"/api/learners/{lid}/summary", headers=IH).json()["helped"] >= 5


def test_openapi_documents_the_api(sqlite_env) -> None:
    client, _ = sqlite_env
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/learners", "/api/sessions", "/api/sessions/{session_id}/samples",
              "/api/sessions/{session_id}/recommendation",
              "/api/recommendations/{rec_id}/accept", "/api/recommendations/{rec_id}/dismiss",
              "/api/recommendations/{rec_id}/feedback", "/api/me/timeline", "/api/me/summary",
              "/api/me/export", "/api/me", "/api/classes/{class_id}/overview",
              "/api/classes/{class_id}/timeline", "/api/learners/{learner_id}"):
        assert p in paths, p
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200
    assert "/api/ws-schema" in paths  # the WebSocket's messages, as a JSON Schema
    assert client.get("/api/health").json() == {"status": "ok", "analysis": False,
                                                "database": "sqlite"}


# --- the learner WebSocket ------------------------------------------------------------------

SHORT_POLICY = """\
version: 1
cooldown: 30
max_gap: 5
rules:
  - name: persistent_negative
    states: [angry, sad, fear]
    min_duration: 8
    kinds: {break: 0.5, encouragement: 0.5}
attention:
  states: [angry, sad, fear]
  min_duration: 5
"""


def jpeg(value: int = 80, size: tuple[int, int] = (64, 48), comment: bytes = b"") -> bytes:
    import cv2
    import numpy as np
    img = np.full((size[1], size[0], 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    data = buf.tobytes()
    if comment:  # a COM segment right after SOI: still a valid JPEG
        data = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
    return data


class FakeAnalyzer:
    """Says every frame shows one face with ``mood``; advances the fake clock 0.5 s."""

    mood: dict[str, float] = SAD

    def __init__(self, clock: Clock):
        self.clock = clock

    def analyze(self, frame, t):  # noqa: ANN001
        assert frame.ndim == 3 and frame.dtype.name == "uint8"
        self.clock.t += 0.5
        if frame.mean() > 250:  # a white frame: nobody there
            return []
        if frame.mean() < 5:
            raise RuntimeError("analyzer crashed")
        label = max(self.mood, key=self.mood.get)  # a confirmed face, its label decided
        return [Reading(t, tuple(self.mood[e] for e in EMOTIONS), self.mood[label],
                        track_id=1, box=(4, 4, 40, 40), shown_label=label)]


@pytest.fixture
def ws_env(tmp_path: Path):
    clock = Clock()
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHORT_POLICY)
    s = Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}", instructor_token=INSTRUCTOR,
                 policy=policy, max_frame_bytes=20_000, max_frame_side=1000,
                 max_frame_rate=1000)
    app = create_app(s, analyzer_factory=lambda: FakeAnalyzer(clock), clock=clock,
                     rng=random.Random(0))
    with TestClient(app) as client:
        yield client, clock, tmp_path
    app.state.context.service.store.close()


def hello(ws, h: dict, sid: str) -> dict:  # noqa: ANN001
    ws.send_json({"type": "hello", "token": h["Authorization"][7:], "session_id": sid})
    return ws.receive_json()


def test_ws_streams_emotions_and_pushes_a_recommendation(ws_env) -> None:
    client, clock, _ = ws_env
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        ready = hello(ws, h, sid)
        assert ready["type"] == "ready" and ready["analysis"] and ready["frame_rate"] == 2.0
        recs = []
        for i in range(30):
            ws.send_bytes(jpeg())
            while (msg := ws.receive_json())["type"] == "recommendation":  # pushed first
                recs.append((i, msg["recommendation"]))
            assert msg["type"] == "result" and msg["seq"] == i + 1
            assert msg["faces"][0]["smoothed_label"] == "sad"
            assert msg["current"]["label"] == "sad"
        assert len(recs) == 1, "one recommendation, pushed"
        i, rec = recs[0]
        assert 15 <= i <= 20  # after 8 s of sadness (a frame is 0.5 s), not before
        assert rec["reason"] == "You seemed down for the last 8 seconds"
        ws.send_bytes(jpeg(255))  # nobody in view
        msg = ws.receive_json()
        assert msg["faces"] == [] and msg["current"]["face"] is False
    assert client.post(f"/api/recommendations/{rec['id']}/accept", headers=h).status_code == 200
    store = client.app.state.context.service.store
    assert store.get_recommendation(rec["id"]).status == "accepted"
    # frames became downsampled samples: about one per second of (fake) time
    n = len(store.samples(session_id=sid))
    assert 10 <= n <= 17
    ov = client.get("/api/classes/algebra-1/overview", headers=IH).json()
    assert ov["learners"][0]["live"]


def test_ws_bad_frames_get_an_error_and_the_connection_stays(ws_env) -> None:
    import cv2
    import numpy as np
    client, clock, _ = ws_env
    h, sid = signup(client)
    wide_png = cv2.imencode(".png", np.zeros((10, 1200, 3), np.uint8))[1].tobytes()
    gif = b"GIF89a" + b"\x00" * 100
    bad = [(b"hello, not an image", "not a JPEG, PNG or WebP"),
           (gif, "not a JPEG, PNG or WebP"),
           (b"\xff\xd8\xff" + b"\x00" * 50, "not a readable JPEG"),
           (jpeg()[:60], "JPEG"),
           (jpeg(size=(400, 300)) + b"\x00" * 20_000, "too large (at most 20000)"),
           (wide_png, "1200x10 pixels is too large"),
           (jpeg(0), "could not be analysed")]
    with client.websocket_connect("/ws/learn") as ws:
        assert hello(ws, h, sid)["type"] == "ready"
        for data, words in bad:
            ws.send_bytes(data)
            msg = ws.receive_json()
            assert msg["type"] == "error" and words in msg["message"], (words, msg)
            ws.send_bytes(jpeg())  # the connection is still up and works
            assert ws.receive_json()["type"] == "result"
        ws.send_text("{not json")
        assert "unknown message" in ws.receive_json()["message"]
        ws.send_json({"type": "sample", "probs": {"sad": 2}})
        assert "all six emotions" in ws.receive_json()["message"]
        ws.send_bytes(jpeg())
        assert ws.receive_json()["type"] == "result"


def test_ws_needs_a_hello_with_a_valid_token_and_own_session(ws_env) -> None:
    from starlette.websockets import WebSocketDisconnect
    client, clock, _ = ws_env
    ha, sa = signup(client, "Ada")
    hb, sb = signup(client, "Bob")
    for first in ({"type": "frame"}, {"type": "hello", "token": "nope", "session_id": sa},
                  {"type": "hello", "token": hb["Authorization"][7:], "session_id": sa}):
        with client.websocket_connect("/ws/learn") as ws:
            ws.send_json(first)
            assert ws.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008


def test_ws_messages_follow_the_published_schema(ws_env) -> None:
    """Every message of a session, both ways, is valid under GET /api/ws-schema (the
    same document as messages.json_schema()), and the schema refuses malformed ones."""
    from wsschema import check_messages, is_valid

    from multinet_emotion.app.messages import json_schema
    client, clock, _ = ws_env
    schema = client.get("/api/ws-schema").json()
    assert schema == json_schema() and schema["$defs"]["ServerMessage"]["oneOf"]
    h, sid = signup(client)
    sent: list[dict] = []
    received: list[dict] = []
    with client.websocket_connect("/ws/learn") as ws:
        def send(m: dict) -> None:
            sent.append(m)
            ws.send_json(m)

        def receive() -> dict:
            received.append(ws.receive_json())
            return received[-1]

        send({"type": "hello", "token": h["Authorization"][7:], "session_id": sid})
        assert receive()["type"] == "ready"
        send({"type": "ping"})
        assert receive() == {"type": "pong"}
        for _ in range(25):  # sad frames: a recommendation is pushed on the way
            ws.send_bytes(jpeg())
            while receive()["type"] != "result":
                pass
        ws.send_bytes(b"junk")
        assert receive()["type"] == "error" and received[-1]["seq"] == 26
        ws.send_text("[1]")
        assert receive() == {"type": "error", "message": UNKNOWN}  # no "seq": null
        clock.t += 1
        send({"type": "sample", "probs": HAPPY, "confidence": 0.8})
        assert receive()["faces"] == []
        clock.t += 1
        send({"type": "sample", "face": False})
        assert receive()["current"]["face"] is False
    assert {m["type"] for m in received} == {"ready", "pong", "result", "recommendation",
                                            "error"}
    check_messages(schema, sent, received)
    result = next(m for m in received if m["type"] == "result" and m["faces"])
    assert is_valid(schema, "ServerMessage", result)
    for broken in ({**result, "seq": None}, {**result, "faces": [{"box": [1, 2]}]},
                   {k: v for k, v in result.items() if k != "type"},
                   {**result, "extra": 1}, {"type": "ready"}):
        assert not is_valid(schema, "ServerMessage", broken), broken
    for broken in ({"type": "hello", "token": 5, "session_id": sid},
                   {"type": "sample", "probs": HAPPY, "colour": "red"}, {"type": "frame"}):
        assert not is_valid(schema, "ClientMessage", broken), broken


UNKNOWN = 'unknown message; send image frames as binary, or {"type": "sample", ...}'


def test_ws_bad_messages_get_a_clear_error(ws_env) -> None:
    """Messages the models refuse are answered with what is wrong, never a traceback: a bad
    hello closes the connection (1008), a bad message after it does not."""
    from starlette.websockets import WebSocketDisconnect
    client, clock, _ = ws_env
    h, sid = signup(client)
    token = h["Authorization"][7:]
    for first in ("not json", "[1, 2]", '{"type": "hello", "token": 5, "session_id": "x"}',
                  '{"token": "' + token + '", "session_id": "' + sid + '"}', b"\xff\xd8\xff"):
        with client.websocket_connect("/ws/learn") as ws:
            if isinstance(first, bytes):
                ws.send_bytes(first)
            else:
                ws.send_text(first)
            assert ws.receive_json() == {
                "type": "error",
                "message": 'send {"type": "hello", "token": ..., "session_id": ...} first'}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        for message, words, seq in (
                ({"type": "sample", "probs": HAPPY, "colour": "red"},
                 "colour: Extra inputs are not permitted", 1),
                ({"type": "sample", "face": False, "probs": HAPPY},
                 "a sample without a face has no probabilities", 2),
                ({"type": "sample", "probs": HAPPY, "confidence": 2}, "confidence:", 3),
                ({"type": "hello", "token": token, "session_id": sid}, UNKNOWN, None),
                (None, UNKNOWN, None), ("sample", UNKNOWN, None)):
            ws.send_json(message)
            msg = ws.receive_json()
            assert msg["type"] == "error" and words in msg["message"], (message, msg)
            assert msg.get("seq") == seq
            ws.send_json({"type": "ping", "nonce": 1})  # extra fields of a ping: ignored
            assert ws.receive_json() == {"type": "pong"}
        clock.t += 1
        ws.send_json({"type": "sample", "probs": HAPPY})
        msg = ws.receive_json()
        assert msg["type"] == "result" and msg["seq"] == 4


def test_ws_without_analysis_accepts_client_samples(tmp_path: Path) -> None:
    clock = Clock()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token=INSTRUCTOR),
                     analyzer_factory=None, clock=clock)
    with TestClient(app) as client:
        assert client.get("/api/config").json()["analysis"] is False
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            ready = hello(ws, h, sid)
            assert ready["analysis"] is False and "switched off" in ready["analysis_note"]
            ws.send_bytes(jpeg())
            assert "unavailable" in ws.receive_json()["message"]
            clock.t += 1
            ws.send_json({"type": "sample", "probs": HAPPY})  # no label: the server's filter
            msg = ws.receive_json()  # ... reads a new face before it shows a label
            assert msg["type"] == "result" and msg["current"]["label"] is None
            clock.t += 1
            ws.send_json({"type": "sample", "probs": HAPPY})
            assert ws.receive_json()["current"]["label"] == "happy"
            clock.t += 1
            ws.send_json({"type": "sample", "probs": HAPPY, "label": "neutral"})
            msg = ws.receive_json()  # a page's own label (the same filter) is kept as it is
            assert (msg["current"]["label"], msg["current"]["share"]) == \
                ("neutral", pytest.approx(HAPPY["neutral"]))
            clock.t += 1
            ws.send_json({"type": "sample", "face": False})
            assert ws.receive_json()["current"]["face"] is False
    app.state.context.service.store.close()


def test_client_samples_are_normalised_alike_over_http_and_the_websocket(ws_env) -> None:
    """Probabilities that sum to about 1 (allowed) are stored summing to exactly 1, whichever
    way the client sends them."""
    client, clock, _ = ws_env
    sent = {e: p * 1.04 for e, p in HAPPY.items()}
    expected = {e: pytest.approx(p, abs=1e-4) for e, p in HAPPY.items()}
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        clock.t += 1
        ws.send_json({"type": "sample", "probs": sent})
        msg = ws.receive_json()
        assert msg["type"] == "result" and msg["current"]["probs"] == expected
    h2, sid2 = signup(client, "Bo")
    clock.t += 1
    r = client.post(f"/api/sessions/{sid2}/samples", headers=h2,
                    json={"samples": [{"t": clock.t, "probs": sent}]})
    assert r.status_code == 200
    svc = client.app.state.context.service.ingest
    assert svc.session(None, sid2).current.sample_json()["probs"] == expected
    for session_id in (sid, sid2):
        svc.end_session(svc.session(None, session_id).learner_id, session_id)
        [stored] = svc.store.samples(session_id=session_id)
        assert dict(zip(EMOTIONS, stored.probs())) == expected


def test_no_frame_reaches_disk_or_logs(ws_env, caplog: pytest.LogCaptureFixture) -> None:
    client, clock, tmp_path = ws_env
    marker = b"PRIVATE-FRAME-MARKER-1234"
    h, sid = signup(client)
    caplog.set_level("DEBUG")
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        for value in (80, 0, 80):  # a good frame, one that crashes the analyzer, a good one
            ws.send_bytes(jpeg(value, comment=marker))
            ws.receive_json()
        ws.send_bytes(b"junk" + marker)
        ws.receive_json()
    client.post(f"/api/sessions/{sid}/end", headers=h)
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert marker not in on_disk and b"\xff\xd8\xff" not in on_disk
    assert marker.decode() not in caplog.text and "JFIF" not in caplog.text
    assert "frame analysis failed: RuntimeError" in caplog.text


def test_ws_with_the_real_detector(tmp_path: Path, brightness_onnx_model: Path,
                                   face_drawing) -> None:  # noqa: ANN001
    """The real EmotionDetector (Haar faces + an ONNX model) behind the WebSocket."""
    import cv2
    import numpy as np

    from multinet_emotion.app.analysis import detector_factory
    factory, note = detector_factory(brightness_onnx_model)
    assert factory is not None, note
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHORT_POLICY)
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token=INSTRUCTOR, policy=policy),
                     analyzer_factory=factory)
    frame = np.tile(np.linspace(60, 180, 640).astype(np.uint8), (480, 1))
    face = cv2.resize(face_drawing(160), (165, 165), interpolation=cv2.INTER_CUBIC) * 0.45
    frame[100:265, 200:365] = face.astype(np.uint8)  # dark: the test model says "sad"
    data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))[1].tobytes()
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            assert hello(ws, h, sid)["analysis"] is True
            for _ in range(3):  # a face is reported once confirmed: its third frame
                ws.send_bytes(data)
                msg = ws.receive_json()
            assert msg["type"] == "result", msg
            assert len(msg["faces"]) == 1 and msg["faces"][0]["smoothed_label"] == "sad"
            x, y, w, hh = msg["faces"][0]["box"]
            assert 200 <= x + w / 2 <= 365 and 100 <= y + hh / 2 <= 265
            # three frames within a few milliseconds: not yet read long enough for a label
            assert msg["faces"][0]["shown_label"] is None and msg["current"]["label"] is None
            time.sleep(0.25)  # (the label filter weighs readings by the time they cover)
            ws.send_bytes(data)
            msg = ws.receive_json()
            assert msg["current"]["label"] == "sad" == msg["faces"][0]["shown_label"]
    app.state.context.service.store.close()


def test_detector_factory_without_a_model_says_why(tmp_path: Path) -> None:
    from multinet_emotion.app.analysis import detector_factory
    factory, note = detector_factory(tmp_path / "missing.onnx")
    assert factory is None and "model" in note


# --- the command line -------------------------------------------------------------------------

def test_serve_check_prints_where_to_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    from multinet_emotion.cli import main
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("MULTINET_INSTRUCTOR_TOKEN", raising=False)
    monkeypatch.delenv("MULTINET_DATABASE_URL", raising=False)
    assert main(["serve", "--check", "--no-analysis", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/learn" in out
    token = out.split("instructor token: ")[1].split()[0]
    assert len(token) >= 16 and f"/dashboard#token={token}" in out
    assert (tmp_path / "multinet-emotion" / "multinet.db").is_file()  # the default store
    assert "emotion analysis: off (" in out
    # where pictures are analysed, in words
    assert main(["serve", "--check", "--analysis", "server", "--frame-rate", "3"]) == 0
    assert "emotion analysis: on this server (the learner page sends 3 pictures a second" \
        in capsys.readouterr().out
    bad = tmp_path / "catalog.yaml"
    bad.write_text("items:\n  - id: a\n    title: A\n")
    assert main(["serve", "--check", "--catalog", str(bad)]) == 2
    assert f"{bad}:2: missing required field 'kind'" in capsys.readouterr().err
    monkeypatch.setenv("MULTINET_FRAME_RATE", "fast")
    assert main(["serve", "--check"]) == 2
    assert "MULTINET_FRAME_RATE='fast' is not a valid float" in capsys.readouterr().err
    monkeypatch.delenv("MULTINET_FRAME_RATE")
    assert main(["serve", "--check", "--no-analysis", "--frame-rate", "5",
                 "--max-frame-rate", "3"]) == 2
    assert "max frame rate 3 is below the frame rate 5" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    import socket

    from multinet_emotion.cli import main
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--no-analysis", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_end_to_end_from_the_command_line(tmp_path: Path) -> None:
    """`multinet-emotion serve` with its defaults (SQLite under XDG_DATA_HOME), over HTTP."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTINET_")}
    env.update(XDG_DATA_HOME=str(tmp_path), MULTINET_INSTRUCTOR_TOKEN=INSTRUCTOR)
    exe = Path(sys.executable).parent / "multinet-emotion"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=30) as c:
            assert "consent" in c.get("/learn").text.lower()
            assert c.get("/static/learner.js").status_code == 200
            token = sign_up(c, "Cli")["token"]
            h = auth(token)
            code = join_code(c, IH, "cli")
            sid = c.post("/api/sessions", json={"join_code": code}, headers=h).json()["id"]
            now = time.time()
            samples = [{"t": now - 99 + i, "probs": SAD} for i in range(100)]
            r = c.post(f"/api/sessions/{sid}/samples", json={"samples": samples}, headers=h)
            assert r.status_code == 422  # before the session started: refused
            start = time.time()
            batch = [{"t": start + k * 0.01, "probs": SAD} for k in range(25)]
            r = c.post(f"/api/sessions/{sid}/samples", json={"samples": batch}, headers=h)
            stored = r.json()["stored"]
            assert r.status_code == 200 and stored in (1, 2)  # downsampled to 1 per second
            tl = c.get("/api/me/timeline", headers=h).json()["samples"]
            # (a first second of only a few hundredths can still be "reading": no label)
            assert len(tl) == stored and tl[-1]["label"] == "sad"
            assert {x["label"] for x in tl} <= {"sad", None}
            ov = c.get("/api/classes/cli/overview", headers=auth(INSTRUCTOR)).json()
            assert ov["learners"][0]["name"] == "Cli"
            assert c.get("/api/classes", headers=h).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    # a token from the environment is never printed (it was, before)
    assert f"{base}/dashboard" in out and INSTRUCTOR not in out
    assert "from MULTINET_INSTRUCTOR_TOKEN" in out
    assert f"sqlite:///{tmp_path}/multinet-emotion/multinet.db" in out
    assert (tmp_path / "multinet-emotion" / "multinet.db").is_file()


def test_retention_deletes_old_samples(sqlite_env) -> None:
    client, clock = sqlite_env
    h, sid = signup(client)
    post_mood(client, clock, h, sid, SAD, 20)
    svc = client.app.state.context.service
    assert svc.housekeeping() == 0
    clock.t += 31 * 86_400  # past the 30-day retention period
    assert svc.housekeeping() == 20
    assert client.get("/api/me/timeline", headers=h).json()["samples"] == []


def test_ws_with_the_shipped_model_on_a_real_face(tmp_path: Path) -> None:
    """The default model (when installed) on a FER2013 test face behind the WebSocket."""
    import cv2
    import numpy as np
    from conftest import FER2013_DIR, _haar_finds

    from multinet_emotion.app.analysis import detector_factory
    factory, note = detector_factory(None)
    if factory is None:
        pytest.skip(f"no shipped model: {note}")
    faces = [img for p in sorted((FER2013_DIR / "test" / "happy").glob("*.jpg"))[:30]
             if (img := cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) is not None
             and img.std() > 30 and _haar_finds(img, 165)] if FER2013_DIR.is_dir() else []
    if not faces:
        pytest.skip("FER2013 test faces are not available")
    frame = np.tile(np.linspace(60, 180, 640).astype(np.uint8), (480, 1))
    frame[100:265, 200:365] = cv2.resize(faces[0], (165, 165), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))[1].tobytes()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token=INSTRUCTOR), analyzer_factory=factory)
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            assert hello(ws, h, sid)["analysis"] is True
            for _ in range(3):  # a face is reported once confirmed: its third frame
                ws.send_bytes(data)
                msg = ws.receive_json()
            assert msg["type"] == "result" and len(msg["faces"]) == 1, msg
            face = msg["faces"][0]
            assert face["smoothed_label"] in EMOTIONS
            assert sum(face["smoothed"].values()) == pytest.approx(1.0, abs=1e-3)
    app.state.context.service.store.close()


def test_frames_faster_than_allowed_are_skipped(tmp_path: Path) -> None:
    clock = Clock()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token=INSTRUCTOR, max_frame_rate=3),
                     analyzer_factory=lambda: FakeAnalyzer(clock), clock=clock)
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            hello(ws, h, sid)
            kinds = []
            for _ in range(8):  # as fast as possible: a burst of 3, then mostly refused
                ws.send_bytes(jpeg())
                kinds.append(ws.receive_json())
            refused = [m for m in kinds if "too many frames" in m.get("message", "")]
            assert 3 <= 8 - len(refused) <= 5
            import time
            time.sleep(0.5)  # the bucket refills: frames are welcome again
            ws.send_bytes(jpeg())
            assert ws.receive_json()["type"] == "result"
    app.state.context.service.store.close()


def test_the_frame_limit_follows_the_frame_rate(monkeypatch) -> None:
    """--frame-rate 20 must not have frames refused: the per-connection limit is derived from
    it (with headroom) unless set, and a limit below the frame rate is refused at start."""
    from multinet_emotion.app.sessions import routes as ws_module
    from multinet_emotion.errors import MultiNetError
    assert Settings().max_frame_rate == 10.0
    fast = Settings.from_env({"MULTINET_FRAME_RATE": "20"})
    assert fast.max_frame_rate is not None and fast.max_frame_rate >= 20 * 1.5
    assert Settings.from_env({"MULTINET_MAX_FRAME_RATE": "4"}).max_frame_rate == 4.0
    with pytest.raises(MultiNetError, match="below the frame rate"):
        Settings.from_env({"MULTINET_FRAME_RATE": "20", "MULTINET_MAX_FRAME_RATE": "10"})
    now = [0.0]
    monkeypatch.setattr(ws_module.time, "monotonic", lambda: now[0])
    bucket = ws_module._RateLimit(fast.max_frame_rate)
    taken = 0
    for i in range(200):  # 10 s at 20 frames per second, with jitter
        now[0] = i / 20 + (0.02 if i % 2 else 0.0)
        taken += bucket.take()
    assert taken == 200


def test_pages_are_self_contained_and_locked_down(sqlite_env) -> None:
    import re
    client, _ = sqlite_env
    for path in ("/", "/learn", "/dashboard"):
        r = client.get(path)
        assert r.status_code == 200
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert ref.startswith("/"), f"{path} loads {ref} from elsewhere"
            assert client.get(ref).status_code == 200, ref


def test_only_the_newest_waiting_frame_is_analysed(tmp_path: Path) -> None:
    """Frames sent faster than they are analysed: older waiting ones are skipped, answered."""
    import threading
    clock = Clock()
    gate = threading.Event()

    class Slow(FakeAnalyzer):
        def analyze(self, frame, t):  # noqa: ANN001
            gate.wait(10)
            return super().analyze(frame, t)

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token=INSTRUCTOR, max_frame_rate=100),
                     analyzer_factory=lambda: Slow(clock), clock=clock)
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            hello(ws, h, sid)
            for _ in range(4):  # 1 is being analysed; 2 and 3 are replaced by 4
                ws.send_bytes(jpeg())
            skipped = [ws.receive_json() for _ in range(2)]
            assert [m["seq"] for m in skipped] == [2, 3]
            assert all("newer frame" in m["message"] for m in skipped)
            gate.set()
            answers = [ws.receive_json() for _ in range(2)]
            assert [(m["type"], m["seq"]) for m in answers] == [("result", 1), ("result", 4)]
    app.state.context.service.store.close()


def test_ws_closes_when_the_session_ends_elsewhere(ws_env) -> None:
    from starlette.websockets import WebSocketDisconnect
    client, clock, _ = ws_env
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        ws.send_bytes(jpeg())
        assert ws.receive_json()["type"] == "result"
        assert client.post(f"/api/sessions/{sid}/end", headers=h).status_code == 200
        ws.send_bytes(jpeg())
        msg = ws.receive_json()
        assert msg["type"] == "error" and "has ended" in msg["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_ws_a_failing_store_answers_the_frame_and_keeps_the_connection(ws_env, monkeypatch,
                                                                      caplog) -> None:
    """A database error while storing one frame (not a ServiceError) gets an error answer for
    that frame, the type only in the log, and the next frame is analysed as usual."""
    from sqlalchemy.exc import OperationalError

    from multinet_emotion.app.service import NotFound
    client, clock, _ = ws_env
    svc = client.app.state.context.service.ingest
    h, sid = signup(client)
    failing = {"add_faces": 1, "add_samples": 0, "session": 0}  # calls that fail next
    secret = "SECRET-PAYLOAD"

    def flaky(name: str):
        real = getattr(svc, name)

        def call(*args, **kwargs):
            if failing[name]:
                failing[name] -= 1
                if name == "session":
                    raise NotFound("no session for this learner")
                raise OperationalError(secret, {}, Exception("database is locked"))
            return real(*args, **kwargs)
        return call

    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        for name in failing:
            monkeypatch.setattr(svc, name, flaky(name))
        ws.send_bytes(jpeg())
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["seq"] == 1
        assert "could not be stored" in msg["message"]
        ws.send_bytes(jpeg())
        msg = ws.receive_json()
        assert msg["type"] == "result" and msg["seq"] == 2 and msg["faces"]
        sample = {"type": "sample", "probs": dict.fromkeys(EMOTIONS, 1 / 6)}
        failing["add_samples"] = 1  # the same over the sample path
        ws.send_json(sample)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["seq"] == 3
        assert "could not be stored" in msg["message"]
        failing["session"] = 1  # a ServiceError while answering a sample: answered, kept
        ws.send_json(sample)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["seq"] == 4 and "no session" in msg["message"]
        clock.t += 1
        ws.send_json(sample)
        assert ws.receive_json()["type"] == "result"
    assert "OperationalError" in caplog.text and secret not in caplog.text


def test_ws_an_unexpected_error_closes_without_a_traceback(ws_env, monkeypatch) -> None:
    """An error outside the per-frame handling comes out of the task group as an exception
    group: the connection is told and closed (1011), not left to the ASGI server."""
    from starlette.websockets import WebSocketDisconnect

    from multinet_emotion.app.sessions import routes as ws_module
    client, _, _ = ws_env
    h, sid = signup(client)

    async def broken(self, text: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ws_module._Stream, "text", broken)
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        ws.send_json({"type": "ping"})
        msg = ws.receive_json()
        assert msg["type"] == "error" and "internal server error" in msg["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1011
