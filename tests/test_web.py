"""The web app in a real browser: Debian's Chromium driven by Playwright, with a fake camera.

The fake camera plays a Y4M clip of a real face (a FER2013 test face when ../shared/data is
present, a drawn face otherwise), darkened so that the small test model behind the real
EmotionDetector reads it as "sad"; a short test policy turns that into a recommendation
within seconds. Screenshots go to reports/screenshots/ (ignored by git).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from wsschema import check_messages

from multinet_emotion.app import Settings, create_app
from multinet_emotion.app.analysis import detector_factory

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
INSTRUCTOR = "web-test-instructor-token"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

POLICY = """\
version: 1
cooldown: 60
max_gap: 5
min_face_coverage: 0.6
rules:
  - name: persistent_negative
    states: [angry, sad, fear]
    min_duration: 6
    min_share: 0.6
    kinds: {break: 0.5, encouragement: 0.5}
attention:
  states: [angry, sad, fear]
  min_duration: 4
  min_share: 0.6
"""

CATALOG = """\
items:
  - {id: b1, title: "A two-minute breathing break", kind: break, url: "/", duration: 120}
  - {id: e1, title: "Mistakes are how you learn", kind: encouragement, url: "/", duration: 60}
"""

pytestmark = [pytest.mark.slow]


def _face_image() -> tuple[np.ndarray, str]:
    """A grey face the Haar cascade finds: FER2013 when present, else a drawing."""
    import cv2
    from conftest import FER2013_DIR, _haar_finds, draw_face
    test_dir = FER2013_DIR / "test"
    if test_dir.is_dir():
        for label in ("sad", "neutral", "angry", "happy"):
            for path in sorted((test_dir / label).glob("*.jpg"))[:30]:
                img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if img is not None and img.std() > 30 and _haar_finds(img, 165):
                    return img, f"FER2013 {label}/{path.name}"
    return draw_face(160), "drawn face"


def write_y4m(path: Path, face: np.ndarray, frames: int = 10) -> Path:
    """A 640x480 4:2:0 Y4M clip: the face, dark, on a grey gradient (so U = V = 128),
    placed as conftest's Haar check places it."""
    import cv2
    width, height = 640, 480
    frame = np.tile(np.linspace(60, 180, width).astype(np.uint8), (height, 1))
    patch = cv2.resize(face, (165, 165), interpolation=cv2.INTER_CUBIC) * 0.45  # dark: "sad"
    frame[100:265, 200:365] = np.clip(patch, 0, 255).astype(np.uint8)
    chroma = np.full((height // 2) * (width // 2), 128, np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + frame.tobytes() + chroma + chroma)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app, port: int | None = None, **config) -> Iterator[str]:  # noqa: ANN001
    """``app`` served on a loopback port by uvicorn in a thread, with its lifespan (the xAPI
    sender, the sample writer's flush); yields its base URL. ``config``: more uvicorn
    settings (ssl_certfile, ssl_keyfile). Leaving stops it and closes its store."""
    import uvicorn
    port = port or _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        **config))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.started, "the test server did not start"
        yield f"{'https' if 'ssl_certfile' in config else 'http'}://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        app.state.context.service.store.close()


def launch_chromium(tmp_path_factory, *args: str) -> Iterator:  # noqa: ANN001
    """Debian's Chromium, headless, its fake camera showing a FER2013 face (skips the test
    when Chromium or Playwright is missing). ``args``: more command-line flags."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    face, _source = _face_image()
    clip = write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m", face)
    with sync_api.sync_playwright() as p:  # a fresh temporary profile for each launch
        chrome = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                   args=[*FLAGS, *args,
                                         f"--use-file-for-fake-video-capture={clip}"])
        yield chrome
        chrome.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, brightness_onnx_model):  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("web")
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "catalog.yaml").write_text(CATALOG)
    factory, note = detector_factory(brightness_onnx_model)
    assert factory is not None, note
    settings = Settings(database_url=f"sqlite:///{tmp / 'web.db'}", instructor_token=INSTRUCTOR,
                        policy=tmp / "policy.yaml", catalog=tmp / "catalog.yaml",
                        frame_width=640,  # full frames, as the Haar check in conftest
                        signup_rate=0, session_rate=0)  # many sign-ups from one address
    app = create_app(settings, analyzer_factory=factory, rng=random.Random(0))
    with running(app) as url:
        yield {"url": url, "app": app, "tmp": tmp}


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):  # noqa: ANN001
    yield from launch_chromium(tmp_path_factory)


@pytest.fixture
def browser(chromium):  # noqa: ANN001
    """A browser context; the tests' own waits use eval, which the pages' CSP forbids."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=True,
                                   permissions=["camera"])
    yield context
    context.close()


