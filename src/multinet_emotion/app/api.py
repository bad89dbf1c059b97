"""The HTTP API: thin routes over the service (:mod:`.service`): ``ingest`` for what
learners send and do, ``reports`` for what is read back. No route touches the store.

Learners authenticate with their own bearer token (from ``POST /api/learners``) and only
ever reach their own data; instructor routes need the instructor token.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..emotions import EMOTIONS
from .consent import check_consent, current_version, require_current_consent
from .context import Context, context_of
from .ratelimit import check_limit
from .report_models import (
    ClassTimelineOut,
    ConfigOut,
    ExportOut,
    HealthOut,
    OverviewOut,
    SummaryOut,
)
from .schemas import (
    ConsentGivenOut,
    ConsentIn,
    CurrentRecommendationOut,
    DeletedOut,
    FeedbackIn,
    FeedbackOut,
    MeOut,
    RecommendationOut,
    RegisterIn,
    RegisterOut,
    SamplesIn,
    SamplesOut,
    SessionIn,
    SessionOut,
    TimelineOut,
    TokenOut,
    recommendation_out,
)
from .service import ClassService, IngestService, LearningService, ReportService, client_reading
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


def _unauthorized(message: str) -> HTTPException:
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
        raise _unauthorized("this needs the instructor token (Authorization: Bearer TOKEN)")
    own = request.url.path == "/api/classes" or request.path_params.get("class_id") == class_id
    if request.method != "GET" or not own:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "a dashboard opened from a course sees that course's class only; "
                            "this needs the instructor token")
    request.state.instructor_class = class_id


def require_learner(svc: Ingest, creds: Creds) -> str:
    if creds is None:
        raise _unauthorized("this needs your learner token (Authorization: Bearer TOKEN)")
    learner_id = svc.learner_for_token(creds.credentials)
    if learner_id is None:
        raise _unauthorized("unknown or revoked learner token; sign up again")
    return learner_id


def require_consenting_learner(request: Request, svc: Ingest, creds: Creds) -> str:
    """The learner of the token, who agreed to the consent text as it is now (403 when the
    text changed since they agreed: they agree again with POST /api/me/consent)."""
    if creds is None:
        raise _unauthorized("this needs your learner token (Authorization: Bearer TOKEN)")
    learner = svc.token_learner(creds.credentials)
    if learner is None:
        raise _unauthorized("unknown or revoked learner token; sign up again")
    require_current_consent(context_of(request).settings, learner.consent_version)
    return learner.id


LearnerId = Annotated[str, Depends(require_learner)]
#: A learner who agreed to the current consent text: what stores readings needs it.
ConsentingLearnerId = Annotated[str, Depends(require_consenting_learner)]
Instructor = Depends(require_instructor)

public = APIRouter(prefix="/api", tags=["service"])
learner = APIRouter(prefix="/api", tags=["learner"])
instructor = APIRouter(prefix="/api", tags=["instructor"], dependencies=[Instructor])


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


@public.post("/learners", status_code=201, response_model=RegisterOut,
             summary="Sign up a learner and get their token",
             description="Open to anyone when registration is open (the default); choosing "
                         "your own learner_id, or signing up when registration is closed, "
                         "needs the instructor token. Needs the learner's consent: "
                         "consent: true and the consent_version of GET /api/consent; "
                         "without it nothing is stored. Limited per client address "
                         "(signup_rate; not with the instructor token).")
def register(body: RegisterIn, request: Request, svc: Ingest, creds: Creds) -> RegisterOut:
    settings: Settings = context_of(request).settings
    trusted = creds is not None and is_instructor(settings, creds.credentials)
    if not trusted:
        check_limit(context_of(request).limits, request, "signup", "sign-ups")
    if not trusted and (body.learner_id is not None or not settings.open_registration):
        raise _unauthorized("signing up with a chosen learner_id (or while registration is "
                            "closed) needs the instructor token")
    version = check_consent(settings, body.consent, body.consent_version)
    row, token = svc.register(body.name, body.learner_id, version)
    return RegisterOut(learner_id=row.id, name=row.name, token=token)


@learner.get("/me", response_model=MeOut, summary="Who this token belongs to")
def me(request: Request, svc: Ingest, creds: Creds) -> MeOut:
    require_learner(svc, creds)
    assert creds is not None
    row = svc.token_learner(creds.credentials)
    if row is None:  # revoked in between
        raise _unauthorized("unknown or revoked learner token; sign up again")
    return MeOut(learner_id=row.id, name=row.name, consent_version=row.consent_version,
                 consent_current=row.consent_version == current_version(
                     context_of(request).settings))


@learner.post("/me/consent", response_model=ConsentGivenOut,
              summary="Agree to the consent text as it is now",
              description="For a learner who signed up under an earlier text (the analysis "
                          "mode, the learning record store or the text changed since): "
                          "consent: true with the version of GET /api/consent. 422 without "
                          "consent, 409 for another version than the current one.")
def agree(body: ConsentIn, request: Request, learner_id: LearnerId,
          svc: Ingest) -> ConsentGivenOut:
    version = check_consent(context_of(request).settings, body.consent, body.consent_version)
    return ConsentGivenOut(learner_id=learner_id, consent_version=version,
                           consent_at=svc.agree(learner_id, version))


def _session_out(row: Any) -> SessionOut:
    return SessionOut(id=row.id, learner_id=row.learner_id, class_id=row.class_id,
                      tags=row.tags or [], level=row.level, source=row.source,
                      started_at=row.started_at, ended_at=row.ended_at)


@learner.post("/sessions", status_code=201, response_model=SessionOut,
              summary="Start a learning session in the class of a join code",
              description="404: no class has the code; 410: the code expired or the class "
                          "ended; 403: the consent text changed since the learner agreed "
                          "(nothing is stored). Limited per client address (session_rate).")
def start_session(body: SessionIn, request: Request, learner_id: ConsentingLearnerId,
                  svc: Ingest,
                  classes: ClassBook) -> SessionOut:
    check_limit(context_of(request).limits, request, "session", "sessions started")
    joined = classes.join(body.join_code)
    live = svc.start_session(learner_id, joined.id, body.tags, body.level, body.source)
    return _session_out(live.row)


@learner.post("/sessions/{session_id}/end", response_model=SessionOut,
              summary="End a session (pending outcomes are measured)")
def end_session(session_id: str, learner_id: LearnerId, svc: Ingest) -> SessionOut:
    return _session_out(svc.end_session(learner_id, session_id))


@learner.post("/sessions/{session_id}/samples", response_model=SamplesOut,
              summary="Post emotion samples classified elsewhere",
              description="Smoothed probabilities from a client that classified on its own "
                          "(or a platform's detector). All or nothing: one bad sample "
                          "rejects the request. Stored downsampled; never images.")
def post_samples(session_id: str, body: SamplesIn, learner_id: ConsentingLearnerId,
                 svc: Ingest) -> SamplesOut:
    now = svc.clock()
    readings = [client_reading(s.t if s.t is not None else now,
                               s.probs if s.face else None, s.confidence, s.label)
                for s in body.samples]
    stored, rec = svc.add_samples(learner_id, session_id, readings,
                                  labelled=[s.labelled for s in body.samples])
    return SamplesOut(stored=stored, recommendation=recommendation_out(rec) if rec else None)


@learner.get("/sessions/{session_id}/recommendation", response_model=CurrentRecommendationOut,
             summary="The current (open) recommendation, if any")
def current(session_id: str, learner_id: LearnerId, svc: Ingest) -> CurrentRecommendationOut:
    rec = svc.current_recommendation(learner_id, session_id)
    return CurrentRecommendationOut(recommendation=recommendation_out(rec) if rec else None)


@learner.post("/recommendations/{rec_id}/accept", response_model=RecommendationOut,
              summary="Accept a recommendation (its effect on affect is then measured)")
def accept(rec_id: str, learner_id: LearnerId, svc: Ingest) -> RecommendationOut:
    return recommendation_out(svc.respond(learner_id, rec_id, "accept"))


@learner.post("/recommendations/{rec_id}/dismiss", response_model=RecommendationOut,
              summary="Dismiss a recommendation")
def dismiss(rec_id: str, learner_id: LearnerId, svc: Ingest) -> RecommendationOut:
    return recommendation_out(svc.respond(learner_id, rec_id, "dismiss"))


@learner.post("/recommendations/{rec_id}/feedback", response_model=FeedbackOut,
              summary="Thumbs up or down for a recommendation")
def feedback(rec_id: str, body: FeedbackIn, learner_id: LearnerId, svc: Ingest) -> FeedbackOut:
    d = svc.feedback(learner_id, rec_id, 1 if body.value == "up" else -1, body.comment)
    return FeedbackOut(**d)


@learner.get("/me/timeline", response_model=TimelineOut, summary="Your emotion timeline")
def my_timeline(learner_id: LearnerId, svc: Reports, session_id: str | None = None,
                since: float | None = None,
                limit: Annotated[int, Query(ge=1, le=20_000)] = 3600) -> TimelineOut:
    return TimelineOut.model_validate({"learner_id": learner_id,
                                       "samples": svc.timeline(learner_id, session_id, since, limit)})


@learner.get("/me/summary", response_model=SummaryOut,
             summary="Your summary: emotion shares, recommendations")
def my_summary(learner_id: LearnerId, svc: Reports) -> SummaryOut:
    return SummaryOut(**svc.summary(learner_id))


@learner.get("/me/export", response_model=ExportOut,
             summary="Everything stored about you (JSON)")
def my_export(learner_id: LearnerId, svc: Reports) -> ExportOut:
    return ExportOut.model_validate(svc.export(learner_id))


@learner.delete("/me", response_model=DeletedOut, summary="Delete all your data")
def delete_me(learner_id: LearnerId, svc: Ingest) -> DeletedOut:
    return DeletedOut(deleted=svc.delete(learner_id))


@instructor.get("/classes/{class_id}/overview", response_model=OverviewOut,
                summary="Live state of a class: learners, attention, outcomes")
def class_overview(class_id: str, svc: Reports) -> OverviewOut:
    return OverviewOut.model_validate(svc.class_overview(class_id))


@instructor.get("/classes/{class_id}/timeline", response_model=ClassTimelineOut,
                summary="Class-level emotion timeline: labels shown per time bucket")
def class_timeline(class_id: str, svc: Reports,
                   minutes: Annotated[float, Query(gt=0, le=24 * 60)] = 10.0,
                   bucket: Annotated[float, Query(ge=1, le=3600)] = 10.0) -> ClassTimelineOut:
    if minutes * 60 / bucket > 2000:
        raise HTTPException(422, "too many buckets: use a larger bucket or fewer minutes")
    return ClassTimelineOut.model_validate(svc.class_timeline(class_id, minutes, bucket))


@instructor.post("/learners/{learner_id}/token", response_model=TokenOut,
                 summary="Issue a new token for a learner (the old one stops working)")
def learner_token(learner_id: str, svc: Ingest) -> TokenOut:
    return TokenOut(learner_id=learner_id, token=svc.new_token(learner_id))


@instructor.get("/learners/{learner_id}/summary", response_model=SummaryOut,
                summary="A learner's summary")
def learner_summary(learner_id: str, svc: Reports) -> SummaryOut:
    return SummaryOut(**svc.summary(learner_id))


@instructor.get("/learners/{learner_id}/timeline", response_model=TimelineOut,
                summary="A learner's emotion timeline")
def learner_timeline(learner_id: str, svc: Reports, session_id: str | None = None,
                     since: float | None = None,
                     limit: Annotated[int, Query(ge=1, le=20_000)] = 3600) -> TimelineOut:
    return TimelineOut.model_validate({"learner_id": learner_id,
                                       "samples": svc.timeline(learner_id, session_id, since, limit)})


@instructor.get("/learners/{learner_id}/export", response_model=ExportOut,
                summary="Export a learner's data (JSON)")
def learner_export(learner_id: str, svc: Reports) -> ExportOut:
    return ExportOut.model_validate(svc.export(learner_id))


@instructor.delete("/learners/{learner_id}", response_model=DeletedOut,
                   summary="Delete a learner's data completely")
def learner_delete(learner_id: str, svc: Ingest) -> DeletedOut:
    return DeletedOut(deleted=svc.delete(learner_id))
