"""Full LTI 1.3 launches in Chromium, inside a platform's iframe, as in a real course.

The platform simulator (tests/ltisim.py) serves a course page on http://localhost that
frames the tool; the tool runs over https on 127.0.0.1 (a self-signed certificate the
browser is told to accept), so the two are different sites, as an LMS and a tool are: the
OIDC state cookie must be ``SameSite=None; Secure`` to come back on the platform's
cross-site form post, and the tool's CSP ``frame-ancestors`` must name the platform. The
pages run under their own CSP (no bypass).
"""

from __future__ import annotations

import datetime
import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from ltisim import DL, INSTRUCTOR, LTI, Simulator
from test_web import _free_port, launch_chromium, running, shot

from multinet_emotion.app import Settings, create_app
from multinet_emotion.app.analysis import detector_factory
from multinet_emotion.app.lti.spec import PlatformSpec

pytestmark = [pytest.mark.slow]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (made with cryptography, pylti1p3's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tool(tmp_path_factory, brightness_onnx_model) -> Iterator[dict]:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("lti-web")
    cert, key = self_signed(tmp)
    port = _free_port()
    sim = Simulator(host="localhost", tool_url=f"https://127.0.0.1:{port}")
    factory, note = detector_factory(brightness_onnx_model)
    assert factory is not None, note
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp / "data"))
        settings = Settings(database_url=f"sqlite:///{tmp / 'lti-web.db'}",
                            instructor_token="lti-web-instructor-token", frame_width=640)
        app = create_app(settings, analyzer_factory=factory, rng=random.Random(0))
        app.state.context.lti.platforms.add(PlatformSpec(**sim.registration()))
        with running(app, port, ssl_certfile=str(cert), ssl_keyfile=str(key)):
            yield {"app": app, "sim": sim, "url": sim.tool_url}
    sim.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Iterator:  # noqa: ANN001
    yield from launch_chromium(tmp_path_factory, "--ignore-certificate-errors")


@pytest.fixture
def page(chromium):  # noqa: ANN001
    context = chromium.new_context(viewport={"width": 1200, "height": 1000},
                                   ignore_https_errors=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.requests = []  # every URL the page and its frames asked for
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    context.close()


def course(page, tool: dict, allow: str | None = "camera", **prepare):  # noqa: ANN001
    """Open the platform's course page that frames the tool; the tool's frame."""
    sim: Simulator = tool["sim"]
    hint = sim.prepare(**prepare)
    url = f"{sim.issuer}/course?hint={hint}" + (f"&allow={allow}" if allow else "")
    page.goto(url)
    return page.frame_locator("#tool")


def test_learner_launch_reaches_consent_and_agrees(tool, page) -> None:
    store = tool["app"].state.context.service.store
    before = store.counts()["learners"]
    frame = course(page, tool, sub="browser-learner", name="Lin B.")
    frame.locator("#consent").wait_for(state="visible", timeout=30_000)
    assert "Course course-101" in frame.locator("#consent-class").inner_text()
    assert frame.locator("#signup").is_hidden()  # no class code to type
    assert store.counts()["learners"] == before  # nothing stored before consent
    shot(page, "lti-learner-consent")
    frame.locator("#agree").click()
    frame.locator("#main").wait_for(state="visible", timeout=15_000)
    frame.locator("#status:has-text('camera on')").wait_for(timeout=30_000)
    assert store.counts()["learners"] == before + 1
    assert "Lin B." in frame.locator("#who").inner_text()
    assert not page.errors, page.errors


def test_camera_blocked_by_the_iframe_is_said(tool, page) -> None:
    frame = course(page, tool, allow=None, sub="no-camera-learner")
    frame.locator("#consent").wait_for(state="visible", timeout=30_000)
    frame.locator("#agree").click()
    notice = frame.locator("#notice")
    notice.wait_for(state="visible", timeout=15_000)
    assert "does not let this tool use your camera" in notice.inner_text()
    assert 'allow="camera"' in notice.inner_text()
    shot(page, "lti-camera-blocked")


def test_instructor_launch_opens_the_course_dashboard(tool, page) -> None:
    frame = course(page, tool, roles=INSTRUCTOR, sub="browser-teacher", context="course-303")
    frame.locator("#board").wait_for(state="visible", timeout=30_000)
    assert frame.locator("#login").is_hidden()  # no token to copy
    options = frame.locator("#class-select option")
    assert options.count() == 1  # the course's class only
    assert options.first.inner_text().startswith("Course course-303")
    assert options.first.get_attribute("value").startswith("lti-")
    # what a course's token may not use is not offered: no class form, no code buttons, and
    # the record store's panel is not polled (it would answer 403)
    assert frame.locator("#class-form").is_hidden()
    assert frame.locator(".course-only").is_visible()
    assert frame.locator("#class-rows button").count() == 0
    page.wait_for_timeout(600)
    assert not [u for u in page.requests if "/api/xapi/outbox" in u], page.requests
    shot(page, "lti-instructor-dashboard")
    assert not page.errors, page.errors


def test_deep_linking_places_the_tool(tool, page) -> None:
    sim: Simulator = tool["sim"]
    sim.received.clear()
    frame = course(page, tool, roles=INSTRUCTOR, deep_link=True)
    frame.locator("#place").click(timeout=30_000)
    frame.locator("#returned").wait_for(timeout=15_000)  # back on the platform's page
    [form] = sim.received
    key = tool["app"].state.context.lti.key
    body = jwt.decode(form["JWT"], key.public_pem, algorithms=["RS256"], audience=sim.issuer)
    assert body[LTI + "message_type"] == "LtiDeepLinkingResponse"
    assert body[DL + "content_items"][0]["url"] == f"{tool['url']}/lti/launch"


def test_frame_ancestors_refuses_other_sites(tool, chromium, tmp_path) -> None:
    """A page on another origin than the registered platform cannot frame the tool."""
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "frame-ancestors" in m.text else None)
    other = (tmp_path / "other.html")
    other.write_text(f'<iframe id="tool" src="{tool["url"]}/learn"></iframe>')
    page.goto(other.as_uri())
    page.wait_for_timeout(1500)
    assert blocked, "the tool was framed by an unregistered page"
    context.close()
