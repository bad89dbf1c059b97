"""The xAPI outbox's queries for the sender (the ``xapi_outbox`` table): claim the statements
that are due, mark them sent, retry them later or mark them failing, and count them.

Statements are queued by the store's recorders (:mod:`multinet_emotion.app.store.events`) in
the transaction of the write they describe; this is what happens to them afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..store.events import MAX_ERROR
from ..store.tables import OutboxRow, rowcount

log = logging.getLogger(__name__)

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
