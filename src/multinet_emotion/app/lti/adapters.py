"""pylti1p3 on Starlette: the request wrapper, cookie service, session service (its state
in our database), redirect, and the OIDC login and message launch classes that use them.

pylti1p3 ships adapters for Django and Flask; these follow the same extension points
(``Request``, ``CookieService``, ``SessionService`` + ``LaunchDataStorage``, ``Redirect``,
``OIDCLogin.get_redirect``, ``MessageLaunch._get_request_param``). pylti1p3 is synchronous
(it fetches the platform's JWKS with ``requests``): routes run it in a worker thread.

Two changes to pylti1p3's launch checks, both stricter:

* the nonce is *used up* (deleted in one statement, so exactly one launch in any process
  gets it) and only after every other check passed, so a refused launch changes nothing;
* ``exp`` and ``iat`` are required claims, and issuer and client id (the audience) are
  told apart when a registration is not found.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
from pylti1p3.cookie import CookieService
from pylti1p3.exception import LtiException
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.request import Request
from pylti1p3.session import SessionService
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .pages import redirect_page
from .store import LtiRecords

#: Seconds the state cookie, the nonce and the launch data live (the login must be
#: followed by its launch within this time; a deep-linking page must be confirmed in it).
LAUNCH_DATA_LIFETIME = 3600
#: Seconds to wait for a platform's JWKS.
JWKS_TIMEOUT = 10.0


class StarletteRequest(Request):
    """What pylti1p3 reads of a request: its parameters (query for GET, form for POST),
    cookies and whether it came over TLS."""

    def __init__(self, params: Mapping[str, str], cookies: Mapping[str, str], secure: bool):
        super().__init__()
        self._params, self._cookies, self._secure = dict(params), dict(cookies), secure
        self._session: dict[str, Any] = {}  # unused: state lives in DatabaseStorage

    @property
    def session(self) -> dict[str, Any]:
        return self._session

    def get_param(self, key: str) -> str:
        return self._params.get(key)  # type: ignore[return-value]  # None when absent

    def get_cookie(self, key: str) -> str | None:
        return self._cookies.get(key)

    def is_secure(self) -> bool:
        return self._secure


class StarletteCookieService(CookieService):
    """Cookies pylti1p3 sets (the OIDC state), put on the response by :meth:`apply`.

    Over https they are ``SameSite=None; Secure; Partitioned``: the browser sends them on
    the platform's cross-site form post into the tool's iframe, and, partitioned by the
    platform's site (CHIPS), they are kept by browsers that block third-party cookies (the
    login and the launch both happen in the same frame of the same course page). Over plain
    http a browser refuses ``SameSite=None`` without ``Secure``, so they are
    ``SameSite=Lax``: a launch then works only when the platform and the tool are the same
    site."""

    def __init__(self, request: StarletteRequest):
        self._request = request
        self._to_set: dict[str, tuple[str, int | None]] = {}

    def _key(self, name: str) -> str:
        return f"{self._cookie_prefix}-{name}"

    def get_cookie(self, name: str) -> str | None:
        return self._request.get_cookie(self._key(name))

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self._to_set[self._key(name)] = (str(value), exp)

    def apply(self, response: Response) -> Response:
        secure = self._request.is_secure()
        for key, (value, exp) in self._to_set.items():
            response.set_cookie(key, value, max_age=exp, path="/lti/", httponly=True,
                                secure=secure, samesite="none" if secure else "lax")
            if secure:  # CHIPS (Starlette's set_cookie has it on Python 3.14 and later only)
                header, cookie = response.raw_headers[-1]
                assert header == b"set-cookie"
                response.raw_headers[-1] = (header, cookie + b"; Partitioned")
        return response


class DatabaseStorage(LaunchDataStorage[Any]):
    """pylti1p3's launch data storage in the ``lti_values`` table: shared by every server
    process, each value with an expiry. Not bound to a session cookie (cookies in a
    platform's iframe are often blocked): keys are unguessable (nonces, launch ids), and
    the state is bound to the browser by pylti1p3's state cookie."""

    def __init__(self, records: LtiRecords, lifetime: int = LAUNCH_DATA_LIFETIME):
        super().__init__()
        self.records, self.lifetime = records, lifetime

    def get_session_cookie_name(self) -> None:
        return None

    def can_set_keys_expiration(self) -> bool:
        return True

    def get_value(self, key: str) -> Any:
        return self.records.get_value(self._prepare_key(key))

    def set_value(self, key: str, value: Any, exp: int | None = None) -> None:
        self.records.set_value(self._prepare_key(key), value,
                               time.time() + (exp if exp is not None else self.lifetime))

    def check_value(self, key: str) -> bool:
        return self.get_value(key) is not None

    def take_value(self, key: str) -> bool:
        return self.records.take_value(self._prepare_key(key))


class DatabaseSessionService(SessionService):
    """pylti1p3's session service over :class:`DatabaseStorage`; a nonce can be used up."""

    def __init__(self, request: StarletteRequest, storage: DatabaseStorage):
        super().__init__(request)
        self.storage = storage
        self.set_data_storage(storage)
        self.set_launch_data_lifetime(storage.lifetime)

    def take_nonce(self, nonce: str) -> bool:
        return self.storage.take_value(self._get_key("nonce", nonce))


class StarletteRedirect(Redirect[Response]):
    def __init__(self, location: str, cookies: StarletteCookieService):
        super().__init__()
        self._location, self._cookies = location, cookies

    def do_redirect(self) -> Response:
        return self._cookies.apply(RedirectResponse(self._location, status_code=302))

    def do_js_redirect(self) -> Response:
        # no inline script may run under the pages' CSP: a refresh does the same
        return self._cookies.apply(HTMLResponse(redirect_page(self._location)))

    def set_redirect_url(self, location: str) -> None:
        self._location = location

    def get_redirect_url(self) -> str:
        return self._location


class StarletteOIDCLogin(OIDCLogin):
    def __init__(self, request: StarletteRequest, tool_config: Any,
                 session_service: DatabaseSessionService, cookies: StarletteCookieService):
        super().__init__(request, tool_config, session_service, cookies)

    def get_redirect(self, url: str) -> Redirect[Response]:
        return StarletteRedirect(url, self._cookie_service)

    def get_response(self, html: str) -> Response:
        return self._cookie_service.apply(HTMLResponse(html))


class TimeoutSession(requests.Session):
    """A requests session whose calls time out (pylti1p3 sets none)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", JWKS_TIMEOUT)
        return super().request(*args, **kwargs)


class StarletteMessageLaunch(MessageLaunch):
    """pylti1p3's launch with the order of checks changed so that the nonce is used up
    last, ``exp``/``iat`` required, and clearer messages for unknown platforms."""

    def __init__(self, request: StarletteRequest, tool_config: Any,
                 session_service: DatabaseSessionService, cookies: StarletteCookieService,
                 records: LtiRecords):
        session = TimeoutSession()
        session.headers["User-Agent"] = "multinet-emotion (pylti1p3)"
        super().__init__(request, tool_config, session_service, cookies,
                         requests_session=session)
        self.records = records
        # PyJWT's options mix bools and lists (pylti1p3 types them as bools only)
        jwt_options: dict[str, Any] = {"verify_aud": False, "require": ["exp", "iat"]}
        self.set_jwt_verify_options(jwt_options)

    def _get_request_param(self, key: str) -> str:
        return self._request.get_param(key)

    def validate(self) -> MessageLaunch:
        if self._restored:
            raise LtiException("Can't validate restored launch")
        self._validated = True
        try:
            return (self.validate_state().validate_jwt_format().validate_registration()
                    .validate_jwt_signature().validate_deployment().validate_message()
                    .validate_nonce().save_launch_data())
        except Exception:
            self._validated = False
            raise

    def validate_registration(self) -> MessageLaunch:
        if not self._restored:
            iss, client_id = self.get_iss(), self.get_client_id()
            if not self.records.platforms(iss):
                raise LtiException(f"Unknown issuer: no platform {iss} is registered")
            if self.records.platform(iss, client_id) is None:
                raise LtiException(f"Wrong audience: client id {client_id} is not registered "
                                   f"for {iss}")
        return super().validate_registration()

    def validate_nonce(self) -> MessageLaunch:
        nonce = self._get_jwt_body().get("nonce")
        if not nonce:
            raise LtiException('"nonce" is empty')
        if not self._session_service.take_nonce(nonce):
            raise LtiException("Invalid Nonce")
        return self
