"""The LTI routes: thin, over :class:`.launch.LtiService` (the app context's ``lti``).

* ``GET|POST /lti/login``: OIDC login initiation (the platform's "initiate login URL").
* ``POST /lti/launch``: the launch (the "redirect URI" / "target link URI"), also Deep
  Linking requests (the "deep linking URL").
* ``GET /lti/jwks``: the tool's public keys (the "public keyset URL").
* ``POST /lti/deep-link``: the instructor's answer on the Deep Linking page.
* ``POST /lti/learner``: the learner page, after the learner agreed, trades its launch
  ticket for a learner token.

pylti1p3 is synchronous (database, the platform's JWKS over HTTP): it runs in a worker
thread.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ..context import context_of
from ..ratelimit import check_limit
from ..xapi import XapiService
from .launch import LaunchRefused, LtiService
from .pages import SUBMIT_JS

router = APIRouter(prefix="/lti", tags=["lti"])


def _lti(request: Request) -> LtiService:
    return context_of(request).lti


def launch_url(request: Request) -> str:
    """Where the platform posts launches: from MULTINET_PUBLIC_URL when set (behind a
    proxy the request's own URL may not be what the platform reaches)."""
    public = context_of(request).settings.public_url.rstrip("/")
    return (public or str(request.base_url).rstrip("/")) + "/lti/launch"


async def _params(request: Request) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.api_route("/login", methods=["GET", "POST"], include_in_schema=False)
async def login(request: Request) -> Response:
    # each stores a nonce for a while
    check_limit(context_of(request).limits, request, "lti_login", "LTI logins")
    try:
        return await run_in_threadpool(_lti(request).login, await _params(request),
                                       dict(request.cookies), _secure(request),
                                       launch_url(request))
    except LaunchRefused as e:
        return e.response()


@router.api_route("/launch", methods=["GET", "POST"], include_in_schema=False)
async def launch(request: Request) -> Response:
    if request.method != "POST":
        return LaunchRefused(405, "Not a launch", "This address takes launches from a "
                             "learning platform (a form post).",
                             "Open the tool from your course.").response()
    try:
        return await run_in_threadpool(_lti(request).launch, await _params(request),
                                       dict(request.cookies), _secure(request))
    except LaunchRefused as e:
        return e.response()


@router.post("/deep-link", include_in_schema=False)
async def deep_link(request: Request) -> Response:
    params = await _params(request)
    try:
        return await run_in_threadpool(_lti(request).deep_link_response,
                                       params.get("launch_id", ""), params.get("place") == "1",
                                       launch_url(request))
    except LaunchRefused as e:
        return e.response()


class JwksOut(BaseModel):
    """A JSON Web Key Set (RFC 7517): the tool's public keys, each with its kid."""

    keys: list[dict[str, Any]]


@router.get("/jwks", summary="The tool's public keys (JWKS) for platforms",
            response_model=JwksOut)
def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_lti(request).key.jwks(), headers={"Cache-Control": "max-age=3600"})


@router.get("/submit.js", include_in_schema=False)
def submit_js() -> Response:
    return Response(SUBMIT_JS, media_type="text/javascript")


class LearnerIn(BaseModel):
    ticket: str = Field(min_length=1, max_length=4000,
                        description="the ticket the launch handed the learner page")
    consent: bool = Field(False, description="the learner agreed to the consent text")
    consent_version: str | None = Field(None, max_length=40,
                                        description="the version of the text they agreed to")


class LearnerOut(BaseModel):
    learner_id: str
    name: str
    token: str
    class_id: str
    class_name: str
    join_code: str = Field(description="the class's join code, for starting sessions")
    created: bool = Field(description="the learner was stored now (their first agreement)")


@router.post("/learner", response_model=LearnerOut,
             summary="After consent: the launched learner's token",
             description="Trades the ticket of an LTI launch for the learner's token. The "
                         "learner (and their link to the platform's user) is stored only now, "
                         "with the version of the consent text they agreed to.")
def learner(body: LearnerIn, request: Request) -> dict[str, Any]:
    return _lti(request).learner_sign_in(body.ticket, body.consent, body.consent_version)


def install(app: FastAPI, service: LtiService, xapi: XapiService | None = None) -> None:
    """Add the LTI tool to an app: the routes over ``service`` (the context's ``lti``; its
    key pair is made once, in the data directory, at the first LTI request), and to
    ``xapi``'s actors the launched learners' platform identities."""
    app.include_router(router)
    if xapi is not None:  # learning records name a launched learner as the platform knows them
        records = service.records

        def platform_account(learner_id: str) -> dict[str, Any] | None:
            identity = records.identity_of(learner_id)
            if identity is None:
                return None
            issuer, sub = identity
            return {"objectType": "Agent", "account": {"homePage": issuer, "name": sub}}

        xapi.actors.resolvers.append(platform_account)
