"""Routes for classes: the instructor creates classes and their join codes; a learner
checks a join code before anything is stored (the consent text: :mod:`..learners.routes`).

Thin, as :mod:`..api`: they call :class:`~..service.ClassService` and never the store.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..api import Instructor
from ..context import Context, context_of
from ..ratelimit import check_limit
from ..schemas import ClassIn, ClassOut, CodeIn, JoinOut
from ..service import ClassService


def get_classes(ctx: Context) -> ClassService:
    return ctx.service.classes


Classes = Annotated[ClassService, Depends(get_classes)]

public = APIRouter(prefix="/api", tags=["service"])
instructor = APIRouter(prefix="/api", tags=["instructor"], dependencies=[Instructor])


@public.get("/join/{code}", response_model=JoinOut,
            summary="The class a join code belongs to (404: no such code; 410: expired)",
            description="Stores nothing; limited per client address like session starts.")
def join(code: str, request: Request, classes: Classes) -> JoinOut:
    check_limit(context_of(request).limits, request, "join", "join codes tried")
    row = classes.join(code)
    return JoinOut(class_id=row.id, name=row.name, code_expires_at=row.code_expires_at)


@instructor.get("/classes", response_model=list[ClassOut],
                summary="Classes with their join codes, learners and live learners")
def list_classes(request: Request, classes: Classes) -> list[ClassOut]:
    only = request.state.instructor_class  # a dashboard opened from an LTI course
    return [ClassOut(**c) for c in classes.list() if only is None or c["class_id"] == only]


@instructor.post("/classes", status_code=201, response_model=ClassOut,
                 summary="Create a class and its join code")
def create_class(body: ClassIn, classes: Classes) -> ClassOut:
    row = classes.create(body.name, body.class_id, body.expires_in_days)
    return ClassOut(**classes.entry(row))


@instructor.post("/classes/{class_id}/code", response_model=ClassOut,
                 summary="Give a class a new join code (the old one stops working)")
def rotate_code(class_id: str, classes: Classes, body: CodeIn | None = None) -> ClassOut:
    row = classes.rotate(class_id, body.expires_in_days if body else None)
    return ClassOut(**classes.entry(row))


@instructor.post("/classes/{class_id}/end", response_model=ClassOut,
                 summary="End a class: its code stops working; its data stays")
def end_class(class_id: str, classes: Classes) -> ClassOut:
    return ClassOut(**classes.entry(classes.end(class_id)))
