"""The report and dashboard routes: a learner's timeline and summary (their own, or any for
the instructor) and a class's overview and timeline. Read-only and thin: they call
:class:`~..service.ReportService` and never the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from ..api import (
    Instructor,
    LearnerId,
    Reports,
)
from ..reports.models import ClassTimelineOut, OverviewOut, SummaryOut
from ..schemas import (
    TimelineOut,
)

learner = APIRouter(prefix="/api", tags=["learner"])
instructor = APIRouter(prefix="/api", tags=["instructor"], dependencies=[Instructor])


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

