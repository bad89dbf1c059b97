"""In a real browser: a learner joins with a class code and reads what is shared before
anything is stored (declining stores nothing), and the instructor's Classes panel creates
classes, shows their codes and expiry, and rotates a code. Fixtures of test_web."""

from __future__ import annotations

import pytest
import test_web as web

pytestmark = [pytest.mark.slow]

server, chromium, browser = web.server, web.chromium, web.browser


def test_learner_joins_by_code_and_nothing_is_stored_before_consent(server, browser) -> None:
    store = server["app"].state.context.service.store
    code = store.ensure_class("join-flow", "Join Flow 101").join_code
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    signups: list[str] = []
    page.on("request", lambda r: signups.append(r.url)
            if r.method == "POST" and r.url.endswith("/api/learners") else None)
    page.goto(server["url"] + "/learn")
    page.evaluate("localStorage.clear()")
    page.reload()
    before = store.counts()
    # an unknown code: said plainly, and the page stays at the code
    page.fill("#name", "Careful Carla")
    page.fill("#join-code", "WXYZ-WXYZ")
    page.click("#continue")
    error = page.locator("#signup-error")
    error.wait_for(state="visible")
    assert "No class has the code WXYZ-WXYZ" in error.inner_text()
    assert "ask your teacher" in error.inner_text()
    assert page.locator("#consent").is_hidden()
    # the right code, typed in lower case with a dash: the consent comes first
    page.fill("#join-code", f"{code[:4].lower()}-{code[4:].lower()}")
    page.click("#continue")
    consent = page.locator("#consent")
    consent.wait_for(state="visible")
    text = consent.inner_text()
    assert "Join Flow 101" in text
    assert "per-second timeline" in text and "with your name" in text
    assert "nothing about you is stored" in text
    web.shot(page, "learner-consent-classes")
    # "I do not agree": nothing was sent, nothing stored, and the page says so
    page.click("#decline")
    declined = page.locator("#declined")
    declined.wait_for(state="visible")
    assert "nothing about you was stored" in declined.inner_text()
    assert signups == [] and store.counts() == before
    assert page.evaluate("localStorage.getItem('multinet.learner')") is None
    web.shot(page, "learner-declined")
    # back, agree (without camera): only now the learner is stored, with the consent
    page.click("#back")
    page.fill("#name", "Careful Carla")
    page.click("#continue")
    consent.wait_for(state="visible")
    page.click("#no-camera")
    page.locator("#main").wait_for(state="visible")
    assert len(signups) == 1
    learner_id = page.evaluate("state.me.learner_id")
    row = store.get_learner(learner_id)
    assert row.name == "Careful Carla" and row.consent_version and row.consent_at
    page.wait_for_function("state.session !== null")
    assert page.evaluate("state.session.class_id") == "join-flow"
    assert "Join Flow 101" in page.locator("#who").inner_text()
    assert not errors, errors
    page.close()


def test_dashboard_classes_panel_creates_and_rotates_codes(server, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server["url"] + f"/dashboard#token={web.INSTRUCTOR}")
    page.locator("#board").wait_for(state="visible", timeout=15_000)
    page.fill("#class-name", "Physics 2")
    page.fill("#class-days", "7")
    page.click("#class-create")
    row = page.locator('#class-rows tr[data-class-id="physics-2"]')
    row.wait_for(state="visible", timeout=10_000)
    store = server["app"].state.context.service.store
    first = store.get_class("physics-2")
    assert first.name == "Physics 2" and first.code_expires_at is not None
    shown = row.locator(".join-code").inner_text()
    assert shown.replace("-", "") == first.join_code
    assert row.locator(".code-expiry").inner_text() != "never"
    # the class list (the picker) is the classes table, and shows the new class
    page.wait_for_function(
        "document.getElementById('class-select').value === 'physics-2'", timeout=10_000)
    web.shot(page, "dashboard-classes")
    # a new code: the old one stops working
    page.once("dialog", lambda d: d.accept())
    row.locator(".rotate").click()
    page.wait_for_function(
        """old => { const c = document.querySelector(
             '#class-rows tr[data-class-id="physics-2"] .join-code');
           return c && c.textContent.replace('-', '') !== old; }""", arg=first.join_code,
        timeout=10_000)
    new = store.get_class("physics-2").join_code
    assert new != first.join_code
    assert row.locator(".join-code").inner_text().replace("-", "") == new
    assert store.class_by_code(first.join_code) is None
    assert not errors, errors
    page.close()
