"""The HTTP API's shared part: who is calling (the learner and instructor dependencies every
feature's routes use) and the service's own routes (health, config). The features' routes are
in their folders (:mod:`.learners.routes`, :mod:`.sessions.http`, :mod:`.classes.routes`,
:mod:`.reports.routes`): thin routes over the service (:mod:`.service`), ``ingest`` for what
learners send and do, ``reports`` for what is read back. No route touches the store.

Learners authenticate with their own bearer token (from ``POST /api/learners``) and only
ever reach their own data; instructor routes need the instructor token.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..emotions import EMOTIONS
from .context import Context, context_of
from .learners.consent import require_current_consent
from .reports.models import (
    ConfigOut,
    HealthOut,
)
from .service import ClassService, IngestService, LearningService, ReportService
from .settings import Settings

bearer = HTTPBearer(auto_error=False, description="a learner token or the instructor token")
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_service(ctx: Context) -> LearningService:
    return ctx.service


def get_settings(ctx: Context) -> Settings:
    return ctx.settings


def get_ingest(ctx: Context) -> IngestService:
    return ctx.service.ingest


def get_reports(ctx: Context) -> ReportService:
    return ctx.service.reports


Service = Annotated[LearningService, Depends(get_service)]
Ingest = Annotated[IngestService, Depends(get_ingest)]
Reports = Annotated[ReportService, Depends(get_reports)]


def get_class_service(ctx: Context) -> ClassService:
    return ctx.service.classes


ClassBook = Annotated[ClassService, Depends(get_class_service)]


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message,
                         headers={"WWW-Authenticate": "Bearer"})


def is_instructor(settings: Settings, token: str | None) -> bool:
    return bool(token and secrets.compare_digest(token.encode(),
                                                 settings.instructor_token.encode()))


def require_instructor(request: Request, creds: Creds) -> None:
    """The instructor token opens every instructor route. An LTI instructor's dashboard
    token (handed to the dashboard by a launch from their course, see ``server/lti``) opens
    that course's class only: reading its overview and timeline, and the class list (which
    then holds that class alone: ``request.state.instructor_class``)."""
    request.state.instructor_class = None
    if creds is not None and is_instructor(context_of(request).settings, creds.credentials):
        return
    class_id = context_of(request).lti.instructor_class(creds.credentials) if creds else None
    if class_id is None:
        raise unauthorized("this needs the instructor token (Authorization: Bearer TOKEN)")
    own = request.url.path == "/api/classes" or request.path_params.get("class_id") == class_id
    if request.method != "GET" or not own:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "a dashboard opened from a course sees that course's class only; "
                            "this needs the instructor token")
    request.state.instructor_class = class_id


def require_learner(svc: Ingest, creds: Creds) -> str:
    if creds is None:
        raise unauthorized("this needs your learner token (Authorization: Bearer TOKEN)")
    learner_id = svc.learner_for_token(creds.credentials)
    if learner_id is None:
        raise unauthorized("unknown or revoked learner token; sign up again")
    return learner_id


def require_consenting_learner(request: Request, svc: Ingest, creds: Creds) -> str:
    """The learner of the token, who agreed to the consent text as it is now (403 when the
    text changed since they agreed: they agree again with POST /api/me/consent)."""
    if creds is None:
        raise unauthorized("this needs your learner token (Authorization: Bearer TOKEN)")
    learner = svc.token_learner(creds.credentials)
    if learner is None:
        raise unauthorized("unknown or revoked learner token; sign up again")
    require_current_consent(context_of(request).settings, learner.consent_version)
    return learner.id


LearnerId = Annotated[str, Depends(require_learner)]
#: A learner who agreed to the current consent text: what stores readings needs it.
ConsentingLearnerId = Annotated[str, Depends(require_consenting_learner)]
Instructor = Depends(require_instructor)

public = APIRouter(prefix="/api", tags=["service"])


@public.get("/health", response_model=HealthOut, summary="Is the service up")
def health(request: Request, svc: Service) -> HealthOut:
    return HealthOut(status="ok", analysis=context_of(request).analyzer_factory is not None,
                     database=svc.database)


@public.get("/config", response_model=ConfigOut, summary="Settings the pages need (no secrets)")
def config(request: Request, svc: Service) -> ConfigOut:
    st = context_of(request)
    s: Settings = st.settings
    policy = svc.policy
    return ConfigOut.model_validate({
        "emotions": list(EMOTIONS), "analysis": st.analyzer_factory is not None,
        "analysis_note": st.analysis_note, "frame_rate": s.frame_rate,
        "frame_width": s.frame_width, "max_frame_bytes": s.max_frame_bytes,
        "open_registration": s.open_registration, "retention_days": s.retention_days,
        "policy": {"cooldown": policy.cooldown,
                   "rules": [{"name": r.name, "states": list(r.states),
                              "min_duration": r.min_duration, "kinds": list(r.kinds)}
                             for r in policy.rules]}})

