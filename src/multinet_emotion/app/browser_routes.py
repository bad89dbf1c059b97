"""The routes of analysis in the learner's browser (:mod:`.browser`): where pictures are
analysed (``/api/analysis``), the model and vendor files named by their content, and the
learner page's cross-origin isolation when the server offers in-browser analysis."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import MultiNetError
from .browser import IMMUTABLE, ISOLATED_PAGES, ISOLATION_HEADERS, MEDIA_TYPES, BrowserAnalysis
from .context import context_of, scope_context
from .reports.models import AnalysisOut

log = logging.getLogger(__name__)
router = APIRouter()


class CrossOriginIsolation:
    """ASGI middleware: :data:`ISOLATION_HEADERS` on the learner page when this server
    offers in-browser analysis (the app context's ``browser_analysis``); every other page, and the
    learner page of a server that analyses frames itself, is served as before."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = scope_context(scope.get("app"))
        if scope["type"] != "http" or scope.get("path") not in ISOLATED_PAGES or \
                context is None or context.browser_analysis is None:
            return await self.app(scope, receive, send)

        async def isolated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + list(ISOLATION_HEADERS)
            await send(message)

        await self.app(scope, receive, isolated)


def _browser(request: Request) -> BrowserAnalysis:
    browser = context_of(request).browser_analysis
    if browser is None:
        raise HTTPException(404, "in-browser analysis is not offered by this server")
    return browser


@router.get("/api/analysis", tags=["service"], response_model=AnalysisOut,
            summary="Where the learner's camera picture is analysed, and what the page needs "
                    "to analyse it in the browser")
def analysis(request: Request) -> AnalysisOut:
    st = context_of(request)
    browser = st.browser_analysis
    out: dict[str, Any] = {"mode": st.analysis_mode, "server": st.analyzer_factory is not None,
                           "browser": None, "browser_note": st.browser_note}
    if browser is not None:
        try:
            settings = st.settings
            out["browser"] = browser.page_config(settings.detect_every, settings.search_every,
                                                 settings.detector)
        except (MultiNetError, OSError) as e:  # e.g. the model file is being replaced
            log.error("in-browser analysis unavailable: %s", e)
            out["browser_note"] = f"the model file cannot be served ({e})"
    return AnalysisOut.model_validate(out)


@router.get("/models/model.{digest}.onnx", include_in_schema=False)
def model_file(digest: str, request: Request) -> FileResponse:
    m = _browser(request).model()
    if digest != m.sha256[:12]:
        raise HTTPException(404, "this model is no longer served; reload the page")
    return FileResponse(m.path, media_type=MEDIA_TYPES[".onnx"],
                        headers={"Cache-Control": IMMUTABLE})


@router.get("/vendor/{digest}/{name}", include_in_schema=False)
def vendor_file(digest: str, name: str, request: Request) -> FileResponse:
    entry = _browser(request).files().get(name)
    if entry is None or entry[1][:12] != digest:
        raise HTTPException(404, "no such file; reload the page")
    headers = {"Cache-Control": IMMUTABLE}
    if name.endswith(".mjs"):
        # onnxruntime-web starts its thread workers from this script; an isolated page may
        # start only workers whose embedder policy is as strict as its own
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"
    return FileResponse(entry[0], media_type=MEDIA_TYPES[Path(name).suffix], headers=headers)
