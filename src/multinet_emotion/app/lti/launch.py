"""The LTI 1.3 tool: OIDC login, launch, roles to pages, learner sign-in on consent, the
instructor's course-scoped dashboard token, and Deep Linking.

Every check of the platform's id_token is pylti1p3's (signature against the platform's
JWKS, issuer, audience = client id, deployment id, state, nonce, message claims), with the
changes in :mod:`.adapters` (nonce used up last, ``exp``/``iat`` required). What the tool
signs for its own pages (the learner's one-hour ticket, the instructor's dashboard token)
is a JWT made and checked by PyJWT with the tool's key.

Nothing is stored for a refused launch. A learner's launch stores nothing about them: the
learner page gets a ticket, shows the consent text, and only on agreement does
:meth:`LtiService.learner_sign_in` make the learner row (with its link to the LTI user).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import jwt
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.message_launch import TJwtData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..learners.consent import check_consent
from ..service import ServiceError
from ..settings import Settings
from ..store import Store, new_id
from . import pages
from .adapters import (
    LAUNCH_DATA_LIFETIME,
    DatabaseSessionService,
    DatabaseStorage,
    StarletteCookieService,
    StarletteMessageLaunch,
    StarletteOIDCLogin,
    StarletteRequest,
)
from .keys import ToolKey, load_or_create
from .platforms import Platforms, ToolConf
from .spec import ORIGIN
from .store import LtiRecords

log = logging.getLogger(__name__)

CONTEXT = "https://purl.imsglobal.org/spec/lti/claim/context"
#: Who signs the tool's own tokens, and for what.
TOOL_ISSUER = "multinet-emotion"
LEARNER_AUDIENCE = "multinet-emotion/lti-learner"
#: The launch state's key of a learner ticket not traded yet (its jti follows).
TICKET_KEY = "lti-ticket-"
INSTRUCTOR_AUDIENCE = "multinet-emotion/lti-instructor"
#: How long an instructor's dashboard stays open after a launch (a lesson or two).
INSTRUCTOR_SECONDS = 4 * 3600
#: Seconds a login's nonce and state wait for its launch (which follows within seconds).
LOGIN_LIFETIME = 600
#: At most this many logins' and launches' values wait at once (each login stores one row
#: or two): beyond, logins are refused (503) until some expire.
MAX_PENDING_VALUES = 20_000
#: How long frame-ancestors keeps the registered origins before reading them again.
ORIGINS_TTL = 10.0
#: The title of the link Deep Linking places in a course.
LINK_TITLE = "Emotion-aware learning (MultiNetEmotion)"


class LaunchRefused(Exception):
    """A login or launch that was refused: an HTML page with a 4xx status."""

    def __init__(self, status: int, title: str, message: str, hint: str, detail: str = ""):
        super().__init__(f"{title}: {detail or message}")
        self.status, self.title, self.message, self.hint, self.detail = \
            status, title, message, hint, detail

    def response(self) -> HTMLResponse:
        return HTMLResponse(pages.error_page(self.title, self.message, self.hint, self.detail),
                            status_code=self.status, headers={"Cache-Control": "no-store"})


class TicketRefused(ServiceError):
    status = 401


AGAIN = "Open the tool again from your course."
ASK = "Ask the site's operator to check the platform's registration (multinet-emotion " \
      "platform list)."


def refusal(e: Exception) -> LaunchRefused:
    """A pylti1p3 error as a page that says what failed and what to do."""
    text = str(e)
    low = text.lower()
    if "unknown issuer" in low or "could not find registration" in low:
        return LaunchRefused(403, "Unknown platform", "This learning platform is not "
                             "registered with this tool.", ASK, text)
    if "wrong audience" in low or "client id not registered" in low:
        return LaunchRefused(403, "Wrong audience", "The launch was meant for another tool "
                             "(its audience is not this tool's client id).", ASK, text)
    if "deployment" in low:
        return LaunchRefused(403, "Unknown deployment", "This deployment of the tool is not "
                             "registered for the platform.", ASK, text)
    if "is missing the" in low:
        return LaunchRefused(400, "Launch refused", "The launch message lacks a claim that "
                             "LTI 1.3 requires.", ASK, text)
    if "expired" in low:
        return LaunchRefused(401, "Launch expired", "The launch message has expired.",
                             AGAIN + " Check that the server's clock is right.", text)
    if "nonce" in low:
        return LaunchRefused(401, "Launch already used", "This launch was already used (or its "
                             "login expired); a launch counts once.", AGAIN, text)
    if "signature" in low or "public key" in low or "decode id_token" in low:
        return LaunchRefused(401, "Launch not trusted", "The launch message's signature does "
                             "not match the platform's published keys.", ASK, text)
    if "state" in low:
        return LaunchRefused(400, "Launch not recognised", "The launch does not match a login "
                             "started in this browser (the browser may block cookies in the "
                             "course page's frame).", AGAIN + " If it happens again, open the "
                             "tool in a new window.", text)
    if "missing id_token" in low or "jwt" in low:
        return LaunchRefused(400, "Not a launch", "This address takes launches from a "
                             "learning platform.", AGAIN, text)
    return LaunchRefused(400, "Launch refused", "The launch message is not valid.", AGAIN, text)


@dataclass(frozen=True)
class Who:
    issuer: str
    sub: str
    name: str
    class_id: str
    course: str


class LtiService:
    """The tool over one store and one key pair (the app context's ``lti``)."""

    def __init__(self, store: Store, settings: Settings, key: ToolKey | None = None,
                 key_path: Path | None = None, clock: Callable[[], float] = time.time):
        self.store, self.settings, self.clock = store, settings, clock
        self.records = LtiRecords(store)
        self.platforms = Platforms(self.records)
        self._key, self._key_path, self._key_lock = key, key_path, threading.Lock()
        self._origins: tuple[float, list[str]] = (-1e18, [])

    @property
    def key(self) -> ToolKey:
        """The tool's key pair, read (or made) at first use: an app that never sees an LTI
        request leaves the data directory alone."""
        with self._key_lock:
            if self._key is None:
                self._key = load_or_create(self._key_path)[0]
            return self._key

    @property
    def tool_conf(self) -> ToolConf:
        return ToolConf(self.records, self.key)

    # --- pylti1p3 pieces -----------------------------------------------------------------

    def _pieces(self, params: Mapping[str, str], cookies: Mapping[str, str], secure: bool
                ) -> tuple[StarletteRequest, DatabaseSessionService, StarletteCookieService]:
        request = StarletteRequest(params, cookies, secure)
        return (request, DatabaseSessionService(request, DatabaseStorage(self.records)),
                StarletteCookieService(request))

    def frame_origins(self) -> list[str]:
        """The registered platforms' origins (read again after :data:`ORIGINS_TTL`)."""
        at, origins = self._origins
        now = time.monotonic()
        if now - at > ORIGINS_TTL:
            # strictly origins (a registration made before they were checked could hold
            # anything): nothing else reaches the pages' CSP
            origins = [o for o in self.platforms.frame_origins() if ORIGIN.fullmatch(o)]
            self._origins = (now, origins)
        return origins

    # --- login and launch ----------------------------------------------------------------

    def login(self, params: Mapping[str, str], cookies: Mapping[str, str], secure: bool,
              launch_url: str) -> Response:
        """OIDC third-party initiated login: to the platform's authorization endpoint."""
        request, session, jar = self._pieces(params, cookies, secure)
        session.set_launch_data_lifetime(LOGIN_LIFETIME)  # its nonce and state, not an hour
        self.records.purge_values()  # nonces and launch data past their time
        if self.records.count_values() >= MAX_PENDING_VALUES:
            log.warning("LTI login refused: %d logins and launches pending",
                        MAX_PENDING_VALUES)
            raise LaunchRefused(503, "Too many launches at once", "The tool has too many "
                                "logins waiting for their launch right now.",
                                "Try again in a few minutes.")
        try:
            response = StarletteOIDCLogin(request, self.tool_conf, session, jar) \
                .redirect(launch_url)
        except (OIDCException, LtiException) as e:
            log.info("LTI login refused: %s", e)
            raise refusal(e) from None
        return response

    def launch(self, params: Mapping[str, str], cookies: Mapping[str, str],
               secure: bool) -> Response:
        """Check the id_token and send the user to their page."""
        request, session, jar = self._pieces(params, cookies, secure)
        launch = StarletteMessageLaunch(request, self.tool_conf, session, jar, self.records)
        try:
            body: Mapping[str, Any] = launch.get_launch_data()
            deep_link = launch.is_deep_link_launch()
            teaches = (launch.check_teacher_access() or launch.check_teaching_assistant_access()
                       or launch.check_staff_access())
            learns = launch.check_student_access()
        except (LtiException, OIDCException) as e:
            log.info("LTI launch refused: %s", e)
            raise refusal(e) from None
        context = body.get(CONTEXT) or {}
        if not context.get("id"):
            raise LaunchRefused(400, "Not in a course", "The tool was launched outside a "
                                "course; it needs a course to know the class.",
                                "Add the tool to a course and open it there.")
        if not (teaches or learns) or (deep_link and not teaches):
            roles = ", ".join(r.rsplit("#", 1)[-1] for r in body.get(
                "https://purl.imsglobal.org/spec/lti/claim/roles", [])) or "none"
            raise LaunchRefused(403, "No page for your role", f"Your role in this course "
                                f"({roles}) has no page in this tool: learners get the "
                                "learner page, instructors the class dashboard.",
                                "Ask your instructor if you think this is wrong.")
        who = self._who(body, context)
        if deep_link:
            log.info("LTI deep linking request from %s for class %s", who.issuer, who.class_id)
            return HTMLResponse(pages.deep_link_page(launch.get_launch_id(), who.course,
                                                     LINK_TITLE),
                                headers={"Cache-Control": "no-store"})
        if teaches:
            token = self._sign({"aud": INSTRUCTOR_AUDIENCE, "platform": who.issuer,
                                "sub": who.sub, "class_id": who.class_id,
                                "itk": self._instructor_mark()}, INSTRUCTOR_SECONDS)
            log.info("LTI instructor launch from %s for class %s", who.issuer, who.class_id)
            return RedirectResponse(f"/dashboard?class={quote(who.class_id)}#token={token}",
                                    status_code=303)
        jti = secrets.token_urlsafe(16)  # the ticket is traded for a token once
        self.records.set_value(TICKET_KEY + jti, True, self.clock() + LAUNCH_DATA_LIFETIME)
        ticket = self._sign({"aud": LEARNER_AUDIENCE, "platform": who.issuer, "sub": who.sub,
                             "name": who.name, "class_id": who.class_id, "course": who.course,
                             "jti": jti}, LAUNCH_DATA_LIFETIME)
        return RedirectResponse(f"/learn#lti={ticket}", status_code=303)

    def _who(self, body: Mapping[str, Any], context: Mapping[str, Any]) -> Who:
        """The user and their class: a class per course, made at its first launch."""
        issuer, context_id = body["iss"], str(context["id"])
        course = str(context.get("title") or context.get("label") or context_id)[:100]
        class_id = self.records.class_for(issuer, context_id)
        if class_id is None:
            digest = sha256(f"{issuer}\n{context_id}".encode()).hexdigest()[:12]
            row = self.store.ensure_class(f"lti-{digest}", course)
            class_id = self.records.link_context(issuer, context_id, row.id)
        name = str(body.get("name") or " ".join(
            str(body.get(k) or "") for k in ("given_name", "family_name")).strip())
        return Who(issuer, str(body["sub"]), name[:100], class_id, course)

    # --- the tool's own tokens -----------------------------------------------------------

    def _sign(self, claims: dict[str, Any], seconds: float) -> str:
        now = int(self.clock())
        return jwt.encode({**claims, "iss": TOOL_ISSUER, "iat": now, "exp": now + int(seconds)},
                          self.key.private_pem, algorithm="RS256",
                          headers={"kid": self.key.kid})

    def _instructor_mark(self) -> str:
        """A mark of the instructor token (not the token): dashboard tokens carry it, so
        that replacing the instructor token revokes them too."""
        return sha256(b"multinet-lti-dashboard\n" + self.settings.instructor_token.encode()
                      ).hexdigest()[:16]

    def _verify(self, token: str, audience: str) -> dict[str, Any] | None:
        try:
            return jwt.decode(token, self.key.public_pem, algorithms=["RS256"],
                              audience=audience, issuer=TOOL_ISSUER,
                              options={"require": ["exp", "iat", "sub", "platform"]})
        except jwt.InvalidTokenError:
            return None

    def instructor_class(self, token: str) -> str | None:
        """The class an LTI instructor's dashboard token opens (None: not such a token,
        expired, or its platform is no longer registered)."""
        if token.count(".") != 2:
            return None
        claims = self._verify(token, INSTRUCTOR_AUDIENCE)
        if claims is None or not self.records.platforms(claims["platform"]):
            return None
        if not secrets.compare_digest(str(claims.get("itk", "")), self._instructor_mark()):
            return None  # made under an instructor token since replaced
        return str(claims.get("class_id") or "") or None

    def learner_sign_in(self, ticket: str, consent: bool, consent_version: str | None
                        ) -> dict[str, Any]:
        """On agreement: the learner of the ticket's LTI user (made now if new), with a new
        bearer token (an earlier one of theirs stops working)."""
        claims = self._verify(ticket, LEARNER_AUDIENCE)
        if claims is None:
            raise TicketRefused("the launch ticket is not valid or has expired; open the tool "
                                "again from your course (nothing was stored)")
        if not self.records.platforms(claims["platform"]):
            raise TicketRefused("the platform that launched you is no longer registered "
                                "(nothing was stored)")
        version = check_consent(self.settings, consent, consent_version)
        if not self.records.take_value(TICKET_KEY + str(claims.get("jti", ""))):
            raise TicketRefused("this launch ticket was used already; open the tool again "
                                "from your course (nothing was stored)")
        token = secrets.token_urlsafe(24)
        learner_id, created = self.records.sign_in_learner(
            claims["platform"], claims["sub"], str(claims.get("name") or ""), version,
            new_id()[:16], token, self.clock())
        log.info("LTI learner %s %s", learner_id, "agreed and was created" if created
                 else "signed in again")
        course = self.store.get_class(claims["class_id"])
        return {"learner_id": learner_id, "name": str(claims.get("name") or ""),
                "token": token, "class_id": claims["class_id"],
                "class_name": course.name if course else claims["class_id"],
                "join_code": course.join_code if course else "", "created": created}

    # --- deep linking --------------------------------------------------------------------

    def deep_link_response(self, launch_id: str, place: bool, launch_url: str) -> Response:
        """The signed LtiDeepLinkingResponse (one LTI resource link, or none when the
        instructor cancelled), form-posted back to the platform. A launch answers once."""
        request, session, jar = self._pieces({}, {}, False)
        data = session.get_launch_data(launch_id) if launch_id.startswith(
            "lti1p3-launch-") else None
        if not data or not session.storage.take_value(launch_id):
            raise LaunchRefused(400, "Nothing to add", "This page has expired or was already "
                                "answered.", "Start adding the tool again from the course.")
        launch = StarletteMessageLaunch(request, self.tool_conf, session, jar, self.records)
        launch.set_launch_id(launch_id).set_auto_validation(enable=False) \
            .set_jwt(cast(TJwtData, {"body": data})).set_restored()
        try:
            launch.validate_registration()
            link = launch.get_deep_link()
            resources = [DeepLinkResource().set_url(launch_url).set_title(LINK_TITLE)] \
                if place else []
            signed = link.get_response_jwt(resources)
        except LtiException as e:
            raise refusal(e) from None
        # there: get_deep_link() refuses a launch without them
        settings = cast(Mapping[str, Any],
                        data.get("https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"))
        return HTMLResponse(pages.deep_link_return(settings["deep_link_return_url"], signed,
                                                   place),
                            headers={"Cache-Control": "no-store"})
