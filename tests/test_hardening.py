"""Findings of a hostile test of the web service, each pinned down: revoked tokens end open
connections, the instructor token is kept private, strict sample types and times, ended
sessions at hello, WebSocket origins, decompression bombs; and property-based checks that
random input to the WebSocket and the API never gives a 5xx, a traceback or a changed
database."""

from __future__ import annotations

import json
import logging
import random
import stat
import struct
import zlib
from pathlib import Path

import pytest
from apiutil import join_code, sign_up
from dbutil import BACKENDS, database_url
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect
from test_api import (
    HAPPY,
    IH,
    INSTRUCTOR,
    SAD,
    SHORT_POLICY,
    T0,
    Clock,
    FakeAnalyzer,
    auth,
    hello,
    jpeg,
    signup,
)

from multinet_emotion.app import Settings, create_app
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError


def make_app(tmp_path: Path, clock: Clock, **overrides):  # noqa: ANN201
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHORT_POLICY)
    s = Settings(**{"database_url": f"sqlite:///{tmp_path / 'm.db'}",
                    "instructor_token": INSTRUCTOR, "policy": policy,
                    "max_frame_bytes": 20_000, "max_frame_side": 1000, "max_frame_rate": 1000,
                    "signup_rate": 0, "session_rate": 0, **overrides})
    return create_app(s, analyzer_factory=lambda: FakeAnalyzer(clock), clock=clock,
                      rng=random.Random(0))


@pytest.fixture
def env(tmp_path: Path):
    clock = Clock()
    app = make_app(tmp_path, clock)
    with TestClient(app) as client:
        yield client, clock
    app.state.context.service.store.close()


def learner_of(client: TestClient, h: dict[str, str]) -> str:
    return client.get("/api/me", headers=h).json()["learner_id"]


# --- 1. a revoked token ends the learner's open connections ---------------------------------

@pytest.mark.parametrize("revoke", ["rotate", "delete", "delete-me"])
def test_revoking_a_learner_ends_their_open_connections(env, revoke: str) -> None:
    client, clock = env
    h, sid = signup(client)
    lid = learner_of(client, h)
    svc = client.app.state.context.service.ingest
    connections = client.app.state.context.connections
    with client.websocket_connect("/ws/learn") as ws:
        assert hello(ws, h, sid)["type"] == "ready"
        ws.send_bytes(jpeg())
        assert ws.receive_json()["type"] == "result"
        assert connections.count(lid) == 1
        live = svc.session(lid, sid)
        before = live.last_raw_t
        if revoke == "rotate":
            r = client.post(f"/api/learners/{lid}/token", headers=IH)
            words = "token was replaced"
        elif revoke == "delete":
            r = client.delete(f"/api/learners/{lid}", headers=IH)
            words = "data was deleted"
        else:
            r = client.delete("/api/me", headers=h)
            words = "data was deleted"
        assert r.status_code == 200
        ws.send_bytes(jpeg())  # sent after the revocation: never analysed into the store
        clock.t += 1
        ws.send_json({"type": "sample", "probs": HAPPY})
        msg = ws.receive_json()
        assert msg["type"] == "error" and words in msg["message"], msg
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008 and closed.value.reason == "token revoked"
    assert live.last_raw_t == before and live.current.label == "sad"
    assert connections.count(lid) == 0
    with client.websocket_connect("/ws/learn") as ws:  # the old token opens nothing more
        msg = hello(ws, h, sid)
        assert msg["type"] == "error" and "revoked" in msg["message"]


def test_revoking_one_learner_leaves_the_others_connected(env) -> None:
    client, clock = env
    ha, sa = signup(client, "Ada")
    hb, sb = signup(client, "Bob")
    with client.websocket_connect("/ws/learn") as wa, client.websocket_connect("/ws/learn") as wb:
        hello(wa, ha, sa)
        hello(wb, hb, sb)
        assert client.post(f"/api/learners/{learner_of(client, ha)}/token",
                           headers=IH).status_code == 200
        wa.send_json({"type": "ping"})  # answered "pong" if the connection were still up
        assert wa.receive_json()["type"] == "error"
        wb.send_bytes(jpeg())
        assert wb.receive_json()["type"] == "result"


# --- 2. the instructor token: printed once, kept private ------------------------------------

