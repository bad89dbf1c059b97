"""The xAPI routes: the outbox's status for the instructor's dashboard (so an operator sees
a broken LRS), a retry of failing statements, and the learner's choice to share per-minute
emotion summaries with the LRS. Thin: they call :class:`~.XapiService`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..api import Instructor, LearnerId
from ..context import Context
from . import XapiService


def get_xapi(ctx: Context) -> XapiService:
    return ctx.xapi


Xapi = Annotated[XapiService, Depends(get_xapi)]

instructor = APIRouter(prefix="/api/xapi", tags=["instructor"], dependencies=[Instructor])
learner = APIRouter(prefix="/api/me", tags=["learner"])


class OutboxOut(BaseModel):
    configured: bool = Field(description="whether an LRS is configured (MULTINET_LRS_URL)")
    endpoint: str | None = None
    sending: bool | None = None
    queued: int = 0
    sent: int = 0
    failing: int = Field(0, description="rejected by the LRS; kept, not sent again by itself")
    oldest_queued_age: float | None = Field(None, description="seconds the oldest queued "
                                                              "statement has waited")
    last_error: str | None = None
    last_error_at: float | None = None
    failing_error: str | None = None
    failures_in_a_row: int = 0
    next_try_in: float | None = None
    last_sent_at: float | None = None


class RetryOut(BaseModel):
    requeued: int = Field(description="failing statements queued to be sent again")


class SharingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    emotions: bool = Field(description="send a per-minute summary of my emotion shares to "
                                       "the learning platform's record store")


class SharingOut(BaseModel):
    emotions: bool
    lrs: bool = Field(description="whether this service sends learning records at all")


@instructor.get("/outbox", response_model=OutboxOut, summary="The xAPI outbox")
def outbox(xapi: Xapi) -> dict[str, Any]:
    return xapi.status()


@instructor.post("/outbox/retry", response_model=RetryOut,
                 summary="Send the failing xAPI statements again")
def retry(xapi: Xapi) -> RetryOut:
    return RetryOut(requeued=xapi.retry_failing())


@learner.get("/sharing", response_model=SharingOut, summary="What I share with the LRS")
def sharing(learner_id: LearnerId, xapi: Xapi) -> SharingOut:
    return SharingOut(emotions=xapi.sharing(learner_id), lrs=xapi.configured)


@learner.put("/sharing", response_model=SharingOut, summary="Choose what I share with the LRS")
def set_sharing(body: SharingIn, learner_id: LearnerId, xapi: Xapi) -> SharingOut:
    if not xapi.set_sharing(learner_id, body.emotions):
        raise HTTPException(404, "no such learner")
    return SharingOut(emotions=body.emotions, lrs=xapi.configured)