def capture_ws(page) -> tuple[list, list]:  # noqa: ANN001
    """The messages the page sends and receives over its WebSockets, as they travel (text
    as str, camera frames as bytes)."""
    sent: list = []
    received: list = []

    def on_websocket(ws) -> None:  # noqa: ANN001
        ws.on("framesent", lambda payload: sent.append(payload))  # not a bound method:
        ws.on("framereceived", lambda payload: received.append(payload))  # Playwright tags it

    page.on("websocket", on_websocket)
    return sent, received


def check_ws(page, base_url: str, sent: list, received: list) -> tuple[set, set]:  # noqa: ANN001
    """Check the captured messages against the schema the server publishes; the types of
    the text messages sent and received."""
    schema = page.request.get(base_url + "/api/ws-schema").json()
    check_messages(schema, sent, received)
    return ({json.loads(m)["type"] for m in sent if isinstance(m, str)},
            {json.loads(m)["type"] for m in received if isinstance(m, str)})


def class_code(app, class_id: str) -> str:  # noqa: ANN001
    """The join code of ``class_id`` on the test server (the class made when missing)."""
    return app.state.context.service.store.ensure_class(class_id).join_code


def shot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_pages_run_under_their_content_security_policy(server, chromium) -> None:
    context = chromium.new_context()  # no CSP bypass here
    violations: list[str] = []
    for path, ready in (("/learn", "#signup"), ("/dashboard", "#login")):
        page = context.new_page()
        page.on("console", lambda m: violations.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: violations.append(str(e)))
        page.goto(server["url"] + path)
        page.locator(ready).wait_for(state="visible", timeout=15_000)
        page.close()
    context.close()
    assert not violations, violations


