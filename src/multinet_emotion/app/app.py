"""The FastAPI application: ``create_app(settings)`` wires store, engine, analysis and pages."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TypedDict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..emotions import ADJECTIVES, COLORS, EMOTIONS
from ..errors import MultiNetError
from ..recommend import Recommender, load_catalog, load_policy
from . import api
from .analysis import AnalysisSlots, AnalyzerFactory, detector_factory
from .browser import BrowserAnalysis, analysis_mode, in_browser
from .browser_routes import CrossOriginIsolation
from .browser_routes import router as browser_routes
from .classes import routes as class_routes
from .connections import Connections
from .context import AppContext
from .guards import AllowedHosts, ControlCharacters, NoStore, allowed_hosts
from .learners import routes as learner_routes
from .lti.launch import LtiService
from .lti.routes import install as install_lti
from .ratelimit import limits_for
from .reports import routes as report_routes
from .service import LearningService, ServiceError
from .sessions import http as session_routes
from .sessions import routes as ws
from .sessions.store import REVOKE_CHANNEL, SharedLive
from .settings import Settings
from .store import Store
from .xapi import XapiService
from .xapi import routes as xapi_routes

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

DESCRIPTION = """\
Emotion-aware recommendations for e-learning. A learner's camera frames (or emotion samples
classified elsewhere) become a timeline of smoothed emotion probabilities; a data-driven
policy turns *sustained* states into at most one explained suggestion per cool-down,
personalised per learner by Thompson sampling over what helped. No image is ever stored.

Authentication: `Authorization: Bearer TOKEN` with a learner token (from `POST
/api/learners`) for the learner routes, or the instructor token for the instructor routes.
"""


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 before any route sees them."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body is larger than {self.max_bytes} bytes; send fewer "
                       "samples per request"}, status_code=413)
        await response(scope, receive, send)


CSP = (b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
       b"connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
       # in-browser analysis compiles WebAssembly (opencv.js, onnxruntime-web); no eval
       b"script-src 'self' 'wasm-unsafe-eval'; "
       b"frame-ancestors ")
COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """The pages may load nothing from elsewhere and are framed only by the registered LTI
    platforms' origins (``frame_ancestors``; none: never framed). (The interactive /docs
    page is FastAPI's own and loads Swagger UI from its CDN: its CSP only forbids framing.)"""

    def __init__(self, app: ASGIApp, frame_ancestors: Callable[[], list[str]] | None = None):
        self.app, self.frame_ancestors = app, frame_ancestors

    def csp(self) -> bytes:
        origins = self.frame_ancestors() if self.frame_ancestors else []
        return CSP + (" ".join(origins).encode("ascii") if origins else b"'none'")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = list(COMMON_HEADERS)
        if not scope.get("path", "").startswith(("/docs", "/redoc")):
            headers.append((b"content-security-policy", self.csp()))
        else:  # Swagger UI's page loads from its CDN, and is framed by no site
            headers += [(b"content-security-policy", b"frame-ancestors 'none'"),
                        (b"x-frame-options", b"DENY")]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def emotions_script() -> str:
    """The labels, colours and names of the emotions, for the pages: stated once in
    emotions.py, never repeated in the JavaScript, CSS or HTML."""
    data = {"EMOTIONS": list(EMOTIONS), "COLORS": COLORS, "ADJECTIVES": ADJECTIVES}
    return '"use strict";\n' + "".join(f"const {k} = Object.freeze({json.dumps(v)});\n"
                                        for k, v in data.items())


def _check_connections(store: Store, settings: Settings) -> None:
    """Warn when the worker processes may open more connections than PostgreSQL takes: it
    would refuse some ("too many clients") and those learners would get errors."""
    try:
        with store.engine.connect() as conn:
            allowed = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
    except Exception:  # noqa: BLE001 - a check only
        return
    wanted = settings.workers * settings.db_connections
    if wanted > allowed - 3:  # PostgreSQL keeps 3 for superusers
        log.warning("%d worker processes x %d connections (MULTINET_DB_CONNECTIONS) = %d, but "
                    "PostgreSQL takes %d: lower MULTINET_DB_CONNECTIONS or raise its "
                    "max_connections, else learners get errors under load", settings.workers,
                    settings.db_connections, wanted, allowed)


def analysis_model(settings: Settings, where: str = "server") -> Path:
    """The model file the server (``where`` "server") or the learner's browser ("browser")
    runs: the configured one (a path or a shipped model's name; when None, the hybrid on the
    server and the student in the browser), without its mirror-image pass unless
    ``--mirror-pass``. Never raises: when the single-pass copy cannot be made, the file as
    it is, logged."""
    from ..runtime.classifier import model_file

    path = model_file(settings.model, "hybrid" if where == "server" else "student")
    if settings.mirror_pass or not path.is_file():
        return path
    try:
        from ..runtime.onnx_graph import single_pass_model
        return single_pass_model(path)
    except Exception as e:  # noqa: BLE001 - a slower model beats no analysis
        log.warning("running %s with its mirror-image pass: no single-pass copy (%s: %s)",
                    path, type(e).__name__, e)
        return path


