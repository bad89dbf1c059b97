"""In a real browser: the instructor's Learning records (xAPI) panel shows an LRS that is down
(queued count, the oldest statement's age, the last error, never the LRS's credentials) and
then the delivery once it is back; the learner's sharing checkbox stores the choice, keeps
it across a reload, and decides whether per-minute emotion summaries are queued.

The service runs with a fake clock (xapiutil.Clock), so the readings' minutes are exact (the
xAPI sender keeps the real one); the LRS
is xapiutil's fake, started on a port that was closed before (the LRS comes back where it
was). Browser fixtures of test_web."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import test_web as web
from apiutil import join_code
from sqlalchemy import update
from xapiutil import (
    HAPPY,
    IH,
    INSTRUCTOR,
    LRS_PASSWORD,
    LRS_USER,
    SAD,
    Clock,
    FakeLrs,
    Learner,
    make_app,
)

from multinet_emotion.app.store import OutboxRow
from multinet_emotion.app.xapi import profile as P

pytestmark = [pytest.mark.slow]

chromium, browser = web.chromium, web.browser


serve = web.running  # the app on a loopback port, with its lifespan (the xAPI sender runs)


def text_of(element_id: str) -> str:
    return f"document.getElementById('{element_id}').textContent"


def test_dashboard_shows_a_failing_lrs_then_the_delivery(browser, tmp_path: Path) -> None:
    port = web._free_port()  # nothing listens here until the LRS "comes back"
    clock = Clock()
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", clock,
                   lrs_url=f"http://127.0.0.1:{port}/xAPI/", lrs_max_backoff=1)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        ada = Learner(http, clock)
        ada.start()
        ada.mood(SAD, 70)  # crosses a minute: a summary too
        ada.end()
        outbox = app.state.context.xapi.outbox
        ids = [r.statement_id for r in outbox.rows()]
        assert len(ids) >= 3
        with app.state.context.service.store.session() as s:  # queued 10 min 45 s ago (the sender's
            s.execute(update(OutboxRow).values(  # clock is the real one)
                created_at=OutboxRow.created_at - 645))
        status = http.get("/api/xapi/outbox", headers=IH).json()
        assert status["queued"] == len(ids) and status["oldest_queued_age"] >= 645

        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + f"/dashboard#token={INSTRUCTOR}")
        page.locator("#xapi-card").wait_for(state="visible", timeout=15_000)
        page.wait_for_function(f"{text_of('xapi-state')}.includes('not reachable')",
                               timeout=20_000)  # the sender tried, and failed
        assert page.locator("#xapi-state").get_attribute("class") == "error"
        assert page.locator("#xapi-endpoint").inner_text() == f"http://127.0.0.1:{port}/xAPI/"
        assert page.locator("#xapi-queued").inner_text() == str(len(ids))
        assert page.locator("#xapi-sent").inner_text() == "0"
        assert page.locator("#xapi-failing").inner_text() == "0"
        assert page.locator("#xapi-oldest").inner_text() == "11 min"
        error = page.locator("#xapi-error")
        assert error.is_visible()
        assert error.inner_text().startswith("Last error: ConnectError"), error.inner_text()
        html = page.content()
        assert LRS_PASSWORD not in html and LRS_USER not in html
        web.shot(page, "dashboard-xapi-failing")

        # the LRS comes back where it was: everything is delivered, once, and the panel says so
        with FakeLrs(port=port) as lrs:  # the next try comes within a second (lrs_max_backoff)
            page.wait_for_function(
                f"{text_of('xapi-sent')} === '{len(ids)}' && {text_of('xapi-queued')} === '0'",
                timeout=20_000)
            assert sorted(lrs.stored) == sorted(ids)
        assert page.locator("#xapi-state").inner_text() == "delivering"
        assert page.locator("#xapi-state").get_attribute("class") == "muted"
        assert page.locator("#xapi-oldest").inner_text() == "—"
        assert error.is_hidden() and page.locator("#xapi-retry").is_hidden()
        assert {r.state for r in outbox.rows()} == {"sent"}
        html = page.content()
        assert LRS_PASSWORD not in html and LRS_USER not in html
        web.shot(page, "dashboard-xapi-sent")
        assert not errors, errors
        page.close()


def _enter(page, name: str | None = None) -> None:  # noqa: ANN001
    """Sign up (or come back) with the class code, agree, learn without the camera."""
    if name is not None:
        page.fill("#name", name)
    page.click("#continue")
    page.locator("#consent").wait_for(state="visible", timeout=15_000)
    page.click("#no-camera")
    page.locator("#main").wait_for(state="visible", timeout=15_000)
    page.wait_for_function("state.session !== null", timeout=15_000)


def _feed(http: httpx.Client, clock: Clock, token: str, session_id: str, seconds: int) -> None:
    """A reading a second, through the API (the page has no camera)."""
    samples = []
    for _ in range(seconds):
        clock.t += 1
        samples.append({"t": clock.t, "probs": HAPPY})
    r = http.post(f"/api/sessions/{session_id}/samples", json={"samples": samples},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def _summaries(app, learner_id: str, session_id: str | None = None) -> list[dict]:  # noqa: ANN001
    rows = app.state.context.xapi.outbox.rows(learner_id)
    got = [r.body for r in rows if r.body["verb"]["id"] == P.VERBS["emotion_summary"].id]
    if session_id is not None:
        got = [b for b in got if b["object"]["id"].endswith(f"/xapi/sessions/{session_id}")]
    return got


def test_the_learner_chooses_to_share_emotion_summaries(browser, tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", clock)  # LRS down: statements stay
    store = app.state.context.service.store
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        code = join_code(http, IH, "algebra-1")
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/learn")
        page.fill("#join-code", code)
        _enter(page, "Sharing Sam")
        panel, box = page.locator("#sharing"), page.locator("#share-emotions")
        panel.wait_for(state="visible", timeout=10_000)  # the service sends learning records
        assert not box.is_checked()
        me = page.evaluate("state.me")
        learner_id, token = me["learner_id"], me["token"]
        assert store.shares_emotions(learner_id) is False

        # off: a minute and more of readings, and no summary (other statements, yes)
        _feed(http, clock, token, page.evaluate("state.session.id"), 70)
        assert app.state.context.xapi.outbox.rows(learner_id), "the learner's session is not recorded at all"
        assert _summaries(app, learner_id) == []

        # on: the page says so to the server
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith("/api/me/sharing")) as answer:
            box.check()
        assert answer.value.status == 200
        assert json.loads(answer.value.request.post_data) == {"emotions": True}
        page.wait_for_function("!document.getElementById('share-emotions').disabled")
        assert box.is_checked() and store.shares_emotions(learner_id) is True

        # the choice survives a reload (read back from the server)
        page.reload()
        _enter(page)  # a returning learner: the code is filled in
        page.wait_for_function("document.getElementById('share-emotions').checked",
                               timeout=10_000)
        session = page.evaluate("state.session.id")
        _feed(http, clock, token, session, 70)
        [summary] = _summaries(app, learner_id, session)
        shares = summary["result"]["extensions"][P.EXT_SHARES]
        assert shares["happy"] == 1.0

        # off again: no more summaries
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith("/api/me/sharing")) as answer:
            box.uncheck()
        assert json.loads(answer.value.request.post_data) == {"emotions": False}
        page.wait_for_function("!document.getElementById('share-emotions').disabled")
        assert store.shares_emotions(learner_id) is False
        _feed(http, clock, token, session, 70)
        assert len(_summaries(app, learner_id, session)) == 1
        page.reload()
        _enter(page)
        panel.wait_for(state="visible", timeout=10_000)  # read back from the server
        assert not box.is_checked()
        assert not errors, errors
        page.close()
