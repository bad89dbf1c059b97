"""A learning platform on loopback, to try LTI launches without an LMS
(``multinet-emotion platform try``) and for the LTI tests: its own RSA key, its JWKS served
over HTTP by a server thread, OIDC authorization that answers with signed id_tokens, a home
page with a learner's and an instructor's launch, a course page that frames the tool, and a
Deep Linking return endpoint that keeps what it got.

Launch messages follow LTI Core 1.3 (section 5: message claims) and Deep Linking 2.0; the
OIDC exchange follows the IMS Security Framework (section 5.1.1: third-party initiated
login, authentication request and response with ``response_mode=form_post``).
"""

from __future__ import annotations

import html
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from jwcrypto.jwk import JWK

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
LEARNER = [ROLE + "Learner"]
INSTRUCTOR = [ROLE + "Instructor"]


def rsa_key() -> tuple[str, dict[str, Any]]:
    """A new private key (PEM) and its public JWK (with kid, alg RS256, use sig)."""
    key = JWK.generate(kty="RSA", size=2048)
    public = json.loads(key.export_public())
    public.update(kid=key.thumbprint(), alg="RS256", use="sig")
    return key.export_to_pem(private_key=True, password=None).decode(), public


@dataclass
class Simulator:
    """The platform. ``issuer`` is its base URL (``host`` may be "localhost" so that it is
    another site than a tool on 127.0.0.1)."""

    host: str = "127.0.0.1"
    client_id: str = "tool-client-1"
    deployment_id: str = "deployment-1"
    tool_url: str = ""
    port: int = 0  # 0: any free port
    received: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.private_pem, self.jwk = rsa_key()
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: str, kind: str = "text/html") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind + "; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/jwks":
                    self._send(200, json.dumps({"keys": [sim.jwk]}), "application/json")
                elif url.path == "/auth":
                    status, page = sim.authorize(query)
                    self._send(status, page)
                elif url.path == "/course":
                    self._send(200, sim.course_page(query["hint"], query.get("allow")))
                elif url.path == "/":
                    self._send(200, sim.home_page())
                elif url.path == "/launch":  # the home page's links: a new launch each time
                    hint = sim.prepare(INSTRUCTOR if query.get("role") == "instructor"
                                       else LEARNER, sub=query.get("sub", "user-1"),
                                       name=query.get("name", "Ada L."))
                    self.send_response(303)
                    self.send_header("Location", f"/course?hint={hint}&allow=camera")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(404, "not found")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path == "/deep-link-return":
                    sim.received.append(form)
                    self._send(200, '<h1 id="returned">Back in the course</h1>')
                else:
                    self._send(404, "not found")

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        # closing never waits for a browser's open connection (a stop must not hang)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    def registration(self) -> dict[str, Any]:
        """What ``platform add`` is given for this platform."""
        return {"issuer": self.issuer, "client_id": self.client_id,
                "deployment_ids": [self.deployment_id],
                "auth_login_url": f"{self.issuer}/auth",
                "auth_token_url": f"{self.issuer}/token",
                "key_set_url": f"{self.issuer}/jwks"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- messages ------------------------------------------------------------------------

    def prepare(self, roles: list[str] = LEARNER, sub: str = "user-1", name: str = "Ada L.",
                context: str = "course-101", deep_link: bool = False,
                **overrides: Any) -> str:
        """A launch the platform will make at the next login with this hint; ``overrides``
        replace claims (None removes one); ``_key`` signs with another private key."""
        hint = uuid.uuid4().hex
        self.pending[hint] = dict(roles=roles, sub=sub, name=name, context=context,
                                  deep_link=deep_link, overrides=overrides)
        return hint

    def claims(self, hint: str, nonce: str) -> dict[str, Any]:
        p = self.pending[hint]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer, "aud": self.client_id, "sub": p["sub"], "nonce": nonce,
            "iat": now, "exp": now + 300, "name": p["name"],
            LTI + "version": "1.3.0",
            LTI + "deployment_id": self.deployment_id,
            LTI + "roles": p["roles"],
            LTI + "context": {"id": p["context"], "title": f"Course {p['context']}",
                              "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"]},
            LTI + "tool_platform": {"guid": "simulator", "name": "LTI simulator"},
        }
        if p["deep_link"]:
            body[LTI + "message_type"] = "LtiDeepLinkingRequest"
            body[DL + "deep_linking_settings"] = {
                "deep_link_return_url": f"{self.issuer}/deep-link-return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"],
                "data": "opaque-platform-data"}
        else:
            body[LTI + "message_type"] = "LtiResourceLinkRequest"
            body[LTI + "resource_link"] = {"id": "link-1", "title": "Emotion-aware learning"}
            body[LTI + "target_link_uri"] = f"{self.tool_url}/lti/launch"
        for k, v in p["overrides"].items():
            if k.startswith("_"):
                continue
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        return body

    def id_token(self, hint: str, nonce: str) -> str:
        key = self.pending[hint]["overrides"].get("_key", self.private_pem)
        return jwt.encode(self.claims(hint, nonce), key, algorithm="RS256",
                          headers={"kid": self.jwk["kid"]})

    def login_params(self, hint: str, deployment: bool = True) -> dict[str, str]:
        """The third-party initiated login the platform sends to the tool."""
        params = {"iss": self.issuer, "login_hint": f"login-{hint}",
                  "target_link_uri": f"{self.tool_url}/lti/launch",
                  "lti_message_hint": hint, "client_id": self.client_id}
        if deployment:
            params["lti_deployment_id"] = self.deployment_id
        return params

    def login_url(self, hint: str) -> str:
        return f"{self.tool_url}/lti/login?{urlencode(self.login_params(hint))}"

    # --- pages ---------------------------------------------------------------------------

    def authorize(self, q: dict[str, str]) -> tuple[int, str]:
        """The OIDC authentication request: checked as a platform would, answered with an
        auto-submitting form that posts the id_token to the redirect URI."""
        expected = {"scope": "openid", "response_type": "id_token",
                    "response_mode": "form_post", "prompt": "none",
                    "client_id": self.client_id}
        wrong = [k for k, v in expected.items() if q.get(k) != v]
        hint = q.get("lti_message_hint", "")
        if wrong or hint not in self.pending or not q.get("nonce") or not q.get("state") \
                or q.get("redirect_uri") != f"{self.tool_url}/lti/launch" \
                or q.get("login_hint") != f"login-{hint}":
            return 400, f"<h1>bad authentication request</h1><p>{html.escape(str(q))}</p>"
        token = self.id_token(hint, q["nonce"])
        return 200, f"""<!doctype html><title>platform</title>
<form id="f" method="post" action="{html.escape(q['redirect_uri'], quote=True)}">
<input type="hidden" name="id_token" value="{token}">
<input type="hidden" name="state" value="{html.escape(q['state'], quote=True)}"></form>
<script>document.getElementById("f").submit();</script>"""

    def home_page(self) -> str:
        """The try-out platform's home: launch the tool as a learner or as the instructor."""
        links = [("learner", "user-1", "Ada L."), ("learner", "user-2", "Grace H."),
                 ("instructor", "teacher-1", "Ms. Teacher")]
        items = "".join(
            f'<li><a href="/launch?role={role}&amp;sub={sub}&amp;name={html.escape(name)}">'
            f"Open the tool as {html.escape(name)} ({role})</a></li>" for role, sub, name in links)
        return f"""<!doctype html><title>Try-out platform</title>
<h1>Course 101 on a try-out learning platform</h1>
<p>This page stands in for an LMS (Moodle, Canvas...): each link launches the tool at
{html.escape(self.tool_url)} with LTI 1.3, as a course page would, inside a frame that may
use the camera.</p><ul>{items}</ul>"""

    def course_page(self, hint: str, allow: str | None) -> str:
        """A course page that frames the tool, as an LMS does (``allow`` on the iframe)."""
        allow_attr = f' allow="{html.escape(allow, quote=True)}"' if allow else ""
        src = html.escape(self.login_url(hint), quote=True)
        return f"""<!doctype html><title>Course</title><h1>Course page</h1>
<iframe id="tool" src="{src}"{allow_attr} width="1000" height="800"></iframe>"""
