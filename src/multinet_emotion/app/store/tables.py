"""The tables: one SQLAlchemy model per table, the ids they use, and the row types queries
return (:class:`Response`) or take (:class:`Measured`).

Privacy by construction: no column can hold an image. A sample is six smoothed
probabilities (or "no face") per time step. The Alembic migrations in
``multinet_emotion/app/migrations`` create exactly this schema (a test compares them).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ...emotions import EMOTIONS, Reading

#: Ids a learner or a class may have (the API's schemas validate with the same patterns).
LEARNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
CLASS_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys


class Base(DeclarativeBase):
    pass


class Learner(Base):
    __tablename__ = "learners"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    # when the learner agreed to the consent text, and its version (None: signed up before
    # consent was recorded at sign-up)
    consent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    consent_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # the learner's own choice: per-minute emotion summaries go to the LRS (xAPI) too
    share_emotions: Mapped[bool] = mapped_column(Boolean, default=False)


class ClassRow(Base):
    """A class an instructor created; learners join it with its ``join_code`` (which may
    expire, and can be replaced). Sessions name their class by ``id``."""

    __tablename__ = "classes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    code_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"class_id": self.id, "name": self.name, "join_code": self.join_code,
                "code_expires_at": self.code_expires_at, "created_at": self.created_at,
                "ended_at": self.ended_at}


class LearningSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"),
                                            index=True)
    class_id: Mapped[str] = mapped_column(String(64), index=True, default="default")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    level: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="camera")
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EmotionSample(Base):
    """One downsampled time step: smoothed probabilities, or face=False. Never an image.

    The table row of a :class:`~multinet_emotion.emotions.Reading` (:meth:`from_reading`,
    :meth:`to_reading`). ``label`` is the label that was shown for it (the label filter's,
    see ``label_filter``); a face row without one was still being read, or was stored
    before labels were (then nothing is counted for it)."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_session_t", "session_id", "t"),
                      Index("ix_samples_learner_t", "learner_id", "t"))
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"))
    t: Mapped[float] = mapped_column(Float, index=True)
    face: Mapped[bool] = mapped_column(Boolean)
    angry: Mapped[float | None] = mapped_column(Float, nullable=True)
    fear: Mapped[float | None] = mapped_column(Float, nullable=True)
    happy: Mapped[float | None] = mapped_column(Float, nullable=True)
    neutral: Mapped[float | None] = mapped_column(Float, nullable=True)
    sad: Mapped[float | None] = mapped_column(Float, nullable=True)
    surprise: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str | None] = mapped_column(String(16), nullable=True)

    def probs(self) -> tuple[float, ...] | None:
        if not self.face:
            return None
        return tuple(getattr(self, e) or 0.0 for e in EMOTIONS)

    @classmethod
    def from_reading(cls, session_id: str, learner_id: str, r: Reading) -> EmotionSample:
        values = dict(zip(EMOTIONS, r.probs)) if r.probs is not None else {}
        return cls(session_id=session_id, learner_id=learner_id, t=r.t, face=r.face,
                   confidence=r.confidence, label=r.shown_label, **values)

    def to_reading(self) -> Reading:
        """The reading this row stores (its shown label, when it has a valid one)."""
        probs = self.probs()
        if probs is None:
            return Reading(self.t, None)
        return Reading(self.t, probs, self.confidence,
                       shown_label=self.label if self.label in EMOTIONS else None)

    def to_dict(self) -> dict[str, Any]:
        return self.to_reading().sample_json()


class RecommendationRow(Base):
    __tablename__ = "recommendations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"),
                                            index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"),
                                            index=True)
    created_at: Mapped[float] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    item_id: Mapped[str] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(2000))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict] = mapped_column(JSON)
    # open | accepted | dismissed | expired
    status: Mapped[str] = mapped_column(String(16), default="open")
    responded_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "session_id": self.session_id, "created_at": self.created_at,
                "rule": self.rule, "kind": self.kind,
                "item": {"id": self.item_id, "title": self.title, "url": self.url},
                "reason": self.reason, "evidence": self.evidence, "status": self.status,
                "responded_at": self.responded_at}


class OutcomeRow(Base):
    __tablename__ = "outcomes"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[str] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"), unique=True)
    computed_at: Mapped[float] = mapped_column(Float)
    before: Mapped[float | None] = mapped_column(Float, nullable=True)
    after: Mapped[float | None] = mapped_column(Float, nullable=True)
    delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    reward: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: not measured
    samples_before: Mapped[int] = mapped_column(Integer, default=0)
    samples_after: Mapped[int] = mapped_column(Integer, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"recommendation_id": self.recommendation_id, "computed_at": self.computed_at,
                "before": self.before, "after": self.after, "delta": self.delta,
                "reward": self.reward, "samples_before": self.samples_before,
                "samples_after": self.samples_after}


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("recommendation_id", name="uq_feedback_recommendation"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[str] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"))
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"),
                                            index=True)
    created_at: Mapped[float] = mapped_column(Float)
    value: Mapped[int] = mapped_column(SmallInteger)  # +1 thumbs up, -1 thumbs down
    comment: Mapped[str | None] = mapped_column(String(500), nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"recommendation_id": self.recommendation_id, "created_at": self.created_at,
                "value": self.value, "comment": self.comment}


class OutboxRow(Base):
    """An xAPI statement waiting for (or done with) the LRS: the durable outbox. Its id is
    fixed when it is queued, so a resend after an unclear answer is idempotent.
    ``state``: queued | sent | failing (rejected by the LRS; not retried by itself)."""

    __tablename__ = "xapi_outbox"
    __table_args__ = (Index("ix_xapi_outbox_state_next", "state", "next_attempt_at"),)
    statement_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"),
                                            index=True)
    body: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Response(NamedTuple):
    """A learner's response to a recommendation, as :meth:`Store.responses` returns it."""

    learner_id: str
    rule: str
    kind: str
    status: str                # accepted | dismissed
    reward: float | None       # the measured outcome; None: not measured (yet)
    feedback: int | None       # +1 thumbs up, -1 thumbs down; None: none given


class Measured(Protocol):
    """A measured outcome to store (``recommend.Outcome`` is one)."""

    @property
    def before(self) -> float: ...
    @property
    def after(self) -> float: ...
    @property
    def delta(self) -> float: ...
    @property
    def reward(self) -> float: ...
    @property
    def samples_before(self) -> int: ...
    @property
    def samples_after(self) -> int: ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a plain
    Result, but for these statements it is a CursorResult, which has the count."""
    return cast(CursorResult[Any], result).rowcount