def test_the_instructor_token_is_printed_once_and_kept_readable_by_its_owner_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from multinet_emotion.cli import main
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("MULTINET_INSTRUCTOR_TOKEN", raising=False)
    monkeypatch.delenv("MULTINET_DATABASE_URL", raising=False)
    kept = tmp_path / "multinet-emotion" / "instructor-token"
    assert main(["serve", "--check", "--no-analysis"]) == 0
    out = capsys.readouterr().out
    token = out.split("instructor token: ")[1].split()[0]
    assert len(token) >= 16 and f"/dashboard#token={token}" in out and str(kept) in out
    assert kept.read_text().strip() == token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # later starts use the kept token and say where it is, without printing it
    assert main(["serve", "--check", "--no-analysis"]) == 0
    out = capsys.readouterr().out
    assert token not in out and str(kept) in out
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}",
                              instructor_token=kept.read_text().strip()), analyzer_factory=None)
    with TestClient(app) as client:
        assert client.get("/api/classes", headers=auth(token)).status_code == 200
    app.state.context.service.store.close()
    kept.chmod(0o644)  # loosened by hand: made private again
    assert main(["serve", "--check", "--no-analysis"]) == 0
    assert token not in capsys.readouterr().out
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # from the environment: never printed, the kept file left as it is
    monkeypatch.setenv("MULTINET_INSTRUCTOR_TOKEN", "from-the-environment-123")
    assert main(["serve", "--check", "--no-analysis"]) == 0
    out = capsys.readouterr().out
    assert "from-the-environment-123" not in out and token not in out
    assert "from MULTINET_INSTRUCTOR_TOKEN" in out
    assert kept.read_text().strip() == token
    monkeypatch.delenv("MULTINET_INSTRUCTOR_TOKEN")
    kept.write_text("short\n")
    assert main(["serve", "--check", "--no-analysis"]) == 2
    assert str(kept) in capsys.readouterr().err


# --- 3a. strict types for probabilities ----------------------------------------------------

def loose(kind: str) -> dict:
    if kind == "strings":
        return {e: str(p) for e, p in SAD.items()}
    if kind == "bools":
        return {e: e == "happy" for e in EMOTIONS}
    return {**SAD, "sad": "0.7"}


@pytest.mark.parametrize("sample", [
    {"probs": loose("strings")}, {"probs": loose("bools")}, {"probs": loose("one string")},
    {"probs": SAD, "confidence": "0.5"}, {"probs": SAD, "confidence": True},
    {"probs": SAD, "t": str(T0 + 1)}, {"face": "false"}, {"face": 0}])
def test_numbers_sent_as_strings_or_booleans_are_refused(env, sample: dict) -> None:
    client, clock = env
    h, sid = signup(client)
    store = client.app.state.context.service.store
    before = store.counts()
    r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                    json={"samples": [{"t": T0 + 1, **sample}]})
    assert r.status_code == 422, r.text
    assert store.counts() == before
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        clock.t += 1
        ws.send_json({"type": "sample", **sample})
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["seq"] == 1, msg
    assert client.app.state.context.service.ingest.session(None, sid).current is None


def test_whole_numbers_are_fine_probabilities(env) -> None:
    client, clock = env
    h, sid = signup(client)
    one_hot = {e: int(e == "happy") for e in EMOTIONS}
    r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                    json={"samples": [{"t": T0 + 1, "probs": one_hot, "confidence": 1}]})
    assert r.status_code == 200, r.text
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        clock.t += 2
        ws.send_json({"type": "sample", "probs": one_hot})
        assert ws.receive_json()["type"] == "result"


# --- 3b/3c. sample times: not ahead of the server clock, not before the session ------------

def test_samples_from_the_future_are_refused_and_block_nothing(env) -> None:
    client, clock = env
    h, sid = signup(client)
    store = client.app.state.context.service.store
    before = store.counts()
    r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                    json={"samples": [{"t": clock.t + 30, "probs": SAD}]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "ahead of the server clock" in detail and "at most 5 s" in detail, detail
    assert store.counts() == before
    r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                    json={"samples": [{"t": clock.t + 3, "probs": SAD}]})  # clocks differ a bit
    assert r.status_code == 200
    clock.t += 4
    r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                    json={"samples": [{"t": clock.t, "probs": SAD}]})
    assert r.status_code == 200, r.text


