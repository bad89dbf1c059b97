"""The outbox of xAPI statements, and the hook that fills it in the same transaction as
the write a statement describes.

A :class:`Recorder` (the web service's xAPI module) is told of each write the store makes
that a learning record describes (a :class:`StoreEvent`: a session started or ended, a
suggestion shown, answered, rated or measured, samples stored) *inside* that write's
transaction, through a :class:`Transaction` that can read what it needs and
:meth:`~Transaction.queue` statements: the event and its statements are committed together
or not at all. The sender's queries over the outbox afterwards are
:class:`multinet_emotion.app.xapi.store.Outbox`.

The store knows nothing of xAPI: a statement is a JSON object with an ``id``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ...emotions import Reading
from .tables import EmotionSample, Learner, LearningSession, OutboxRow, RecommendationRow, rowcount

log = logging.getLogger(__name__)

#: What a :class:`StoreEvent` may be about.
EVENT_KINDS = ("session_started", "session_ended", "recommended", "responded", "rated",
               "outcome", "samples")
#: The longest error text kept on a row (the column's size).
MAX_ERROR = 300


@dataclass(frozen=True)
class StoreEvent:
    """One write a learning record may describe, at ``at``. ``row`` is the row written (a
    LearningSession, RecommendationRow, OutcomeRow or FeedbackRow; for "responded" the
    recommendation, with its new status); ``readings`` the samples stored ("samples").
    ``learner_id`` and ``session_id`` are those of the row when it has them (an outcome
    has neither: read its recommendation)."""

    kind: str
    at: float
    row: Any = None
    learner_id: str | None = None
    session_id: str | None = None
    readings: Sequence[Reading] = ()


class Transaction:
    """What a recorder may do inside the transaction of the write it is told of."""

    def __init__(self, s: Session):
        self._s = s

    def queue(self, learner_id: str, body: dict[str, Any], now: float) -> str:
        """Queue a statement (``body["id"]``, fixed now) for the LRS; returns its id."""
        statement_id = str(body["id"])
        self._s.add(OutboxRow(statement_id=statement_id, learner_id=learner_id, body=body,
                              state="queued", attempts=0, next_attempt_at=now,
                              created_at=now))
        return statement_id

    def queued(self, statement_id: str) -> bool:
        """Whether a statement with this id is in the outbox already (queued or sent)."""
        return self._s.get(OutboxRow, statement_id) is not None

    def learning_session(self, session_id: str) -> LearningSession | None:
        return self._s.get(LearningSession, session_id)

    def recommendation(self, rec_id: str) -> RecommendationRow | None:
        return self._s.get(RecommendationRow, rec_id)

    def shares_emotions(self, learner_id: str) -> bool:
        """Whether the learner chose to share per-minute emotion summaries with the LRS."""
        return bool(self._s.scalar(select(Learner.share_emotions)
                                   .where(Learner.id == learner_id)))

    def samples(self, session_id: str, since: float, until: float) -> list[EmotionSample]:
        """The session's stored samples with ``since <= t < until``, oldest first."""
        return list(self._s.scalars(
            select(EmotionSample).where(EmotionSample.session_id == session_id,
                                        EmotionSample.t >= since, EmotionSample.t < until)
            .order_by(EmotionSample.t, EmotionSample.id)))

    def last_sample_t(self, session_id: str, before: float | None = None) -> float | None:
        """The time of the session's last stored sample (before ``before``, when given)."""
        q = select(func.max(EmotionSample.t)).where(EmotionSample.session_id == session_id)
        if before is not None:
            q = q.where(EmotionSample.t < before)
        return self._s.scalar(q)


class Recorder(Protocol):
    """Told of a write inside its transaction; may queue statements through ``tx``. What it
    raises rolls the write back, so it must only raise for database errors."""

    def __call__(self, tx: Transaction, event: StoreEvent) -> None: ...


class XapiStore:
    """The Store's part for the xAPI outbox: its recorders (told of each write in its
    transaction), and each learner's choice to share emotion summaries."""

    session: Callable[[], AbstractContextManager[Session]]  # the Store's

    @functools.cached_property
    def recorders(self) -> list[Recorder]:
        """Told of every write a learning record describes (empty: no LRS, nothing queued)."""
        return []

    def _emit(self, s: Session, kind: str, at: float, row: Any = None, **more: Any) -> None:
        """Tell every recorder of a write, inside its transaction ``s``."""
        if not self.recorders:
            return
        more.setdefault("learner_id", getattr(row, "learner_id", None))
        more.setdefault("session_id", getattr(row, "session_id", None))
        event = StoreEvent(kind, at, row, **more)
        for recorder in self.recorders:
            recorder(Transaction(s), event)

    def set_share_emotions(self, learner_id: str, share: bool) -> bool:
        """Record the learner's choice; False when there is no such learner."""
        with self.session() as s:
            return bool(rowcount(s.execute(update(Learner).where(Learner.id == learner_id)
                                           .values(share_emotions=share))))

    def shares_emotions(self, learner_id: str) -> bool:
        with self.session() as s:
            return Transaction(s).shares_emotions(learner_id)
