"""LTI 1.3 launches from a platform simulator on loopback (tests/ltisim.py: its own RSA key,
its JWKS over HTTP), through the app in-process: login, launch, every refusal (each a clear
page with a 4xx that changes nothing in the database), roles to pages, learner sign-in on
consent, the instructor's course-scoped dashboard token, Deep Linking, the JWKS, the key
file and frame-ancestors. The browser runs of the same flows: tests/test_lti_browser.py.

The tests that write the database (launches, nonces, learners, classes) run on SQLite and on
PostgreSQL (tests/dbutil.py: skipped unless MULTINET_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from dbutil import BACKENDS, database_url
from fastapi.testclient import TestClient
from ltisim import DL, INSTRUCTOR, LEARNER, LTI, Simulator, rsa_key

from multinet_emotion.app import Settings, create_app
from multinet_emotion.app.lti.spec import PlatformSpec

INSTRUCTOR_TOKEN = "lti-test-instructor-token"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = Simulator(tool_url="http://testserver")
    yield s
    s.close()


@pytest.fixture
def backend() -> str:
    """SQLite; the tests marked ``on_both`` take PostgreSQL too."""
    return "sqlite"


#: For tests that write the database: run them on SQLite and on PostgreSQL.
on_both = pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: Simulator, backend: str):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with database_url(backend, tmp_path) as url:
        settings = Settings(database_url=url, instructor_token=INSTRUCTOR_TOKEN,
                            signup_rate=0, session_rate=0)
        app = create_app(settings, analyzer_factory=None)
        assert app.state.context.service.store.dialect == backend
        app.state.context.lti.platforms.add(PlatformSpec(**sim.registration()))
        yield app
        app.state.context.service.store.close()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def counts(app) -> dict[str, int]:
    """Rows in every table the service and the tool write."""
    return app.state.context.service.store.counts() | app.state.context.lti.records.counts()


def login(client: TestClient, sim: Simulator, hint: str) -> tuple[str, str]:
    """The platform's login initiation; the tool's redirect to the platform's authorization
    endpoint (checked as the platform would); its nonce and state."""
    r = client.get("/lti/login", params=sim.login_params(hint), follow_redirects=False)
    assert r.status_code == 302, r.text
    where = urlsplit(r.headers["location"])
    q = {k: v[0] for k, v in parse_qs(where.query).items()}
    assert f"{where.scheme}://{where.netloc}{where.path}" == f"{sim.issuer}/auth"
    assert q["scope"] == "openid" and q["response_type"] == "id_token"
    assert q["response_mode"] == "form_post" and q["prompt"] == "none"
    assert q["client_id"] == sim.client_id and q["login_hint"] == f"login-{hint}"
    assert q["lti_message_hint"] == hint and q["redirect_uri"] == "http://testserver/lti/launch"
    assert f"lti1p3-{q['state']}" in client.cookies  # the state is bound to this browser
    return q["nonce"], q["state"]


def launch(client: TestClient, sim: Simulator, **prepare: Any):
    """A whole launch: login, then the id_token form-posted to the launch URL."""
    hint = sim.prepare(**prepare)
    nonce, state = login(client, sim, hint)
    form = {"id_token": sim.id_token(hint, nonce), "state": state}
    return client.post("/lti/launch", data=form, follow_redirects=False), form


# --- refusals ---------------------------------------------------------------------------------

def _refused(app, client: TestClient, sim: Simulator, status: int, title: str,
             **prepare: Any) -> None:
    hint = sim.prepare(**prepare)
    nonce, state = login(client, sim, hint)
    before = counts(app)
    r = client.post("/lti/launch", data={"id_token": sim.id_token(hint, nonce), "state": state},
                    follow_redirects=False)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert f'<h2 id="lti-error">{title}</h2>' in r.text
    assert counts(app) == before  # nothing stored, and the nonce is not used up either


@on_both
def test_bad_signature_is_refused(app, client, sim) -> None:
    other, _ = rsa_key()
    _refused(app, client, sim, 401, "Launch not trusted", _key=other)


@on_both
def test_wrong_audience_is_refused(app, client, sim) -> None:
    _refused(app, client, sim, 403, "Wrong audience", aud="another-tool")


@on_both
def test_expired_launch_is_refused(app, client, sim) -> None:
    now = int(time.time())
    _refused(app, client, sim, 401, "Launch expired", exp=now - 60, iat=now - 400)


def test_launch_without_expiry_is_refused(app, client, sim) -> None:
    _refused(app, client, sim, 400, "Launch refused", exp=None)


@on_both
def test_unknown_deployment_is_refused(app, client, sim) -> None:
    _refused(app, client, sim, 403, "Unknown deployment", **{LTI + "deployment_id": "other"})


def test_unknown_issuer_is_refused(app, client, sim) -> None:
    _refused(app, client, sim, 403, "Unknown platform", iss="https://unknown.example.org")
    before = counts(app)  # and at login
    params = sim.login_params(sim.prepare()) | {"iss": "https://unknown.example.org"}
    r = client.get("/lti/login", params=params, follow_redirects=False)
    assert r.status_code == 403 and "Unknown platform" in r.text
    assert counts(app) == before


@on_both
def test_replayed_nonce_is_refused(app, client, sim) -> None:
    first, form = launch(client, sim)
    assert first.status_code == 303
    before = counts(app)
    again = client.post("/lti/launch", data=form, follow_redirects=False)
    assert again.status_code == 401 and "Launch already used" in again.text
    assert counts(app) == before


@on_both
def test_replay_is_refused_by_another_process(app, client, sim, tmp_path) -> None:
    """The nonce is used up in the database: a second app on the same database (another
    server process) refuses the replay too."""
    first, form = launch(client, sim)
    assert first.status_code == 303
    other = create_app(app.state.context.settings, analyzer_factory=None)
    with TestClient(other) as c2:
        c2.cookies.update(client.cookies)
        r = c2.post("/lti/launch", data=form, follow_redirects=False)
    other.state.context.service.store.close()
    assert r.status_code == 401 and "Launch already used" in r.text


@on_both
def test_state_from_another_browser_is_refused(app, client, sim) -> None:
    hint = sim.prepare()
    nonce, state = login(client, sim, hint)
    before = counts(app)
    with TestClient(app) as stranger:  # no state cookie
        r = stranger.post("/lti/launch", data={"id_token": sim.id_token(hint, nonce),
                                               "state": state}, follow_redirects=False)
    assert r.status_code == 400 and "Launch not recognised" in r.text
    assert counts(app) == before


def test_not_a_launch(client) -> None:
    r = client.get("/lti/launch")
    assert r.status_code == 405 and "Not a launch" in r.text
    r = client.post("/lti/launch", data={"state": "x"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")


@on_both
def test_roles_without_a_page_and_launches_outside_a_course(app, client, sim) -> None:
    before = counts(app)
    r, _ = launch(client, sim, roles=["http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor"])
    assert r.status_code == 403 and "No page for your role" in r.text and "Mentor" in r.text
    r, _ = launch(client, sim, **{LTI + "context": None})
    assert r.status_code == 400 and "Not in a course" in r.text
    after = counts(app)
    assert after["learners"] == before["learners"] and after["classes"] == before["classes"]


# --- learners ---------------------------------------------------------------------------------

def _ticket(response) -> str:
    assert response.status_code == 303, response.text
    where = response.headers["location"]
    assert where.startswith("/learn#lti=")
    return where.split("#lti=", 1)[1]


@on_both
def test_learner_launch_stores_nothing_until_consent(app, client, sim) -> None:
    before = counts(app)
    ticket = _ticket(launch(client, sim, sub="learner-7", name="Grace H.")[0])
    after = counts(app)
    assert after["learners"] == before["learners"] and after["lti_users"] == 0
    assert after["classes"] == before["classes"] + 1  # the course's class, made at launch
    version = client.get("/api/consent").json()["version"]

    r = client.post("/lti/learner", json={"ticket": ticket, "consent": False})
    assert r.status_code == 422 and "nothing was stored" in r.json()["detail"]
    r = client.post("/lti/learner", json={"ticket": ticket + "x", "consent": True,
                                          "consent_version": version})
    assert r.status_code == 401
    assert counts(app) == after

    r = client.post("/lti/learner", json={"ticket": ticket, "consent": True,
                                          "consent_version": version})
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["created"] and me["name"] == "Grace H." and me["class_id"].startswith("lti-")
    assert counts(app)["learners"] == before["learners"] + 1
    assert counts(app)["lti_users"] == 1
    auth = {"Authorization": f"Bearer {me['token']}"}
    assert client.get("/api/me", headers=auth).json()["learner_id"] == me["learner_id"]
    session = client.post("/api/sessions", headers=auth,
                          json={"join_code": me["join_code"], "source": "camera"})
    assert session.status_code == 201 and session.json()["class_id"] == me["class_id"]

    # the next launch of the same user is the same learner; the earlier token stops working
    again = _ticket(launch(client, sim, sub="learner-7", name="Grace H.")[0])
    r = client.post("/lti/learner", json={"ticket": again, "consent": True,
                                          "consent_version": version})
    assert r.json()["learner_id"] == me["learner_id"] and not r.json()["created"]
    assert client.get("/api/me", headers=auth).status_code == 401
    assert counts(app)["lti_users"] == 1

    # deleting the learner's data removes their link to the platform's user too
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.delete("/api/me", headers=auth).status_code == 200
    assert counts(app)["lti_users"] == 0 and counts(app)["learners"] == before["learners"]


@on_both
def test_same_course_is_one_class(app, client, sim) -> None:
    a = jwt.decode(_ticket(launch(client, sim, sub="a")[0]), options={"verify_signature": False})
    b = jwt.decode(_ticket(launch(client, sim, sub="b")[0]), options={"verify_signature": False})
    c = jwt.decode(_ticket(launch(client, sim, sub="a", context="course-202")[0]),
                   options={"verify_signature": False})
    assert a["class_id"] == b["class_id"] != c["class_id"]


# --- instructors ------------------------------------------------------------------------------

@on_both
def test_instructor_launch_opens_the_course_dashboard(app, client, sim) -> None:
    r, _ = launch(client, sim, roles=INSTRUCTOR, sub="teacher-1")
    assert r.status_code == 303
    where = urlsplit(r.headers["location"])
    assert where.path == "/dashboard"
    class_id = parse_qs(where.query)["class"][0]
    token = where.fragment.removeprefix("token=")
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/classes", headers=auth)
    assert listed.status_code == 200 and [c["class_id"] for c in listed.json()] == [class_id]
    assert client.get(f"/api/classes/{class_id}/overview", headers=auth).status_code == 200
    assert client.get(f"/api/classes/{class_id}/timeline", headers=auth).status_code == 200

    # another class, learner data, and changes need the instructor token
    full = {"Authorization": f"Bearer {INSTRUCTOR_TOKEN}"}
    other = client.post("/api/classes", headers=full, json={"name": "Other"}).json()["class_id"]
    assert client.get(f"/api/classes/{other}/overview", headers=auth).status_code == 403
    assert client.post(f"/api/classes/{class_id}/code", headers=auth).status_code == 403
    assert client.get("/api/learners/x/summary", headers=auth).status_code == 403
    assert len(client.get("/api/classes", headers=full).json()) == 2
    # a tampered token, or one whose platform was removed, opens nothing
    assert client.get("/api/classes", headers={
        "Authorization": f"Bearer {token[:-4]}AAAA"}).status_code == 401
    app.state.context.lti.platforms.remove(sim.issuer)
    assert client.get("/api/classes", headers=auth).status_code == 401


# --- deep linking -----------------------------------------------------------------------------

@on_both
def test_deep_linking_returns_a_signed_response(app, client, sim) -> None:
    r, _ = launch(client, sim, roles=INSTRUCTOR, deep_link=True)
    assert r.status_code == 200 and "Add MultiNetEmotion to Course course-101" in r.text
    launch_id = r.text.split('name="launch_id" value="', 1)[1].split('"', 1)[0]
    r = client.post("/lti/deep-link", data={"launch_id": launch_id, "place": "1"})
    assert r.status_code == 200
    assert f'action="{sim.issuer}/deep-link-return"' in r.text
    signed = r.text.split('name="JWT" value="', 1)[1].split('"', 1)[0]
    keys = client.get("/lti/jwks").json()
    header = jwt.get_unverified_header(signed)
    key = next(k for k in keys["keys"] if k["kid"] == header["kid"])
    body = jwt.decode(signed, jwt.PyJWK(key).key, algorithms=["RS256"], audience=sim.issuer)
    assert body["iss"] == sim.client_id
    assert body[LTI + "message_type"] == "LtiDeepLinkingResponse"
    assert body[LTI + "version"] == "1.3.0"
    assert body[LTI + "deployment_id"] == sim.deployment_id
    assert body[DL + "data"] == "opaque-platform-data"
    [item] = body[DL + "content_items"]
    assert item["type"] == "ltiResourceLink" and item["url"] == "http://testserver/lti/launch"
    # a page answers once
    again = client.post("/lti/deep-link", data={"launch_id": launch_id, "place": "1"})
    assert again.status_code == 400 and "Nothing to add" in again.text


def test_deep_linking_cancelled_and_learners_cannot(app, client, sim) -> None:
    r, _ = launch(client, sim, roles=INSTRUCTOR, deep_link=True)
    launch_id = r.text.split('name="launch_id" value="', 1)[1].split('"', 1)[0]
    r = client.post("/lti/deep-link", data={"launch_id": launch_id, "place": "0"})
    signed = r.text.split('name="JWT" value="', 1)[1].split('"', 1)[0]
    assert jwt.decode(signed, options={"verify_signature": False})[DL + "content_items"] == []
    r, _ = launch(client, sim, roles=LEARNER, deep_link=True)
    assert r.status_code == 403 and "No page for your role" in r.text


# --- keys, JWKS, frame-ancestors --------------------------------------------------------------

def test_jwks_publishes_the_public_key_only(client) -> None:
    r = client.get("/lti/jwks")
    assert r.status_code == 200
    [key] = r.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"] and key["n"] and key["e"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


def test_key_file_is_made_once_readable_by_its_owner_only(app, client, tmp_path) -> None:
    path = tmp_path / "data" / "multinet-emotion" / "lti-private-key.pem"
    assert not path.exists()  # made at the first LTI request, not at start-up
    kid = client.get("/lti/jwks").json()["keys"][0]["kid"]
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    again = create_app(app.state.context.settings, analyzer_factory=None)
    with TestClient(again) as c2:
        assert c2.get("/lti/jwks").json()["keys"][0]["kid"] == kid  # kept, not replaced
    again.state.context.service.store.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_frame_ancestors_allow_only_registered_platforms(app, client, sim) -> None:
    csp = client.get("/learn").headers["content-security-policy"]
    assert csp.endswith(f"frame-ancestors {sim.issuer}")
    assert "frame-ancestors" in client.get("/dashboard").headers["content-security-policy"]


def test_frame_ancestors_none_without_platforms(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}",
                              instructor_token=INSTRUCTOR_TOKEN), analyzer_factory=None)
    with TestClient(app) as c:
        assert c.get("/learn").headers["content-security-policy"].endswith(
            "frame-ancestors 'none'")
    app.state.context.service.store.close()


# --- hardening: single-use tickets, dashboard tokens revoked with the instructor token, and
# --- a bounded, rate-limited login ---------------------------------------------------------

@on_both
def test_a_learner_ticket_is_traded_for_a_token_once(app, client, sim) -> None:
    ticket = _ticket(launch(client, sim, sub="learner-9")[0])
    version = client.get("/api/consent").json()["version"]
    body = {"ticket": ticket, "consent": True, "consent_version": version}
    first = client.post("/lti/learner", json=body)
    assert first.status_code == 200, first.text
    before = counts(app)
    again = client.post("/lti/learner", json=body)
    assert again.status_code == 401 and "used already" in again.json()["detail"]
    assert counts(app) == before
    auth = {"Authorization": f"Bearer {first.json()['token']}"}
    assert client.get("/api/me", headers=auth).status_code == 200  # the first token works


@on_both
def test_replacing_the_instructor_token_revokes_dashboard_tokens(app, client, sim) -> None:
    r, _ = launch(client, sim, roles=INSTRUCTOR, sub="teacher-2")
    token = urlsplit(r.headers["location"]).fragment.removeprefix("token=")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/classes", headers=auth).status_code == 200
    from dataclasses import replace
    restarted = create_app(replace(app.state.context.settings, instructor_token="a-new-token-123"),
                           analyzer_factory=None)
    with TestClient(restarted) as c2:
        assert c2.get("/api/classes", headers=auth).status_code == 401
    restarted.state.context.service.store.close()
    same = create_app(app.state.context.settings, analyzer_factory=None)  # a restart, same token
    with TestClient(same) as c3:
        assert c3.get("/api/classes", headers=auth).status_code == 200
    same.state.context.service.store.close()


def test_logins_are_rate_limited_and_what_they_store_is_bounded(app, client, sim,
                                                                  monkeypatch) -> None:
    from multinet_emotion.app.lti import launch as launch_module
    from multinet_emotion.app.ratelimit import RateLimiter
    app.state.context.limits["lti_login"] = RateLimiter(5)
    params = sim.login_params(sim.prepare(sub="x"))
    codes = [client.get("/lti/login", params=params, follow_redirects=False).status_code
             for _ in range(7)]
    assert codes == [302] * 5 + [429, 429]
    records = app.state.context.lti.records
    pending = records.count_values()
    assert 5 <= pending <= 10
    with records.store.session() as s:  # a login's values live minutes, not an hour
        from multinet_emotion.app.lti.store import LtiValue
        longest = max(v.expires_at for v in s.query(LtiValue).all())
    assert longest <= time.time() + launch_module.LOGIN_LIFETIME + 5
    app.state.context.limits["lti_login"] = RateLimiter(0)
    monkeypatch.setattr(launch_module, "MAX_PENDING_VALUES", pending)
    before = counts(app)
    r = client.get("/lti/login", params=params, follow_redirects=False)
    assert r.status_code == 503 and "Too many launches" in r.text
    assert counts(app) == before
    assert Settings().lti_login_rate == 60


@pytest.mark.parametrize("origin", ["https://a.example frame-ancestors *",
                                    "https://a.example;script-src *", "https://a.example,*",
                                    "https://a.exa'mple", "https://*.example", "*"])
def test_frame_origins_are_strictly_origins(origin: str) -> None:
    from multinet_emotion.app.lti.spec import PlatformSpec
    from multinet_emotion.errors import MultiNetError
    good = {"issuer": "https://lms.example", "client_id": "c", "deployment_ids": ["d"],
            "auth_login_url": "https://lms.example/auth",
            "auth_token_url": "https://lms.example/token",
            "key_set_url": "https://lms.example/jwks"}
    with pytest.raises(MultiNetError, match="not an origin|space, quote"):
        PlatformSpec(**good, frame_origins=[origin])
    assert PlatformSpec(**good, frame_origins=["https://x.example:8443"]).frame_origins == [
        "https://x.example:8443"]


def test_a_stored_bad_origin_never_reaches_the_csp(app, client, sim) -> None:
    records = app.state.context.lti.records  # the registration API checks: a row written by hand
    from multinet_emotion.app.lti.store import LtiPlatform
    with records.store.session() as s:
        p = s.query(LtiPlatform).first()
        p.frame_origins = ["https://a.example frame-ancestors *"] + list(p.frame_origins)
    app.state.context.lti._origins = (float("-inf"), [])  # read the registrations again
    csp = client.get("/learn").headers["content-security-policy"]
    assert csp.endswith(f"frame-ancestors {sim.issuer}") and "*" not in csp