def test_samples_before_the_session_started_are_refused(env) -> None:
    client, clock = env
    h, sid = signup(client)
    store = client.app.state.context.service.store
    before = store.counts()
    clock.t += 10
    backdated = [{"t": T0 - 50 + i, "probs": SAD} for i in range(50)]
    r = client.post(f"/api/sessions/{sid}/samples", headers=h, json={"samples": backdated})
    assert r.status_code == 422 and "before it started" in r.json()["detail"]
    assert store.counts() == before
    overview = client.get("/api/classes/algebra-1/overview", headers=IH).json()
    assert not overview["learners"] or not overview["learners"][0].get("attention")


# --- 3d. a hello for an ended session -------------------------------------------------------

def test_a_hello_for_an_ended_session_is_refused(env) -> None:
    client, _ = env
    h, sid = signup(client)
    assert client.post(f"/api/sessions/{sid}/end", headers=h).status_code == 200
    with client.websocket_connect("/ws/learn") as ws:
        msg = hello(ws, h, sid)
        assert msg["type"] == "error" and "has ended" in msg["message"], msg
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


# --- 3e. WebSocket origins ------------------------------------------------------------------

def test_the_websocket_refuses_other_origins(env) -> None:
    client, _ = env
    h, sid = signup(client)
    for origin in ("http://evil.example", "null", "http://testserver.evil.example",
                   "http://testserver:8000"):
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/ws/learn", headers={"origin": origin}):
                pass
        assert closed.value.code == 1008, origin
    for headers in ({"origin": "http://testserver"}, {"origin": "https://testserver/"}, {}):
        with client.websocket_connect("/ws/learn", headers=headers) as ws:
            assert hello(ws, h, sid)["type"] == "ready"


def test_allowed_origins_are_a_setting(tmp_path: Path) -> None:
    s = Settings.from_env({"MULTINET_ALLOWED_ORIGINS": "https://lms.example.org, "
                                                       "http://localhost:3000/",
                           "MULTINET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
                           "MULTINET_INSTRUCTOR_TOKEN": INSTRUCTOR})
    clock = Clock()
    app = make_app(tmp_path, clock, allowed_origins=s.allowed_origins)
    with TestClient(app) as client:
        h, sid = signup(client)
        for origin in ("https://lms.example.org", "http://localhost:3000"):
            with client.websocket_connect("/ws/learn", headers={"origin": origin}) as ws:
                assert hello(ws, h, sid)["type"] == "ready"
        with pytest.raises(WebSocketDisconnect):  # the own origin only when the list is empty
            with client.websocket_connect("/ws/learn", headers={"origin": "http://testserver"}):
                pass
    app.state.context.service.store.close()
    with pytest.raises(MultiNetError, match="MULTINET_ALLOWED_ORIGINS: 'lms.example.org'"):
        Settings.from_env({"MULTINET_ALLOWED_ORIGINS": "lms.example.org"})


# --- 3f. decompression bombs ----------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A small PNG that declares width x height pixels (its data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_as_too_large(env) -> None:
    client, _ = env
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        ws.send_bytes(png_header(30_000, 30_000))
        msg = ws.receive_json()
        assert msg["type"] == "error" and "too large" in msg["message"], msg
        assert "pixels" in msg["message"] and "could not be analysed" not in msg["message"]
        ws.send_bytes(jpeg())
        assert ws.receive_json()["type"] == "result"


# --- property-based: random input never breaks the service ----------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
NUMBERISH = (st.floats(0, 1) | st.floats(allow_nan=True, allow_infinity=True)
             | st.integers(-2, 2) | st.booleans() | st.text(max_size=5) | st.none())
PROBS = st.dictionaries(st.sampled_from([*EMOTIONS, "bored", ""]), NUMBERISH, max_size=7) \
    | st.just(HAPPY) | st.just({e: 1 / 6 for e in EMOTIONS}) | SCALARS


@st.composite
def samples(draw: st.DrawFn, with_t: bool = True) -> dict:
    out: dict = {}
    for key, values in (("probs", PROBS), ("face", SCALARS), ("confidence", NUMBERISH),
                        ("t", NUMBERISH | st.floats(T0 - 100, T0 + 100)), ("extra", SCALARS)):
        if (key != "t" or with_t) and draw(st.booleans()):
            out[key] = draw(values)
    return out


