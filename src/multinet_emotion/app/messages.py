"""The learner WebSocket's messages, typed: what the page sends, what the server answers.

Client -> server (JSON text; camera frames travel as binary JPEG/PNG/WebP messages):
:class:`Hello` (first, once), then :class:`Sample` (a client that classified on its own)
or :class:`Ping`. Server -> client: :class:`Ready` (after a good hello), :class:`Result`
(one per frame or sample), :class:`RecommendationMessage` (before the result that led to
it), :class:`ErrorMessage` and :class:`Pong`.

:mod:`.ws` validates each incoming message with these models and builds every reply from
them, so what it sends is what :func:`json_schema` says. The schema is served at
``GET /api/ws-schema``; the browser test checks every message the learner page
(``static/learner.js``) sends and receives against it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictStr, field_validator
from pydantic.json_schema import models_json_schema

from .schemas import EmotionName, RecommendationOut, SampleIn, TimelinePoint, refuse_control

#: What the server answers to a first message that is not a good hello (then it closes).
HELLO_FIRST = 'send {"type": "hello", "token": ..., "session_id": ...} first'
#: What it answers to a text message after the hello that is neither a sample nor a ping.
UNKNOWN_MESSAGE = 'unknown message; send image frames as binary, or {"type": "sample", ...}'


def _type_first(schema: dict[str, Any], _cls: type) -> None:
    """Every message names its type: required in the schema, even where the model fills
    it in (the server's replies)."""
    required = [r for r in schema.get("required", []) if r != "type"]
    schema["required"] = ["type", *required]


# --- client -> server ---------------------------------------------------------------------

class Hello(BaseModel):
    """The first message: the learner's token (in the message, never the URL, so it stays
    out of access logs) and their session. Other fields are ignored."""

    model_config = ConfigDict(json_schema_extra=_type_first)
    type: Literal["hello"]
    token: StrictStr = Field(description="the learner's bearer token")
    session_id: StrictStr = Field(description="a session of this learner (POST /api/sessions)")

    @field_validator("token", "session_id")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        return refuse_control(value)


class Sample(SampleIn):
    """Smoothed probabilities from a client that classified on its own (as one sample of
    ``POST /api/sessions/{id}/samples``; its ``t`` is ignored: the server stamps it). The
    learner page sends these, and no frames, when it analyses in the browser
    (``serve --analysis browser|auto``, ``static/analysis.js``), with the ``label`` it
    showed (its own label filter, the runtime's step for step)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_first)
    type: Literal["sample"]


class Ping(BaseModel):
    """Keeps the connection alive; answered with a :class:`Pong`. Other fields are
    ignored."""

    model_config = ConfigDict(json_schema_extra=_type_first)
    type: Literal["ping"]


# --- server -> client ---------------------------------------------------------------------

class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_first)

    def payload(self) -> dict[str, Any]:
        """The message as JSON-ready data."""
        return self.model_dump(mode="json")

    def encode(self) -> str:
        """The message as the compact JSON text that is sent."""
        return json.dumps(self.payload(), separators=(",", ":"))


class Ready(_Reply):
    """The hello was accepted; what the page needs to send frames."""

    type: Literal["ready"] = "ready"
    analysis: bool = Field(description="frames are analysed on the server")
    analysis_note: str = Field(description="what analyses frames, or why nothing does")
    frame_rate: float = Field(description="frames per second to send")
    frame_width: int = Field(description="width to scale frames to before sending them")
    max_frame_bytes: int = Field(description="larger frames are refused")


class Face(BaseModel):
    """One face of a frame (``Reading.face_json``): ``probs``/``label`` are the raw
    reading, ``smoothed``/``smoothed_label`` the smoothed one, ``shown_label`` the one to
    show (None: still reading) and ``shown_share`` its own smoothed probability."""

    model_config = ConfigDict(extra="forbid")
    track_id: int | None
    box: tuple[int, int, int, int] | None = Field(description="x, y, w, h in frame pixels")
    angle: float = Field(0.0, description="a tilted face: degrees (counter-clockwise) that "
                                          "turn the picture about the box's centre to stand "
                                          "the face upright; 0 = upright")
    probs: dict[EmotionName, float]
    label: EmotionName
    smoothed: dict[EmotionName, float]
    smoothed_label: EmotionName
    shown_label: EmotionName | None
    shown_share: float | None = Field(description="the shown label's own smoothed "
                                                  "probability (what a percentage beside "
                                                  "it means)")
    confidence: float | None = Field(description="the largest smoothed probability, "
                                                 "whichever class it is")


class Current(TimelinePoint):
    """The learner's shown state (``Reading.sample_json``): ``label`` is the shown label
    (None with a face: still reading) and ``share`` its own probability; no face: ``face``
    false and no probabilities."""

    model_config = ConfigDict(extra="forbid")
    # narrower than TimelinePoint's (pydantic fields may narrow; mypy sees a mutable dict)
    probs: dict[EmotionName, float] | None  # type: ignore[assignment]
    label: EmotionName | None


class Result(_Reply):
    """The answer to one frame or sample, in the order they were sent."""

    type: Literal["result"] = "result"
    seq: int = Field(ge=1, description="the number of the frame or sample answered")
    faces: list[Face] = Field(description="the faces of the frame ([] for a sample)")
    current: Current | None = Field(description="the learner's shown state")
    ms: float = Field(description="milliseconds the server took")


class RecommendationMessage(_Reply):
    """A recommendation the frame or sample ``seq`` led to; sent before its result."""

    type: Literal["recommendation"] = "recommendation"
    seq: int = Field(ge=1)
    recommendation: RecommendationOut


class ErrorMessage(_Reply):
    """A frame or sample that was refused or skipped (``seq``: which; the connection stays
    up), or, without ``seq``, a message that was not understood. After a bad hello, an
    ended or deleted session or an unexpected server error, the server then closes."""

    type: Literal["error"] = "error"
    seq: int | None = Field(default=None, ge=1, description="absent when no frame or sample is meant")
    message: str

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)  # no "seq": null


class Pong(_Reply):
    """The answer to a :class:`Ping`."""

    type: Literal["pong"] = "pong"


#: The text messages the server accepts, by their ``type``: after the hello, ``sample``
#: and ``ping``.
CLIENT_MESSAGES: dict[str, type[BaseModel]] = {"hello": Hello, "sample": Sample, "ping": Ping}


class ClientMessage(RootModel[Annotated[Hello | Sample | Ping, Field(discriminator="type")]]):
    """A text message from the learner page."""


class ServerMessage(RootModel[Annotated[Ready | Result | RecommendationMessage | ErrorMessage
                                        | Pong, Field(discriminator="type")]]):
    """A message from the server."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the learner WebSocket's text messages: every
    message is one of ``$defs/ClientMessage`` (page -> server) or ``$defs/ServerMessage``
    (server -> page); validate one direction with ``{"$ref": "#/$defs/ClientMessage"}``
    and these ``$defs``."""
    _, schema = models_json_schema([(ClientMessage, "validation"),
                                    (ServerMessage, "validation")],
                                   ref_template="#/$defs/{model}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "MultiNetEmotion learner WebSocket (/ws/learn)",
            "description": __doc__.split("\n\n")[1].replace("\n", " "),
            "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
            "$defs": schema["$defs"]}
