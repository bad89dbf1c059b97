"""Classes the instructor creates (join codes that expire and rotate), rate limits on sign-up
and session creation, and consent before anything about a learner is stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from apiutil import consent_fields, join_code, sign_up
from dbutil import BACKENDS, database_url
from test_api import IH, T0, Clock, auth, make_client

from multinet_emotion.app.ratelimit import RateLimiter
from multinet_emotion.app.store import JOIN_ALPHABET, Store, migrations_path, normalise_join_code

STATIC = Path(__file__).resolve().parents[1] / "src" / "multinet_emotion" / "app" / "static"


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path):
    clock = Clock()
    with database_url(request.param, tmp_path) as url:
        client = make_client(url, clock)
        yield client, clock
        client.app.state.context.service.store.close()


def test_learners_join_only_classes_the_instructor_created(env) -> None:
    client, _ = env
    store = client.app.state.context.service.store
    assert client.get("/api/classes").status_code == 401  # the instructor's
    assert client.post("/api/classes", json={"name": "x"}).status_code == 401
    r = client.post("/api/classes", json={"name": "Algebra 1 (B)"}, headers=IH)
    assert r.status_code == 201, r.text
    algebra = r.json()
    assert algebra["class_id"] == "algebra-1-b" and algebra["code_expires_at"] is None
    code = algebra["join_code"]
    assert len(code) == 8 and set(code) <= set(JOIN_ALPHABET)
    h = auth(sign_up(client, "Ada")["token"])
    # an invented code: a clear refusal, nothing stored, and the class list does not grow
    before = store.counts()
    for typed in ("ZZZZ-ZZZZ", "algebra-1-b", "-"):
        r = client.post("/api/sessions", json={"join_code": typed}, headers=h)
        assert r.status_code == 404, r.text
        assert r.json()["detail"].startswith("No class has the code")
        assert "ask your teacher for the current code" in r.json()["detail"]
    r = client.get("/api/join/ZZZZZZZZ")
    assert r.status_code == 404 and "ZZZZZZZZ" in r.json()["detail"]
    r = client.post("/api/sessions", json={"class_id": "invented"}, headers=h)
    assert r.status_code == 422 and "join code" in r.json()["detail"]
    assert store.counts() == before
    assert [c["class_id"] for c in client.get("/api/classes", headers=IH).json()] == \
        ["algebra-1-b"]
    # the code as a learner may type it: any case, with a dash or spaces
    typed = f" {code[:4].lower()}-{code[4:]} "
    assert client.get(f"/api/join/{typed.strip()}").json()["name"] == "Algebra 1 (B)"
    r = client.post("/api/sessions", json={"join_code": typed}, headers=h)
    assert r.status_code == 201 and r.json()["class_id"] == "algebra-1-b"
    listed = client.get("/api/classes", headers=IH).json()[0]
    assert listed["join_code"] == code and listed["learners"] == 1
    # a class id that is taken, when given, is refused; from a name, it gets a suffix
    assert client.post("/api/classes", json={"name": "x", "class_id": "algebra-1-b"},
                       headers=IH).status_code == 409
    r = client.post("/api/classes", json={"name": "Algebra 1 B"}, headers=IH)
    assert r.json()["class_id"] == "algebra-1-b-2" and r.json()["join_code"] != code


def test_expired_codes_and_rotation(env) -> None:
    client, clock = env
    store = client.app.state.context.service.store
    code = join_code(client, IH, "bio", "Biology", expires_in_days=2)
    h = auth(sign_up(client)["token"])
    assert client.post("/api/sessions", json={"join_code": code}, headers=h).status_code == 201
    clock.t = T0 + 2 * 86_400 + 1  # the code has expired
    before = store.counts()
    r = client.post("/api/sessions", json={"join_code": code}, headers=h)
    assert r.status_code == 410, r.text
    assert r.json()["detail"].startswith("This code expired on ")
    assert "UTC" in r.json()["detail"] and "current code" in r.json()["detail"]
    assert client.get(f"/api/join/{code}").status_code == 410
    assert store.counts() == before
    listed = client.get("/api/classes", headers=IH).json()[0]
    assert listed["code_expired"] is True
    # a new code (without expiry) works at once; the old one is unknown from then on
    r = client.post("/api/classes/bio/code", headers=IH)
    assert r.status_code == 200, r.text
    new = r.json()["join_code"]
    assert new != code and r.json()["code_expires_at"] is None
    assert client.post("/api/sessions", json={"join_code": new}, headers=h).status_code == 201
    r = client.post("/api/sessions", json={"join_code": code}, headers=h)
    assert r.status_code == 404 and "ask your teacher" in r.json()["detail"]
    r = client.post("/api/classes/bio/code", json={"expires_in_days": 1}, headers=IH)
    assert r.json()["code_expires_at"] == pytest.approx(clock.t + 86_400)
    assert client.post("/api/classes/nope/code", headers=IH).status_code == 404
    # an ended class: its code stops working; its data stays listed
    ended = client.post("/api/classes/bio/end", headers=IH).json()
    assert ended["ended_at"] == clock.t and ended["learners"] == 1
    r = client.post("/api/sessions", json={"join_code": r.json()["join_code"]}, headers=h)
    assert r.status_code == 410 and "has ended" in r.json()["detail"]
    assert client.post("/api/classes/bio/code", headers=IH).status_code == 409
    assert client.get("/api/classes/bio/overview", headers=IH).json()["learners"]


def test_join_codes_are_read_as_people_type_them() -> None:
    assert normalise_join_code(" abcd-efgh ") == "ABCDEFGH"
    assert normalise_join_code("ab cd_ef.gh") == "ABCDEFGH"
    assert not set("01ILO") & set(JOIN_ALPHABET)


def test_the_limiter_counts_a_sliding_minute() -> None:
    now = [0.0]
    limit = RateLimiter(3, clock=lambda: now[0])
    assert [limit.hit("a") for _ in range(3)] == [None, None, None]
    assert limit.hit("a") == 60  # the oldest leaves the window in 60 s
    assert limit.hit("b") is None  # per client
    now[0] = 30.5
    assert limit.hit("a") == 30  # refused ones are not counted: still the same oldest
    now[0] = 60.0  # the first three have left the window
    assert [limit.hit("a") for _ in range(4)] == [None, None, None, 60]
    now[0] = 119.9
    assert limit.hit("a") == 1  # whole seconds, rounded up
    assert all(RateLimiter(0).hit("a") is None for _ in range(100))  # 0: off
    small = RateLimiter(1, clock=lambda: now[0], max_keys=2)
    for key in "xyz":
        small.hit(key)
    assert len(small._hits) == 2  # bounded, whatever the number of clients


def test_sign_up_and_session_creation_are_rate_limited(tmp_path: Path) -> None:
    client = make_client(f"sqlite:///{tmp_path / 'm.db'}", Clock(), signup_rate=2,
                         session_rate=2)
    store = client.app.state.context.service.store
    consent = consent_fields(client)
    tokens = [sign_up(client, f"L{i}")["token"] for i in range(2)]
    before = store.counts()
    r = client.post("/api/learners", json={"name": "L3", **consent})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "too many sign-ups" in r.json()["detail"] and "try again in" in r.json()["detail"]
    assert store.counts() == before
    sign_up(client, "By the instructor", IH)  # the instructor token is not limited
    code = join_code(client, IH, "c")
    h = auth(tokens[0])
    for _ in range(2):
        assert client.post("/api/sessions", json={"join_code": code},
                           headers=h).status_code == 201
    before = store.counts()
    r = client.post("/api/sessions", json={"join_code": code}, headers=auth(tokens[1]))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "too many sessions" in r.json()["detail"]
    assert store.counts() == before
    client.app.state.context.service.store.close()


def test_the_limits_are_settings() -> None:
    from multinet_emotion.app import Settings
    s = Settings.from_env({"MULTINET_SIGNUP_RATE": "5", "MULTINET_SESSION_RATE": "0"})
    assert (s.signup_rate, s.session_rate) == (5, 0)
    assert (Settings().signup_rate, Settings().session_rate) == (10, 30)


def test_sign_up_needs_consent_and_stores_nothing_without_it(env) -> None:
    client, clock = env
    store = client.app.state.context.service.store
    consent = client.get("/api/consent").json()
    before = store.counts()
    for body, status, words in [
            ({"name": "Ada"}, 422, "needs your consent"),
            ({"name": "Ada", "consent": False}, 422, "needs your consent"),
            ({"name": "Ada", "consent": "true", "consent_version": consent["version"]}, 422,
             "consent"),  # a string is not an agreement
            ({"name": "Ada", "consent": True}, 422, "consent_version is missing"),
            ({"name": "Ada", "consent": True, "consent_version": "1-old"}, 409, "changed")]:
        r = client.post("/api/learners", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["detail"]
        if body.get("consent") != "true":
            assert "nothing was stored" in r.json()["detail"]
    assert store.counts() == before
    me = sign_up(client, "Ada")
    row = store.get_learner(me["learner_id"])
    assert row.consent_at == clock.t and row.consent_version == consent["version"]
    export = client.get("/api/me/export", headers=auth(me["token"])).json()
    assert export["learner"]["consent_version"] == consent["version"]
    assert export["learner"]["consent_at"] == clock.t


def test_the_consent_text_says_what_the_instructor_gets(tmp_path: Path) -> None:
    client = make_client(f"sqlite:///{tmp_path / 'm.db'}", Clock(), retention_days=14)
    consent = client.get("/api/consent").json()
    text = " ".join(f"{i['title']}: {i['text']}" for i in consent["items"])
    for words in ("with your name", "current expression", "mix of expressions",
                  "share of negative", "whether they helped", "export your per-second timeline",
                  "No image is stored", "deleted after 14 days",
                  "download or delete everything stored about you at any time",
                  "If you do not agree, nothing about you is stored",
                  "(angry, afraid, happy, neutral, sad or surprised)"):
        assert words in text, words
    # the version follows the text: another retention period is another text
    other = make_client(f"sqlite:///{tmp_path / 'o.db'}", Clock(), retention_days=30)
    assert other.get("/api/consent").json()["version"] != consent["version"]
    # the page shows the server's text, and no longer the understated one
    html = (STATIC / "learner.html").read_text()
    assert "a class overview and whether suggestions" not in html
    assert 'id="consent-items"' in html and 'id="decline"' in html
    # learning records are named only where a record store is configured
    assert "learning record store" not in text
    lrs = make_client(f"sqlite:///{tmp_path / 'l.db'}", Clock(), retention_days=14,
                      lrs_url="http://127.0.0.1:9/xAPI/")
    with_lrs = lrs.get("/api/consent").json()
    lrs_text = " ".join(i["text"] for i in with_lrs["items"])
    assert "learning record store" in lrs_text and "only if you turn on sharing" in lrs_text
    assert "Records already sent stay in that store when you delete your data" in lrs_text
    assert with_lrs["version"] != consent["version"]
    for c in (client, other, lrs):
        c.app.state.context.service.store.close()


def _database_at_0002(path: Path) -> None:
    """A database as 0002 left it, with learners and sessions in two invented classes."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_path()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO learners VALUES ('old-ada', 'Ada', 'h1', 100.0)")
    db.execute("INSERT INTO learners VALUES ('old-bob', 'Bob', 'h2', 100.0)")
    for i, (learner, cls, t) in enumerate([("old-ada", "algebra-1", 200.0),
                                           ("old-bob", "algebra-1", 300.0),
                                           ("old-bob", "history", 400.0)]):
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, '[]', NULL, 'camera', ?, ?)",
                   (f"s{i}", learner, cls, t, t + 60))
    db.commit()
    db.close()


