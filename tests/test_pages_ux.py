"""What a first-time user sees on the pages, in a real browser (the fixtures of test_web).

The learner page: a starting state for the camera, a status in words, an obvious outage with
greyed-out stale readings, and a return to sign-up once the data is deleted or the token no
longer works. The dashboard: long and bidi-tricky names, no class list on the login screen,
a dashed legend swatch for the dashed series. And a favicon.
"""

from __future__ import annotations

import json
import re

import pytest
import test_web as web

pytestmark = [pytest.mark.slow]

# the module-scoped server, the browser and a fresh context per test, as in test_web
server, chromium, browser = web.server, web.chromium, web.browser

BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
MALLORY = "\u202eevil\u202c Mallory"  # shown as "live Mallory" unless neutralised
LONG_NAME = "W" * 100


def _errors(page) -> list[str]:  # noqa: ANN001
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _sign_up(page, server: dict, name: str, class_id: str = "ux-class") -> None:  # noqa: ANN001
    page.goto(server["url"] + "/learn")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.fill("#name", name)
    page.fill("#join-code", web.class_code(server["app"], class_id))
    page.click("#continue")
    page.locator("#consent").wait_for(state="visible")


def _learner(request, server: dict, name: str, class_id: str  # noqa: ANN001
             ) -> tuple[str, str]:
    """A learner with a session in ``class_id``, made through the API: (id, token)."""
    url = server["url"]
    version = request.get(url + "/api/consent").json()["version"]
    r = request.post(url + "/api/learners",
                     data={"name": name, "consent": True, "consent_version": version})
    assert r.ok, r.text()
    me = r.json()
    auth = {"Authorization": "Bearer " + me["token"]}
    code = web.class_code(server["app"], class_id)
    s = request.post(url + "/api/sessions", data={"join_code": code, "source": "camera"},
                     headers=auth)
    assert s.ok, s.text()
    return me["learner_id"], me["token"]


def test_camera_start_status_in_words_and_an_obvious_outage(server, browser) -> None:
    page = browser.new_page()
    errors = _errors(page)
    # the camera takes as long as the test says
    page.add_init_script("""
      const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = c => new Promise(
        (resolve, reject) => { window.releaseCamera = () => open(c).then(resolve, reject); });""")
    down = {"now": False, "routes": []}

    def route(ws) -> None:  # noqa: ANN001 - the server can be "down" for the page
        if down["now"]:
            ws.close()
            return
        down["routes"].append((ws, ws.connect_to_server()))

    page.route_web_socket(re.compile(r".*/ws/learn$"), route)
    _sign_up(page, server, "Camera Starter")
    page.click("#agree")
    toggle = page.locator("#camera-toggle")
    page.wait_for_function("typeof window.releaseCamera === 'function'")
    # 1. while the camera starts, the button says so and cannot be pressed
    assert toggle.inner_text() == "Starting camera…"
    assert toggle.is_disabled()
    page.evaluate("window.releaseCamera()")
    page.wait_for_function(
        "document.getElementById('camera-toggle').textContent === 'Turn camera off'")
    assert toggle.is_enabled()
    # 2. the status reads in words; the latency is only in its title
    page.wait_for_function(
        "document.getElementById('current-label').textContent === 'sad'", timeout=60_000)
    text = page.locator("#status").inner_text()
    assert text.startswith("camera on") and "estimated" in text, text
    assert not re.search(r"\d\s*ms", text), text
    assert re.search(r"\d+(\.\d+)? ms", page.locator("#status").get_attribute("title") or "")
    assert not page.locator("#outage").is_visible()
    assert "stale" not in (page.locator("#now").get_attribute("class") or "")
    # 5. the server goes away: a banner says so, and the last reading goes grey
    down["now"] = True
    for ws, srv in down["routes"]:
        srv.close()
        ws.close()
    outage = page.locator("#outage")
    outage.wait_for(state="visible", timeout=10_000)
    assert "connection to the server is lost" in outage.inner_text()
    assert "stale" in page.locator("#now").get_attribute("class")
    assert page.locator("#current-label").text_content() == "sad"  # still there, but grey
    opacity = float(page.evaluate(
        "getComputedStyle(document.getElementById('now')).opacity"))
    assert opacity < 0.7, opacity
    web.shot(page, "learner-outage")
    page.wait_for_timeout(700)  # a reconnection or two is refused
    down["now"] = False  # back: the banner goes, and a fresh reading ends the grey
    page.wait_for_function("document.getElementById('outage').classList.contains('hidden') && "
                           "!document.getElementById('now').classList.contains('stale')",
                           timeout=30_000)
    assert not errors, errors
    page.close()