OPENAPI_TAGS = [
    {"name": "learner", "description": "a learner's own session and data (learner token)"},
    {"name": "instructor", "description": "class views and data management "
                                          "(instructor token)"},
    {"name": "service", "description": "health, settings, sign-up"}]


def create_app(settings: Settings | None = None, *,
               analyzer_factory: AnalyzerFactory | None | str = "auto",
               store: Store | None = None, clock: Callable[[], float] | None = None,
               rng: random.Random | None = None) -> FastAPI:
    """Build the application. ``analyzer_factory``: "auto" loads the real detector when it
    and its model are available (else analysis is off); pass a factory to inject one."""
    settings = (settings or Settings.from_env()).with_token()
    policy = load_policy(settings.policy)
    catalog = load_catalog(settings.catalog)
    store = store or Store(settings.database_url, connections=settings.db_connections)
    store.migrate()
    # PostgreSQL: the live view, rate limits and revocations are shared by every worker
    # process and machine (store/live.py); SQLite: one process owns them in memory
    shared = SharedLive(store, settings.db_connections) if store.dialect == "postgresql" \
        else None
    if shared is not None:
        _check_connections(store, settings)
    recommender = Recommender(policy, catalog, rng=rng)
    service = LearningService(store, recommender, settings,
                              **({"clock": clock} if clock is not None else {}), shared=shared)
    xapi = XapiService(settings, store)  # learning records for an LRS; none without one
    context = AppContext(
        settings=settings, service=service, xapi=xapi,
        lti=LtiService(store, settings),  # LTI 1.3 tool: /lti/...
        connections=_connections(settings, service, shared),
        limits=limits_for(settings.signup_rate, settings.session_rate, shared,
                          settings.lti_login_rate),
        shared=shared,  # None with SQLite (one process)
        **_analysis(settings, analyzer_factory))

    app = FastAPI(title="MultiNetEmotion", version=__version__, description=DESCRIPTION,
                  lifespan=_lifespan(context, store), openapi_tags=OPENAPI_TAGS)
    app.state.context = context  # the only attribute on app.state
    install_lti(app, context.lti, xapi)  # the LTI routes; xapi names a launched learner
    _install_middleware(app, context)
    _install_error_handlers(app)
    _install_routes(app)
    log.info("store: %s; policy: %s; catalog: %s (%d items)", store.safe_url, policy.source,
             catalog.source, len(catalog.items))
    return app


class _Analysis(TypedDict):
    """The analysis fields of :class:`AppContext`."""

    analyzer_factory: AnalyzerFactory | None
    analysis_note: str
    model_path: Path | None
    browser_model_path: Path | None
    browser_analysis: BrowserAnalysis | None
    browser_note: str
    analysis_mode: str
    analysis_slots: AnalysisSlots


def _analysis(settings: Settings, analyzer_factory: AnalyzerFactory | None | str
              ) -> _Analysis:
    """Where the pictures are analysed, as the app's context has it: the server's analyzer
    factory (None: none) and the files the learner's browser runs, each with why not."""
    model = analysis_model(settings) if settings.analysis != "off" else None
    if analyzer_factory == "auto":
        if settings.analysis == "off":
            factory, note = None, "server-side analysis is switched off"
        elif settings.analysis == "browser":
            factory, note = None, "pictures are analysed in the learner's browser only"
        else:
            factory, note = detector_factory(model, settings.detect_every,
                                             settings.search_every, detector=settings.detector,
                                             frames_at_once=settings.analysis_workers)
    else:
        factory = analyzer_factory  # type: ignore[assignment]
        note = "server-side analysis" if factory else "server-side analysis is switched off"
    # in the learner's browser (--analysis browser|auto): the page gets the files from here
    browser_model = analysis_model(settings, "browser") if settings.analysis != "off" else None
    browser, browser_note = in_browser(settings.analysis, browser_model,
                                       injected=analyzer_factory != "auto")
    if factory is None and browser is None:
        log.warning("emotion analysis unavailable (%s); learners can still post samples", note)
    return {
        "analyzer_factory": factory,
        "analysis_note": note,
        "model_path": model,  # the file the server's analysis runs (None: none)
        "browser_model_path": browser_model,  # ... and the learner's browser
        "browser_analysis": browser,
        "browser_note": browser_note,
        "analysis_mode": analysis_mode(settings.analysis, browser, factory),
        "analysis_slots": AnalysisSlots(settings.analysis_workers),
    }


