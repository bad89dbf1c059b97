"""Request and response bodies of the API (validated; unknown fields are refused)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..emotions import EMOTIONS
from .store import CLASS_ID, LEARNER_ID

EmotionName = Literal["angry", "fear", "happy", "neutral", "sad", "surprise"]
#: Most samples one POST /samples may carry (a minute at 10 per second).
MAX_SAMPLES_PER_REQUEST = 600
#: A number as JSON writes it: a float or an int (0, 1), never a string ("0.1") or a bool.
Number = Annotated[float, Field(strict=True)]


#: Control characters (C0 with NUL, DEL, C1): refused in every text a client sends...
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: ... but tabs and line breaks in free text (``_In.free_text``).
CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def refuse_control(value: Any, pattern: re.Pattern[str] = CONTROL) -> Any:
    """``value`` (a text, or a list of texts) when it holds no control character (NUL
    would make PostgreSQL fail, and none belongs in a name, code or id); else ValueError."""
    for text in value if isinstance(value, list | tuple) else (value,):
        if isinstance(text, str) and pattern.search(text):
            raise ValueError("control characters (such as NUL) are not allowed")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: fields of free text, which may hold tabs and line breaks
    free_text: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_control(value, CONTROL_IN_TEXT if info.field_name in cls.free_text
                              else CONTROL)


class RegisterIn(_In):
    name: str = Field("", max_length=100, description="display name shown to the instructor")
    learner_id: str | None = Field(None, pattern=LEARNER_ID.pattern,
                                   description="your platform's id (instructor token needed)")
    consent: StrictBool = Field(False, description="true: the learner read the consent text "
                                                   "(GET /api/consent) and agrees; without "
                                                   "it nothing is stored")
    consent_version: str | None = Field(None, max_length=40,
                                        description="the version of the consent text agreed to")


class RegisterOut(BaseModel):
    learner_id: str
    name: str
    token: str = Field(description="bearer token for this learner's requests; shown once")


class TokenOut(BaseModel):
    learner_id: str
    token: str


class MeOut(BaseModel):
    learner_id: str
    name: str
    consent_version: str | None = Field(description="the version of the consent text this "
                                                    "learner agreed to (None: none recorded)")
    consent_current: bool = Field(description="false: the consent text changed since; no "
                                              "session, WebSocket or sample is taken until "
                                              "the learner agrees again (POST /api/me/consent)")


class ConsentIn(_In):
    consent: StrictBool = Field(False, description="true: the learner read the current consent "
                                                   "text (GET /api/consent) and agrees")
    consent_version: str | None = Field(None, max_length=40,
                                        description="the version of the consent text agreed to")


class ConsentGivenOut(BaseModel):
    learner_id: str
    consent_version: str
    consent_at: float


class SessionIn(_In):
    join_code: str = Field(min_length=1, max_length=32,
                           description="the class's join code, from the instructor (any case; "
                                       "spaces and dashes are ignored)")
    tags: list[str] = Field(default_factory=list, max_length=20,
                            description="topic tags, used to pick matching content")
    level: int | None = Field(None, ge=1, le=5, description="current difficulty 1-5")
    source: Literal["camera", "client", "api"] = "api"

    @model_validator(mode="before")
    @classmethod
    def _no_class_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "class_id" in data:
            raise ValueError("class_id is not accepted: join a class with its join code "
                             "(join_code), which your teacher gives you")
        return data

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not 1 <= len(t) <= 40:
                raise ValueError("each tag must have 1 to 40 characters")
        return [t.lower() for t in v]


class SessionFields(BaseModel):
    """A learning session as every answer gives it."""

    id: str
    class_id: str
    tags: list[str]
    level: int | None
    source: str
    started_at: float
    ended_at: float | None


class SessionOut(SessionFields):
    learner_id: str


class SampleIn(_In):
    t: Number | None = Field(None, description="UTC epoch seconds; default: when received")
    face: StrictBool = Field(True, description="false when no face was seen")
    probs: dict[EmotionName, Number] | None = Field(
        None, description="smoothed probabilities of all six emotions (sum 1); omit when "
                          "face is false")
    confidence: Number | None = Field(None, ge=0.0, le=1.0)
    label: EmotionName | None = Field(
        None, description="the label the client showed for this sample, from its own label "
                          "filter (null: still reading); leave it out to have the server's "
                          "filter label the sample")

    @property
    def labelled(self) -> bool:
        """Whether the client said which label it showed (``label`` given, even null)."""
        return "label" in self.model_fields_set

    @model_validator(mode="after")
    def _check(self) -> SampleIn:
        if self.t is not None and not math.isfinite(self.t):
            raise ValueError("t must be a finite number of seconds")
        if not self.face:
            if self.probs:
                raise ValueError("a sample without a face has no probabilities")
            return self
        if not self.probs or set(self.probs) != set(EMOTIONS):
            raise ValueError(f"probs must give all six emotions: {', '.join(EMOTIONS)}")
        for k, p in self.probs.items():
            if not (math.isfinite(p) and 0.0 <= p <= 1.0):
                raise ValueError(f"probability of {k} must be between 0 and 1, got {p}")
        total = sum(self.probs.values())
        if not 0.95 <= total <= 1.05:
            raise ValueError(f"probabilities must sum to 1 (got {total:.3f})")
        return self


class SamplesIn(_In):
    samples: list[SampleIn] = Field(
        min_length=1, max_length=MAX_SAMPLES_PER_REQUEST,
        description=f"in time order, at most {MAX_SAMPLES_PER_REQUEST} per request")


class ItemOut(BaseModel):
    id: str
    title: str
    url: str
    kind: str | None = None
    duration: float | None = None
    tags: list[str] = []
    difficulty: int | None = None


class RecommendationOut(BaseModel):
    id: str
    session_id: str
    created_at: float
    rule: str
    kind: str
    item: ItemOut
    reason: str = Field(description="why, in plain words")
    evidence: dict[str, Any] = Field(description="window, shares and personalisation")
    status: Literal["open", "accepted", "dismissed", "expired"]
    responded_at: float | None


class CurrentRecommendationOut(BaseModel):
    recommendation: RecommendationOut | None


class SamplesOut(BaseModel):
    stored: int = Field(description="downsampled samples written")
    recommendation: RecommendationOut | None = Field(
        description="a recommendation made because of these samples, if any")


class FeedbackIn(_In):
    free_text = frozenset({"comment"})
    value: Literal["up", "down"]
    comment: str | None = Field(None, max_length=500)


class FeedbackOut(BaseModel):
    recommendation_id: str
    value: int
    comment: str | None
    created_at: float


class TimelinePoint(BaseModel):
    t: float
    face: bool
    probs: dict[str, float] | None
    label: str | None = Field(description="the label shown (null with a face: still reading)")
    share: float | None = Field(None, description="the shown label's own probability")
    confidence: float | None = Field(description="the largest probability, whichever class "
                                                 "it is")


class TimelineOut(BaseModel):
    learner_id: str
    samples: list[TimelinePoint]


class DeletedOut(BaseModel):
    deleted: dict[str, int]


class ClassIn(_In):
    name: str = Field(min_length=1, max_length=100, description="shown to the instructor "
                                                               "and to learners who join")
    class_id: str | None = Field(None, pattern=CLASS_ID.pattern,
                                 description="default: made from the name")
    expires_in_days: float | None = Field(None, gt=0, le=366,
                                          description="the join code stops working after "
                                                      "this many days (default: never)")


class CodeIn(_In):
    expires_in_days: float | None = Field(None, gt=0, le=366,
                                          description="the new code stops working after this "
                                                      "many days (default: never)")


class ClassOut(BaseModel):
    class_id: str
    name: str
    join_code: str = Field(description="what learners type to join")
    code_expires_at: float | None = Field(description="when the code stops working (UTC "
                                                      "epoch seconds); null: never")
    code_expired: bool = False
    created_at: float
    ended_at: float | None
    learners: int = 0
    live: int = 0
    last_started: float | None = None


class JoinOut(BaseModel):
    class_id: str
    name: str
    code_expires_at: float | None


class ConsentItem(BaseModel):
    title: str
    text: str


class ConsentOut(BaseModel):
    version: str = Field(description="send it back as consent_version when signing up")
    items: list[ConsentItem]
    covers: dict[str, Any] = Field(description="what the text covers besides its words: where "
                                               "pictures are analysed, whether a learning "
                                               "record store gets records, the revision of the "
                                               "instructor's view; the version follows them")
    retention_days: float


def recommendation_out(row: Any) -> RecommendationOut:
    d = row.to_dict()
    item = (row.evidence or {}).get("item") or d["item"]
    d["item"] = {**d["item"], **item}
    d["evidence"] = {k: v for k, v in (row.evidence or {}).items() if k != "item"}
    return RecommendationOut(**d)