def test_deleting_my_data_clears_the_page_and_returns_to_sign_up(server, browser) -> None:
    page = browser.new_page()
    errors = _errors(page)

    def bidi_name(route) -> None:  # noqa: ANN001 - whatever the server does with the name
        response = route.fetch()
        body = response.json()
        body["name"] = MALLORY
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/learners", bidi_name)
    _sign_up(page, server, MALLORY)
    page.click("#no-camera")
    page.locator("#main").wait_for(state="visible")
    # 7. the name in the header: no bidi controls, isolated
    who = page.locator("#who")
    assert "evil Mallory" in who.inner_text() and not BIDI.search(who.inner_text())
    assert who.locator("bdi").count() == 2  # the name and the class, each isolated
    # something to clear: a reading and a timeline point, as a result would leave them
    page.evaluate("""state.cameraOn = true;
      onResult({current: {face: true, label: 'sad', confidence: 0.9, probs: Object.fromEntries(
        EMOTIONS.map(e => [e, e === 'sad' ? 1 : 0]))}, ms: 12});""")
    assert page.locator("#current-label").text_content() == "sad"
    page.once("dialog", lambda d: d.accept())
    page.click("#delete")
    # 4. back at sign-up, nothing of the learner left on the page
    page.locator("#signup").wait_for(state="visible", timeout=10_000)
    assert page.locator("#main").is_hidden()
    message = page.locator("#signup-message")
    assert message.is_visible() and "deleted" in message.inner_text()
    assert page.locator("#who").inner_text() == ""
    assert page.locator("#name").input_value() == ""
    assert page.locator("#current-label").text_content() == "—"
    assert page.evaluate("state.timeline.length") == 0 and page.evaluate("state.me") is None
    assert page.evaluate("localStorage.getItem('multinet.learner')") is None
    assert page.locator("#recs").inner_html() == ""
    web.shot(page, "learner-deleted")
    # and one can sign up again
    page.unroute("**/api/learners")
    page.fill("#name", "Second Start")
    page.click("#continue")
    page.locator("#consent").wait_for(state="visible")
    assert page.locator("#signup-message").is_hidden()
    assert not errors, errors
    page.close()


def test_a_token_that_stops_working_returns_to_sign_up(server, browser) -> None:
    page = browser.new_page()
    errors = _errors(page)
    _sign_up(page, server, "Token Loser")
    page.click("#no-camera")
    page.locator("#main").wait_for(state="visible")
    # a 401 on a button: no uncaught error, back to sign-up with a clear message
    page.route("**/api/me/export", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body=json.dumps({"detail": "unknown or revoked learner token"})))
    page.click("#export")
    page.locator("#signup").wait_for(state="visible", timeout=10_000)
    message = page.locator("#signup-message")
    assert "no longer valid" in message.inner_text()
    assert "sign up again" in message.inner_text().lower()
    assert page.evaluate("localStorage.getItem('multinet.learner')") is None
    assert not errors, errors
    # the instructor replaces the token while the page is open: the page notices by itself
    page.unroute("**/api/me/export")
    page.fill("#name", "Token Loser Two")
    page.click("#continue")
    page.click("#no-camera")
    page.locator("#main").wait_for(state="visible")
    learner_id = page.evaluate("state.me.learner_id")
    r = page.request.post(server["url"] + f"/api/learners/{learner_id}/token",
                          headers={"Authorization": "Bearer " + web.INSTRUCTOR})
    assert r.ok, r.text()
    page.locator("#signup").wait_for(state="visible", timeout=15_000)
    assert "no longer valid" in page.locator("#signup-message").inner_text()
    assert not errors, errors
    page.close()