def _lifespan(context: AppContext, store: Store
              ) -> Callable[[FastAPI], AbstractAsyncContextManager]:
    """The app's background work (hourly housekeeping, the xAPI sender, with PostgreSQL the
    listener for other processes' revocations), started with the app and stopped with it,
    losing nothing that waits to be stored."""
    settings, service, xapi, shared = (context.settings, context.service, context.xapi,
                                       context.shared)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.analysis_slots = AnalysisSlots(settings.analysis_workers)
        task = asyncio.create_task(_housekeeping(service))
        xapi.start()
        # a learner's token replaced or deleted in another process: end their sockets here
        listener = None if shared is None else \
            shared.listener(REVOKE_CHANNEL, _revoked(context)).start()
        try:
            yield
        finally:
            task.cancel()
            await xapi.stop()
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            if shared is not None:
                shared.close()
            # nothing waiting is lost on a stop: the sessions' current second, then the
            # writer's queue
            await asyncio.to_thread(service.ingest.flush_all)
            await asyncio.to_thread(store.flush_samples)

    return lifespan


async def _housekeeping(service: LearningService) -> None:
    while True:
        try:
            await asyncio.to_thread(service.housekeeping)
        except Exception:  # noqa: BLE001 - keep serving; try again later
            log.exception("housekeeping failed")
        await asyncio.sleep(3600)


def _revoked(context: AppContext) -> Callable[[dict], None]:
    service = context.service

    def revoked(m: dict) -> None:
        """Another process's message: a token stopped working, a learner's connection
        replaced their older ones ("keep"), or a session ended ("session_id")."""
        if m.get("session_id"):
            service.ingest.ended_here(m["learner_id"], m["session_id"])
        elif m.get("keep"):
            context.connections.revoke(m["learner_id"], m["reason"], m["keep"],
                                         m.get("close_reason", "replaced"))
        else:
            service.ingest.revoke_here(m["learner_id"], m["reason"])

    return revoked


def _connections(settings: Settings, service: LearningService,
                 shared: SharedLive | None) -> Connections:
    """The registry of open learner connections: ended when a learner's token stops
    working, or replaced by the learner's newer one."""
    connections = Connections(
        settings.max_connections_per_address,
        None if shared is None else lambda m: shared.notify(REVOKE_CHANNEL, m))
    service.ingest.on_revoke.append(connections.revoke)
    service.ingest.on_end.append(connections.session_ended)
    return connections


def _install_middleware(app: FastAPI, context: AppContext) -> None:
    """The middleware, innermost first; the LTI tool's platforms may frame the pages."""
    settings = context.settings
    app.add_middleware(NoStore)  # API answers (personal data) are never cached
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ControlCharacters)
    app.add_middleware(SecurityHeaders, frame_ancestors=context.lti.frame_origins)
    app.add_middleware(CrossOriginIsolation)  # the learner page, for WebAssembly threads
    own = settings.host if settings.host not in ("0.0.0.0", "::", "") else ""
    app.add_middleware(AllowedHosts, hosts=allowed_hosts(
        settings.public_url, ",".join(x for x in (settings.allowed_hosts, own) if x)))


def _install_error_handlers(app: FastAPI) -> None:
    """Every error answered as JSON ``{"detail": ...}``."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, e: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(MultiNetError)
    async def _user_error(_: Request, e: MultiNetError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(x.get("loc", ())), "msg": x.get("msg"), "type": x.get("type")}
                  for x in e.errors()]
        return JSONResponse({"detail": _validation_message(errors), "errors": errors},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": e.detail}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))


def _install_routes(app: FastAPI) -> None:
    """The API's routers, the learner WebSocket, the static files and the pages."""
    app.include_router(api.public)
    app.include_router(learner_routes.public)
    app.include_router(class_routes.public)
    app.include_router(class_routes.instructor)
    app.include_router(learner_routes.learner)
    app.include_router(session_routes.learner)
    app.include_router(report_routes.learner)
    app.include_router(report_routes.instructor)
    app.include_router(learner_routes.instructor)
    app.include_router(xapi_routes.instructor)
    app.include_router(xapi_routes.learner)
    app.include_router(ws.router)
    app.include_router(browser_routes)
    emotions_js = emotions_script()  # before the mount, so this route wins

    @app.get("/static/emotions.js", include_in_schema=False)
    def emotions() -> Response:
        return Response(emotions_js, media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # browsers ask for it whatever the pages link
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    def page(name: str) -> Callable[[], FileResponse]:
        def serve() -> FileResponse:
            return FileResponse(STATIC / name, media_type="text/html",
                                headers={"Cache-Control": "no-store"})
        return serve

    app.get("/", include_in_schema=False)(page("index.html"))
    app.get("/learn", include_in_schema=False)(page("learner.html"))
    app.get("/dashboard", include_in_schema=False)(page("dashboard.html"))