def test_an_old_database_keeps_its_classes_visible(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _database_at_0002(path)
    client = make_client(f"sqlite:///{path}", Clock())  # create_app migrates to the head
    classes = {c["class_id"]: c for c in client.get("/api/classes", headers=IH).json()}
    assert set(classes) == {"algebra-1", "history"}
    assert classes["algebra-1"]["learners"] == 2 and classes["algebra-1"]["created_at"] == 200.0
    codes = [c["join_code"] for c in classes.values()]
    assert len(set(codes)) == 2 and all(len(c) == 8 for c in codes)
    overview = client.get("/api/classes/algebra-1/overview", headers=IH).json()
    assert overview["class_id"] == "algebra-1"
    store: Store = client.app.state.context.service.store
    assert store.get_learner("old-ada").consent_at is None  # signed up before: not made up
    # and the old class can be joined with its new code
    h = auth(sign_up(client)["token"])
    r = client.post("/api/sessions", json={"join_code": classes["history"]["join_code"]},
                    headers=h)
    assert r.status_code == 201 and r.json()["class_id"] == "history"
    store.close()


# --- consent follows what it covers: a changed text is agreed to again before anything more --

@pytest.mark.parametrize("change", [{"analysis": "server"},
                                    {"lrs_url": "http://127.0.0.1:9/xAPI/"}])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_changed_consent_is_asked_again_before_anything_more_is_stored(
        tmp_path: Path, backend: str, change: dict) -> None:
    clock = Clock()
    with database_url(backend, tmp_path) as url:
        before = make_client(url, clock, analysis="browser")  # "no picture leaves your device"
        me = sign_up(before)
        h = auth(me["token"])
        code = join_code(before, IH, "algebra-1")
        old = before.post("/api/sessions", json={"join_code": code}, headers=h).json()["id"]
        old_version = before.get("/api/consent").json()["version"]
        before.app.state.context.service.store.close()
        # the operator changes what the consent covers, and restarts
        after = make_client(url, clock, **({"analysis": "browser"} | change))
        consent = after.get("/api/consent").json()
        assert consent["version"] != old_version
        assert consent["covers"]["analysis"] == change.get("analysis", "browser")
        assert consent["covers"]["learning_records"] == ("lrs_url" in change)
        store = after.app.state.context.service.store
        counts = store.counts()
        me_now = after.get("/api/me", headers=h).json()
        assert me_now["consent_version"] == old_version and me_now["consent_current"] is False
        r = after.post("/api/sessions", json={"join_code": code}, headers=h)
        assert r.status_code == 403 and "consent needed" in r.json()["detail"], r.text
        assert "POST /api/me/consent" in r.json()["detail"]
        clock.t += 1
        r = after.post(f"/api/sessions/{old}/samples", headers=h,
                       json={"samples": [{"t": clock.t, "face": False}]})
        assert r.status_code == 403 and "consent needed" in r.json()["detail"], r.text
        with after.websocket_connect("/ws/learn") as ws:
            ws.send_json({"type": "hello", "token": me["token"], "session_id": old})
            msg = ws.receive_json()
            assert msg["type"] == "error" and "consent needed" in msg["message"], msg
        assert store.counts() == counts  # nothing stored
        # the page asks again; the answer is recorded; an old or missing version is not one
        r = after.post("/api/me/consent", headers=h,
                       json={"consent": True, "consent_version": old_version})
        assert r.status_code == 409 and "changed" in r.json()["detail"]
        r = after.post("/api/me/consent", headers=h, json={"consent": False})
        assert r.status_code == 422
        assert after.post("/api/me/consent", json={"consent": True, "consent_version":
                                                   consent["version"]}).status_code == 401
        clock.t += 5
        r = after.post("/api/me/consent", headers=h,
                       json={"consent": True, "consent_version": consent["version"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"learner_id": me["learner_id"],
                            "consent_version": consent["version"], "consent_at": clock.t}
        row = store.get_learner(me["learner_id"])
        assert (row.consent_version, row.consent_at) == (consent["version"], clock.t)
        assert after.get("/api/me", headers=h).json()["consent_current"] is True
        assert after.post("/api/sessions", json={"join_code": code},
                          headers=h).status_code == 201
        clock.t += 1
        assert after.post(f"/api/sessions/{old}/samples", headers=h, json={
            "samples": [{"t": clock.t, "face": False}]}).status_code == 200
        store.close()


def test_the_learner_page_records_a_returning_learners_agreement() -> None:
    join = (STATIC / "learner-join.js").read_text()
    assert '"/api/me/consent"' in join
