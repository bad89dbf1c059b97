"""The sessions' HTTP routes: start and end a session, post samples classified elsewhere,
and answer its recommendations (the WebSocket is :mod:`.routes`). Thin: they call the service
and never the store."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..api import (
    ClassBook,
    ConsentingLearnerId,
    Ingest,
    LearnerId,
)
from ..context import context_of
from ..ratelimit import check_limit
from ..schemas import (
    CurrentRecommendationOut,
    FeedbackIn,
    FeedbackOut,
    RecommendationOut,
    SamplesIn,
    SamplesOut,
    SessionIn,
    SessionOut,
    recommendation_out,
)
from ..service import client_reading

learner = APIRouter(prefix="/api", tags=["learner"])


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

