"""The outbox of xAPI statements, and the hook that fills it in the same transaction as
the write a statement describes.

A :class:`Recorder` (the web service's xAPI module) is told of each write the store makes
that a learning record describes (a :class:`StoreEvent`: a session started or ended, a
suggestion shown, answered, rated or measured, samples stored) *inside* that write's
transaction, through a :class:`Transaction` that can read what it needs and
:meth:`~Transaction.queue` statements: the event and its statements are committed together
or not at all. :class:`Outbox` is what the sender uses afterwards: claim the statements
that are due, mark them sent, retry them later or mark them failing, and count them.

The store knows nothing of xAPI: a statement is a JSON object with an ``id``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
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
    """The Store's part for the xAPI outbox: its recorders, its :class:`Outbox`, and each
    learner's choice to share emotion summaries."""

    session: Callable[[], AbstractContextManager[Session]]  # the Store's

    @functools.cached_property
    def recorders(self) -> list[Recorder]:
        """Told of every write a learning record describes (empty: no LRS, nothing queued)."""
        return []

    @functools.cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.session)

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


class Outbox:
    """The sender's queries over the ``xapi_outbox`` table, each its own transaction."""

    def __init__(self, session: Callable[[], AbstractContextManager[Session]]):
        self._session = session

    def claim(self, now: float, limit: int, lease: float) -> list[OutboxRow]:
        """Up to ``limit`` queued statements that are due, oldest first; they are not due
        again for ``lease`` seconds (while they are being sent)."""
        q = (select(OutboxRow).where(OutboxRow.state == "queued",
                                     OutboxRow.next_attempt_at <= now)
             .order_by(OutboxRow.created_at, OutboxRow.statement_id).limit(limit)
             .with_for_update(skip_locked=True))
        with self._session() as s:
            rows = list(s.scalars(q))
            for row in rows:
                row.next_attempt_at = now + lease
        return rows

    def mark_sent(self, ids: Sequence[str], now: float) -> int:
        """The LRS has these statements (stored now, or known to it already)."""
        return self._set(ids, state="sent", sent_at=now, last_error=None,
                         attempts=OutboxRow.attempts + 1)

    def retry_later(self, ids: Sequence[str], error: str, at: float) -> int:
        """These were not delivered for a passing reason (LRS down, slow, 5xx): due again
        at ``at``."""
        return self._set(ids, next_attempt_at=at, last_error=error[:MAX_ERROR],
                         attempts=OutboxRow.attempts + 1)

    def mark_failing(self, statement_id: str, error: str) -> int:
        """The LRS rejected this statement (4xx): kept, shown, not sent again by itself."""
        return self._set([statement_id], state="failing", last_error=error[:MAX_ERROR],
                         attempts=OutboxRow.attempts + 1)

    def _set(self, ids: Sequence[str], **values: Any) -> int:
        if not ids:
            return 0
        with self._session() as s:  # a learner deleted meanwhile: no row, nothing to do
            return rowcount(s.execute(update(OutboxRow).where(OutboxRow.statement_id.in_(list(ids)))
                                      .values(**values))) or 0

    def requeue_failing(self, now: float) -> int:
        """Send the failing statements again (after the cause was fixed); their count."""
        with self._session() as s:
            return rowcount(s.execute(update(OutboxRow).where(OutboxRow.state == "failing")
                                      .values(state="queued", next_attempt_at=now))) or 0

    def get(self, statement_id: str) -> OutboxRow | None:
        with self._session() as s:
            return s.get(OutboxRow, statement_id)

    def rows(self, learner_id: str | None = None) -> list[OutboxRow]:
        """Every row (of one learner), oldest first (for tests and exports)."""
        q = select(OutboxRow).order_by(OutboxRow.created_at, OutboxRow.statement_id)
        if learner_id is not None:
            q = q.where(OutboxRow.learner_id == learner_id)
        with self._session() as s:
            return list(s.scalars(q))

    def stats(self) -> dict[str, Any]:
        """Counts per state, when the oldest queued statement was queued, and the error of
        the newest failing one (what the dashboard shows)."""
        with self._session() as s:
            counts = dict(s.execute(select(OutboxRow.state, func.count())
                                    .group_by(OutboxRow.state)).all())
            oldest = s.scalar(select(func.min(OutboxRow.created_at))
                              .where(OutboxRow.state == "queued"))
            failing = s.execute(select(OutboxRow.last_error, OutboxRow.statement_id)
                                .where(OutboxRow.state == "failing")
                                .order_by(OutboxRow.created_at.desc()).limit(1)).first()
            retrying = s.scalar(select(OutboxRow.last_error)
                                .where(OutboxRow.state == "queued",
                                       OutboxRow.last_error.is_not(None))
                                .order_by(OutboxRow.created_at).limit(1))
        return {"queued": counts.get("queued", 0), "sent": counts.get("sent", 0),
                "failing": counts.get("failing", 0), "oldest_queued_at": oldest,
                "failing_error": failing[0] if failing else None,
                "failing_statement": failing[1] if failing else None,
                "retry_error": retrying}

    def purge_sent(self, before: float) -> int:
        """Forget statements the LRS got before ``before`` (the LRS keeps them)."""
        with self._session() as s:
            return rowcount(s.execute(delete(OutboxRow).where(OutboxRow.state == "sent",
                                                              OutboxRow.sent_at < before)
                                      )) or 0