@st.composite
def ws_messages(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["sample", "ping", "hello", "other", "json", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "json":
        return json.dumps(draw(JSON))
    message = draw(samples(with_t=False)) if kind == "sample" else draw(
        st.dictionaries(st.text(max_size=6), SCALARS, max_size=3))
    message["type"] = draw(st.sampled_from(["sample", "ping", "hello", "frame", "", "SAMPLE"])) \
        if kind == "other" else kind
    return json.dumps(message)


#: Fast, reproducible and leaving no example database in the working tree.
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def test_random_websocket_messages_never_break_the_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock)
    with TestClient(app) as client:
        h, sid = signup(client)
        store = client.app.state.context.service.store
        live = client.app.state.context.service.ingest.session(None, sid)
        with client.websocket_connect("/ws/learn") as ws:
            assert hello(ws, h, sid)["type"] == "ready"

            @FAST
            @given(text=ws_messages())
            def check(text: str) -> None:
                clock.t += 1.5
                before = (store.counts(), live.last_raw_t)
                ws.send_text(text)
                reply = ws.receive_json()
                assert reply["type"] in ("error", "result", "pong"), reply
                if reply["type"] == "error":
                    assert "internal" not in reply["message"].lower(), reply
                    assert (store.counts(), live.last_raw_t) == before, text
                if reply["type"] == "result":
                    data = json.loads(text)
                    assert data["type"] == "sample"

            check()
            ws.send_json({"type": "ping"})  # still up
            assert ws.receive_json() == {"type": "pong"}
    app.state.context.service.store.close()
    no_errors_logged(caplog)


def test_random_first_messages_are_refused_cleanly(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock)
    with TestClient(app) as client:
        h, sid = signup(client)
        store = client.app.state.context.service.store
        before = store.counts()

        @settings(FAST, max_examples=25)
        @given(text=ws_messages() | st.builds(
            lambda tok, s: json.dumps({"type": "hello", "token": tok, "session_id": s}),
            SCALARS, SCALARS | st.just(sid)))
        def check(text: str) -> None:
            with client.websocket_connect("/ws/learn") as ws:
                ws.send_text(text)
                reply = ws.receive_json()
                assert reply["type"] == "error", reply
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 1008

        check()
        assert store.counts() == before
    app.state.context.service.store.close()
    no_errors_logged(caplog)


BODIES = (JSON | st.fixed_dictionaries({"samples": st.lists(samples(), max_size=3)})
          | st.fixed_dictionaries({"name": SCALARS}, optional={"learner_id": SCALARS,
                                                                 "extra": SCALARS}))


def test_random_request_bodies_never_give_a_server_error(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock, open_registration=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        store = client.app.state.context.service.store
        # closed registration: only the instructor signs learners up, so a random body that
        # is refused must leave the database as it was
        h = auth(sign_up(client, "Ada", IH)["token"])
        sid = client.post("/api/sessions", json={"join_code": join_code(client, IH, "c")},
                          headers=h).json()["id"]
        live = client.app.state.context.service.ingest.session(None, sid)

        @FAST
        @given(body=BODIES | st.binary(max_size=40), who=st.sampled_from(["learner", "none"]),
               route=st.sampled_from(["samples", "signup"]))
        def check(body: object, who: str, route: str) -> None:
            clock.t += 2
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            url = f"/api/sessions/{sid}/samples" if route == "samples" else "/api/learners"
            headers = {"Content-Type": "application/json", **(h if who == "learner" else {})}
            before = (store.counts(), live.last_raw_t)
            r = client.post(url, content=content, headers=headers)
            assert r.status_code < 500, r.text
            assert "Traceback" not in r.text
            if r.status_code >= 400:
                assert isinstance(r.json()["detail"], str)
                assert (store.counts(), live.last_raw_t) == before, (url, body, r.text)

        check()
    app.state.context.service.store.close()
    no_errors_logged(caplog)


# --- one connection per learner, a bounded number per address --------------------------------

def test_a_learners_new_connection_replaces_the_older_ones(env) -> None:
    client, clock = env
    h, sid = signup(client)
    hb, sb = signup(client, "Bob")
    lid = learner_of(client, h)
    connections = client.app.state.context.connections
    with client.websocket_connect("/ws/learn") as bob:
        assert hello(bob, hb, sb)["type"] == "ready"
        old = [client.websocket_connect("/ws/learn").__enter__() for _ in range(5)]
        for ws in old:
            assert hello(ws, h, sid)["type"] == "ready"
        for ws in old[:-1]:  # each was replaced by the next one
            msg = ws.receive_json()
            assert msg["type"] == "error" and "replaced by a newer one" in msg["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008 and closed.value.reason == "replaced"
        assert connections.count(lid) == 1
        newest = old[-1]
        newest.send_bytes(jpeg())
        assert newest.receive_json()["type"] == "result"
        # a hello that is refused (an ended session) replaces nothing
        r = client.post("/api/sessions", json={"join_code": join_code(client, IH, "algebra-1")},
                        headers=h)
        ended = r.json()["id"]
        assert client.post(f"/api/sessions/{ended}/end", headers=h).status_code == 200
        with client.websocket_connect("/ws/learn") as refused:
            assert hello(refused, h, ended)["type"] == "error"
        newest.send_json({"type": "ping"})
        assert newest.receive_json()["type"] == "pong"
        bob.send_json({"type": "ping"})  # another learner's connection is left alone
        assert bob.receive_json()["type"] == "pong"
        for ws in old:
            ws.__exit__(None, None, None)


def test_connections_per_address_are_limited(tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock, max_connections_per_address=2)
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as a, \
                client.websocket_connect("/ws/learn") as b:  # no hello yet: counted too
            with client.websocket_connect("/ws/learn") as c:
                msg = c.receive_json()
                assert msg["type"] == "error" and "too many open connections" in msg["message"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    c.receive_json()
                assert closed.value.code == 1008
            assert hello(a, h, sid)["type"] == "ready"
            b.close()
        with client.websocket_connect("/ws/learn") as d:  # those closed count no more
            assert hello(d, h, sid)["type"] == "ready"
    app.state.context.service.store.close()
    assert Settings().max_connections_per_address == 100
    assert Settings.from_env({"MULTINET_MAX_CONNECTIONS_PER_ADDRESS": "0"}
                             ).max_connections_per_address == 0


# --- one stored reading per second, whatever the path ---------------------------------------

def test_every_path_stores_at_most_one_reading_per_second(env) -> None:
    client, clock = env
    h, sid = signup(client)
    store = client.app.state.context.service.store

    def rows() -> list[float]:
        store.flush_samples()
        return [s.t for s in store.samples(session_id=sid)]

    clock.t = T0 + 10
    for i in range(8):  # one request per sample, all in one second
        r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                        json={"samples": [{"t": T0 + 10 + i / 10, "probs": SAD}]})
        assert r.status_code == 200, r.text
    assert len(rows()) == 1
    for i in range(4):  # readings over the WebSocket, an export read between each two
        with client.websocket_connect("/ws/learn") as ws:
            hello(ws, h, sid)
            clock.t = T0 + 11 + i / 5
            ws.send_json({"type": "sample", "probs": HAPPY})
            assert ws.receive_json()["type"] == "result"
        assert client.get("/api/me/export", headers=h).status_code == 200
    assert client.get(f"/api/learners/{learner_of(client, h)}/export",
                      headers=IH).status_code == 200
    times = rows()
    assert len(times) == 2 and len({int(t) for t in times}) == 2, times
    # the live state still follows every reading
    assert client.app.state.context.service.ingest.session(None, sid).current.label == "happy"


# --- X-Forwarded-For is believed from the named proxies only --------------------------------

@pytest.mark.parametrize("proxies", ["", "127.0.0.1"])
def test_forwarded_addresses_are_believed_only_from_named_proxies(tmp_path: Path,
                                                                   proxies: str) -> None:
    import httpx
    from test_web import running
    clock = Clock()
    app = make_app(tmp_path, clock, signup_rate=2, forwarded_allow_ips=proxies)
    settings = app.state.context.settings
    consent = {"consent": True}
    with running(app, **settings.proxy_options()) as url, \
            httpx.Client(base_url=url, timeout=10) as http:
        consent["consent_version"] = http.get("/api/consent").json()["version"]
        codes = [http.post("/api/learners", json={"name": f"L{i}", **consent},
                           headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(4)]
    if proxies:  # the named proxy: each forwarded address has its own limit
        assert codes == [201, 201, 201, 201]
    else:  # nobody named: loopback's header is not believed either
        assert codes == [201, 201, 429, 429]


def test_the_serve_command_hands_uvicorn_the_proxies(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from test_web import _free_port

    from multinet_emotion.cli import main
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("MULTINET_INSTRUCTOR_TOKEN", INSTRUCTOR)
    db = f"sqlite:///{tmp_path / 's.db'}"
    port = str(_free_port())
    assert main(["serve", "--no-analysis", "--database", db, "--port", port]) == 0
    assert main(["serve", "--no-analysis", "--database", db, "--port", port,
                 "--forwarded-allow-ips", "10.0.0.5, 10.1.0.0/16"]) == 0
    assert calls[0]["proxy_headers"] is False
    assert calls[1]["proxy_headers"] is True
    assert calls[1]["forwarded_allow_ips"] == ["10.0.0.5", "10.1.0.0/16"]
    with pytest.raises(MultiNetError, match="not an IP address"):
        Settings.from_env({"MULTINET_FORWARDED_ALLOW_IPS": "10.0.0.5 frame"})


# --- control characters, foreign Host names, framing and caching ----------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_control_characters_are_refused_with_422_on_every_database(tmp_path: Path,
                                                                    backend: str) -> None:
    clock = Clock()
    with database_url(backend, tmp_path) as url:
        app = make_app(tmp_path, clock, database_url=url)
        with TestClient(app, raise_server_exceptions=False) as client:
            h, sid = signup(client)
            store = client.app.state.context.service.store
            before = store.counts()
            consent = client.get("/api/consent").json()["version"]
            for method, path, body, headers in [
                    ("post", "/api/learners", {"name": "A\x00da", "consent": True,
                                               "consent_version": consent}, {}),
                    ("post", "/api/learners", {"name": "Ada\x07", "consent": True,
                                               "consent_version": consent}, {}),
                    ("post", "/api/classes", {"name": "Al\x00gebra"}, IH),
                    ("post", "/api/sessions", {"join_code": "AB\x00CD"}, h),
                    ("post", "/api/sessions", {"join_code": "ABCD", "tags": ["x\x00"]}, h),
                    ("get", "/api/join/AB%00CD", None, {}),
                    ("get", "/api/join/AB%0ACD", None, {}),
                    ("post", f"/api/sessions/{sid}%00/end", None, h),
                    ("get", f"/api/sessions/x%00{sid}/recommendation", None, h),
                    ("post", "/api/recommendations/r%00/accept", None, h),
                    ("get", "/api/learners/a%00b/summary", None, IH),
                    ("get", "/api/classes/c%00d/overview", None, IH),
                    ("get", "/api/me/timeline?session_id=a%00b", None, h),
                    ("post", "/api/recommendations/x/feedback",
                     {"value": "up", "comment": "n\x00o"}, h)]:
                r = client.request(method, path, json=body, headers=headers)
                assert r.status_code == 422, (path, body, r.status_code, r.text)
                assert "control character" in r.text, r.text
            assert store.counts() == before
            with client.websocket_connect("/ws/learn") as ws:
                ws.send_json({"type": "hello", "token": h["Authorization"][7:],
                              "session_id": sid + "\x00"})
                assert ws.receive_json()["type"] == "error"
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 1008
            # free text keeps its line breaks
            r = client.post("/api/recommendations/none/feedback", headers=h,
                            json={"value": "up", "comment": "two\nlines"})
            assert r.status_code == 404
        store.close()


def test_foreign_host_names_are_refused(tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock, public_url="https://emotion.school.example",
                   allowed_hosts="lan-box")
    with TestClient(app) as client:
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000",
                     "emotion.school.example", "LAN-BOX:8000", "testserver"):
            assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
        r = client.get("/api/health", headers={"Host": "attacker.example"})
        assert r.status_code == 421 and "host name" in r.json()["detail"]
        assert client.get("/api/consent", headers={"Host": "attacker.example:8000"}
                          ).status_code == 421
        with pytest.raises(WebSocketDisconnect):  # the rebinding page's own Host and Origin
            with client.websocket_connect("/ws/learn", headers={
                    "Host": "attacker.example", "Origin": "http://attacker.example"}) as ws:
                ws.receive_json()
    app.state.context.service.store.close()


def test_docs_are_never_framed_and_personal_data_never_cached(env) -> None:
    client, clock = env
    h, sid = signup(client)
    docs = client.get("/docs")
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert docs.headers["x-frame-options"] == "DENY"
    lid = learner_of(client, h)
    for path, headers in [("/api/me/export", h), ("/api/me/timeline", h),
                          ("/api/me/summary", h), (f"/api/learners/{lid}/export", IH),
                          (f"/api/learners/{lid}/timeline", IH),
                          ("/api/classes/algebra-1/overview", IH)]:
        r = client.get(path, headers=headers)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path


# --- ending a session or its class closes its connections; deep JSON gets an answer ---------

@pytest.mark.parametrize("how", ["session", "class"])
def test_ending_a_session_or_its_class_closes_its_connection(env, how: str) -> None:
    client, clock = env
    h, sid = signup(client)
    hb, sb = signup(client, "Bob", class_id="history")  # another class: left alone
    store = client.app.state.context.service.store
    with client.websocket_connect("/ws/learn") as ws, \
            client.websocket_connect("/ws/learn") as other:
        assert hello(ws, h, sid)["type"] == "ready"
        assert hello(other, hb, sb)["type"] == "ready"
        r = (client.post(f"/api/sessions/{sid}/end", headers=h) if how == "session" else
             client.post("/api/classes/algebra-1/end", headers=IH))
        assert r.status_code == 200, r.text
        assert store.get_session(sid).ended_at is not None
        msg = ws.receive_json()
        assert msg["type"] == "error" and "has ended" in msg["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008 and closed.value.reason == "session ended"
        clock.t += 1
        r = client.post(f"/api/sessions/{sid}/samples", headers=h,
                        json={"samples": [{"t": clock.t, "probs": SAD}]})
        assert r.status_code == 409
        other.send_json({"type": "ping"})
        assert other.receive_json()["type"] == "pong"


def test_deeply_nested_json_on_the_socket_gets_an_error_reply(env) -> None:
    client, clock = env
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        assert hello(ws, h, sid)["type"] == "ready"
        ws.send_text("[" * 100_000 + "]" * 100_000)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg.get("seq") is None
        ws.send_text('{"type": "sample", "probs": ' + "[" * 50_000 + "]" * 50_000 + "}")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "ping"})  # still up
        assert ws.receive_json()["type"] == "pong"


# --- the current second is stored when a connection closes or the service stops -------------

def test_the_current_second_is_stored_when_the_socket_closes_or_the_service_stops(
        tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(tmp_path, clock)
    store = app.state.context.service.store
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:  # closed without End
            hello(ws, h, sid)
            clock.t = T0 + 10.2
            ws.send_json({"type": "sample", "probs": SAD})
            assert ws.receive_json()["type"] == "result"
        import time
        deadline = time.monotonic() + 5  # the server notices the close a moment later
        while not store.samples(session_id=sid) and time.monotonic() < deadline:
            store.flush_samples()
            time.sleep(0.02)
        assert [int(s.t) for s in store.samples(session_id=sid)] == [int(T0) + 10]
        from multinet_emotion.app.service import client_reading
        hb, sb = signup(client, "Bob")
        clock.t = T0 + 20.2  # a reading of the current second, waiting when the service stops
        app.state.context.service.ingest.add_reading(learner_of(client, hb), sb,
                                             client_reading(clock.t, HAPPY, None, None))
        assert store.samples(session_id=sb) == []
    assert [int(s.t) for s in store.samples(session_id=sb)] == [int(T0) + 20]
    store.close()


def test_readings_the_server_stamps_at_the_same_moment_are_all_taken(env) -> None:
    client, clock = env
    h, sid = signup(client)
    with client.websocket_connect("/ws/learn") as ws:
        hello(ws, h, sid)
        clock.t = T0 + 5  # the server's clock does not move between these
        for _ in range(5):
            ws.send_json({"type": "sample", "probs": SAD})
            msg = ws.receive_json()
            assert msg["type"] == "result", msg
