"""Checks every request passes before any route sees it (ASGI middleware):

* :class:`ControlCharacters`: a path or query string with a control character (NUL, a line
  break, DEL...) is refused with 422: no name, id or code holds one, and PostgreSQL cannot
  store NUL (it would fail with a server error);
* :class:`AllowedHosts`: a request (or WebSocket) whose Host header is not one of the
  service's own names is refused with 421 (a page of another site that rebinds its DNS
  name to this server's address sends its own name);
* :class:`NoStore`: answers of the API (personal data: exports, timelines, summaries) are
  never kept by a browser or a proxy (``Cache-Control: no-store``).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes, urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .schemas import CONTROL

#: The names a loopback server is reached by (``localhost`` and its IP addresses).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int,
                  detail: str) -> None:
    if scope["type"] == "websocket":  # before accepting: the ASGI server answers 403
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


class ControlCharacters:
    """Refuse a request whose path or query string holds a control character (422)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope.get("path", "")
            query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
            if CONTROL.search(path) or CONTROL.search(query.decode("latin-1")):
                return await _refuse(scope, receive, send, 422,
                                     "the address holds a control character (such as NUL); "
                                     "no name, code or id has one")
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """The name of a Host header's value, lower case, without its port."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(public_url: str, extra: str) -> frozenset[str]:
    """The Host names the service answers: loopback's, that of ``public_url`` and those
    in ``extra`` (comma-separated; "*": any)."""
    names = set(LOOPBACK_HOSTS)
    if public_url:
        names.add(host_name(urlsplit(public_url).netloc.rsplit("@", 1)[-1]))
    names.update(host_name(x) for x in extra.split(",") if x.strip())
    return frozenset(names)


class AllowedHosts:
    """Refuse a request whose Host is not one of ``hosts`` (421 Misdirected Request)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and "*" not in self.hosts:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.hosts:
                return await _refuse(scope, receive, send, 421,
                                     "this server does not answer to that host name; add it "
                                     "to --allowed-hosts or --public-url")
        await self.app(scope, receive, send)


class NoStore:
    """``Cache-Control: no-store`` on the API's answers that do not set their own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(("/api/", "/lti/")):
            return await self.app(scope, receive, send)

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_header)