def test_learner_consents_sees_emotion_and_accepts_a_recommendation(server, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sent, received = capture_ws(page)
    page.goto(server["url"] + "/learn")
    page.fill("#name", "Web Learner")
    page.fill("#join-code", class_code(server["app"], "web-class"))
    page.click("#continue")
    consent = page.locator("#consent")
    consent.wait_for(state="visible")
    assert "No image is stored" in consent.inner_text()
    # the emotions' names come from the server (emotions.ADJECTIVES), not from the page
    assert "(angry, afraid, happy, neutral, sad or surprised)" in consent.inner_text()
    shot(page, "learner-consent")
    page.click("#agree")
    # the real detector reads the (dark) face from the fake camera as sad
    page.wait_for_function(
        "document.getElementById('current-label').textContent === 'sad'", timeout=60_000)
    # the percentage beside the label is the label's own: its bar's
    note, bar = page.evaluate("""() => [document.getElementById('current-note').textContent,
        [...document.querySelectorAll('#current-bars .bar')]
          .find(b => b.textContent.startsWith('sad')).lastChild.textContent]""")
    assert note == f"(sad {bar})", (note, bar)
    card = page.locator(".rec").first
    card.wait_for(state="visible", timeout=90_000)
    assert "You seemed down for the last" in card.inner_text()
    shot(page, "learner-recommendation")
    rec_id = card.get_attribute("data-id")
    with browser.expect_page(timeout=10_000):  # "Open it" opens the content in a new tab
        card.locator(".rec-accept").click()
    page.wait_for_function("document.querySelector('.rec.done') !== null")
    store = server["app"].state.context.service.store
    deadline = time.monotonic() + 10
    while store.get_recommendation(rec_id).status != "accepted" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.get_recommendation(rec_id).status == "accepted"
    card.locator(".thumb-up").click()
    page.wait_for_function("document.querySelector('.rec-status').textContent.includes('Thanks')")
    # the chosen thumb shows as pressed, and the thanks says which one it was
    assert card.locator(".thumb-up").get_attribute("aria-pressed") == "true"
    assert card.locator(".thumb-down").get_attribute("aria-pressed") == "false"
    assert "helped" in card.locator(".rec-status").inner_text()
    deadline = time.monotonic() + 10
    while store.export_learner(store.get_recommendation(rec_id).learner_id)["feedback"] == [] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    shot(page, "learner-accepted")
    # while the learner is live, the dashboard shows them, flagged for attention
    learner_id = store.get_recommendation(rec_id).learner_id
    board = browser.new_page()
    board.goto(server["url"] + f"/dashboard?class=web-class#token={INSTRUCTOR}")
    learner_card = board.locator(f'.learner[data-learner-id="{learner_id}"]')
    learner_card.wait_for(state="visible", timeout=30_000)
    assert "Web Learner" in learner_card.inner_text()
    assert "token" not in board.url  # the token leaves the address bar
    board.wait_for_function(
        "document.querySelector('.learner .dot.live') !== null && "
        "document.querySelector('#attention .attention-item') !== null", timeout=30_000)
    assert "Web Learner" in board.locator("#attention").inner_text()
    # the card: the label shown now with its own share, and the mix over the session and
    # the last minutes (what the consent promises the instructor)
    assert learner_card.locator(".state").text_content().startswith("sad ")
    for which in ("recent", "session"):
        mix = learner_card.locator(f'.mix[data-mix="{which}"]')
        assert "sad" in mix.text_content() and mix.locator(".stack span").count() == 6
    assert board.locator("#class-select").input_value() == "web-class"
    board.wait_for_timeout(300)
    shot(board, "dashboard")
    board.close()
    # the camera can be switched off and on
    page.click("#camera-toggle")
    assert page.locator("#camera-toggle").inner_text() == "Turn camera on"
    assert "nothing is analysed" in page.locator("#status").inner_text()
    assert not errors, errors
    # what the page sent and got over the WebSocket is what the server's schema says
    sent_types, received_types = check_ws(page, server["url"], sent, received)
    assert sent_types == {"hello"} and any(isinstance(m, bytes) for m in sent)  # + frames
    assert {"ready", "result", "recommendation"} <= received_types
    page.close()


def test_dashboard_refuses_a_wrong_token(server, browser) -> None:
    bad = browser.new_page()
    bad.goto(server["url"] + "/dashboard#token=wrong-token")
    bad.locator("#login-error").wait_for(state="visible", timeout=15_000)
    assert "not accepted" in bad.locator("#login-error").inner_text()
    assert bad.locator("#board").is_hidden()
    bad.close()


def test_learning_without_a_camera(server, browser) -> None:
    page = browser.new_page()
    page.add_init_script("""
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('no camera', 'NotFoundError'));""")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server["url"] + "/learn")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.fill("#name", "No Camera")
    page.fill("#join-code", class_code(server["app"], "web-class"))
    page.click("#continue")
    page.click("#agree")
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert "no camera was found" in notice.inner_text()
    assert "keep learning" in notice.inner_text()
    shot(page, "learner-no-camera")
    assert not errors, errors
    page.close()


def test_learner_page_says_when_analysis_is_unavailable(browser, tmp_path) -> None:  # noqa: ANN001
    """A server without a model still starts; the page says so and sends no pictures."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'none.db'}",
                              instructor_token=INSTRUCTOR, analysis="off"))
    with running(app) as url:
        page = browser.new_page()
        sent, received = capture_ws(page)
        page.goto(f"{url}/learn")
        page.evaluate("localStorage.clear()")
        page.reload()
        page.fill("#name", "Offline Model")
        page.fill("#join-code", class_code(app, "offline"))
        page.click("#continue")
        page.click("#agree")
        notice = page.locator("#notice")
        page.wait_for_function(
            "document.getElementById('notice').textContent.includes('unavailable')",
            timeout=30_000)
        assert "camera stays off" in notice.inner_text()
        assert "keep learning" in notice.inner_text()
        page.wait_for_timeout(1500)  # two frame periods: nothing is sent
        assert page.evaluate("state.frames") == 0
        assert page.evaluate("state.stream") is None  # the camera was never opened
        assert page.locator("#camera-toggle").inner_text() == "Turn camera on"
        shot(page, "learner-analysis-unavailable")
        assert check_ws(page, url, sent, received) == ({"hello"}, {"ready"})
        assert json.loads(received[0])["analysis"] is False
        page.close()