def test_dashboard_names_login_legend_and_favicon(server, browser) -> None:
    url = server["url"]
    page = browser.new_page()
    errors = _errors(page)
    # 8. the login screen shows no (empty) class list
    page.goto(url + "/dashboard")
    page.locator("#login").wait_for(state="visible", timeout=15_000)
    assert not page.locator("#class-select").is_visible()
    long_id, _ = _learner(page.request, server, LONG_NAME, "ux-names")
    mallory_id, _ = _learner(page.request, server, MALLORY, "ux-names")

    def tricky(route) -> None:  # noqa: ANN001 - the names as given, whatever the server keeps
        response = route.fetch()
        body = response.json()
        for learner in body["learners"]:
            if learner["learner_id"] == mallory_id:
                learner["name"] = MALLORY
        body["attention"].append({"learner_id": mallory_id, "name": MALLORY,
                                  "reason": "seemed down for a while"})
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/classes/*/overview", tricky)
    page.fill("#token", web.INSTRUCTOR)
    page.click("#login-form button")
    page.locator("#board").wait_for(state="visible", timeout=15_000)
    page.select_option("#class-select", "ux-names")
    assert page.locator("#class-select").is_visible()
    long_card = page.locator(f'.learner[data-learner-id="{long_id}"]')
    long_card.wait_for(state="visible", timeout=15_000)
    # 6. a 100-character name stays within its card, the full name in a title
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = None
    for _ in range(50):  # the board re-renders as it polls: a card may be mid-replacement
        long_card.wait_for(state="visible", timeout=15_000)
        box = long_card.bounding_box()
        if box is not None:
            break
        page.wait_for_timeout(100)
    assert box is not None and box["x"] + box["width"] <= width and box["width"] < 600, box
    name = long_card.locator(".name bdi")
    assert name.get_attribute("title") == LONG_NAME
    assert page.evaluate("""id => { const n = document.querySelector(
      `.learner[data-learner-id="${id}"] .name`); return n.scrollWidth > n.clientWidth; }""",
                         long_id)  # cut short (ellipsis), not stretched
    # 7. a right-to-left override cannot turn "evil" into "live"
    mallory = page.locator(f'.learner[data-learner-id="{mallory_id}"] .name')
    mallory.wait_for(state="visible")
    assert "evil Mallory" in mallory.inner_text() and not BIDI.search(mallory.inner_text())
    assert mallory.locator("bdi").count() == 1
    assert page.evaluate("""id => getComputedStyle(document.querySelector(
      `.learner[data-learner-id="${id}"] .name bdi`)).unicodeBidi""", mallory_id) == "isolate"
    attention = page.locator(f'.attention-item[data-learner-id="{mallory_id}"]')
    assert "evil Mallory" in attention.inner_text() and not BIDI.search(attention.inner_text())
    # 9. the dashed series has a dashed swatch
    dashed = page.locator("#timeline-legend .swatch.dashed")
    assert dashed.count() == 1
    assert "(dashed)" in dashed.locator("xpath=..").inner_text()
    style = page.evaluate("""() => { const s = getComputedStyle(
      document.querySelector('#timeline-legend .swatch.dashed'));
      return [s.borderTopStyle, s.backgroundColor]; }""")
    assert style == ["dashed", "rgba(0, 0, 0, 0)"], style
    web.shot(page, "dashboard-names")
    assert not errors, errors
    page.close()
    # 10. a favicon, linked from every page
    r = browser.request.get(url + "/favicon.ico")
    assert r.ok and r.headers["content-type"].startswith("image/svg+xml"), r.status
    assert b"<svg" in r.body()
    for path in ("/", "/learn", "/dashboard"):
        html = browser.request.get(url + path).text()
        assert '<link rel="icon" href="/favicon.ico"' in html, path
