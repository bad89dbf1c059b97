"""The learners' routes: sign-up, the consent text and agreeing to it, and the learner's
own data (export and erasure; the instructor's too). Thin, as :mod:`..api`: they call the
service and never the store."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..api import (
    Creds,
    Ingest,
    Instructor,
    LearnerId,
    Reports,
    is_instructor,
    require_learner,
    unauthorized,
)
from ..context import context_of
from ..ratelimit import check_limit
from ..reports.models import ExportOut
from ..schemas import (
    ConsentGivenOut,
    ConsentIn,
    ConsentOut,
    DeletedOut,
    MeOut,
    RegisterIn,
    RegisterOut,
    TokenOut,
)
from ..settings import Settings
from .consent import check_consent, consent, current_version

public = APIRouter(prefix="/api", tags=["service"])
learner = APIRouter(prefix="/api", tags=["learner"])
instructor = APIRouter(prefix="/api", tags=["instructor"], dependencies=[Instructor])


@public.get("/consent", response_model=ConsentOut,
            summary="What a learner agrees to before signing up, and its version")
def consent_text(request: Request) -> ConsentOut:
    return ConsentOut(**consent(context_of(request).settings))


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
        raise unauthorized("signing up with a chosen learner_id (or while registration is "
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
        raise unauthorized("unknown or revoked learner token; sign up again")
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


@learner.get("/me/export", response_model=ExportOut,
             summary="Everything stored about you (JSON)")
def my_export(learner_id: LearnerId, svc: Reports) -> ExportOut:
    return ExportOut.model_validate(svc.export(learner_id))


@learner.delete("/me", response_model=DeletedOut, summary="Delete all your data")
def delete_me(learner_id: LearnerId, svc: Ingest) -> DeletedOut:
    return DeletedOut(deleted=svc.delete(learner_id))


@instructor.post("/learners/{learner_id}/token", response_model=TokenOut,
                 summary="Issue a new token for a learner (the old one stops working)")
def learner_token(learner_id: str, svc: Ingest) -> TokenOut:
    return TokenOut(learner_id=learner_id, token=svc.new_token(learner_id))


@instructor.get("/learners/{learner_id}/export", response_model=ExportOut,
                summary="Export a learner's data (JSON)")
def learner_export(learner_id: str, svc: Reports) -> ExportOut:
    return ExportOut.model_validate(svc.export(learner_id))


@instructor.delete("/learners/{learner_id}", response_model=DeletedOut,
                   summary="Delete a learner's data completely")
def learner_delete(learner_id: str, svc: Ingest) -> DeletedOut:
    return DeletedOut(deleted=svc.delete(learner_id))
