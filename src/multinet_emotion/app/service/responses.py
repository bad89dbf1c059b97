"""A learner's answers to suggestions: the open one of a session, accepting or dismissing
it, thumbs up or down. A part of :class:`~.ingest.IngestService` (its live view and store).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..store import RecommendationRow, Store
from .errors import Conflict, NotFound
from .live import LiveSession
from .shared_live import LiveSync


class Responses:
    """Suggestions and the learner's answers (a part of the ingest service)."""

    store: Store
    sync: LiveSync
    clock: Callable[[], float]
    policy: Any
    _live: dict[str, LiveSession]
    _lock: threading.Lock
    shared: Any

    def session(self, learner_id: str | None, session_id: str) -> LiveSession:
        raise NotImplementedError

    def live_session(self, session_id: str) -> LiveSession | None:
        raise NotImplementedError

    def current_recommendation(self, learner_id: str, session_id: str
                               ) -> RecommendationRow | None:
        live = self.session(learner_id, session_id)
        with self.sync.guard(live):
            if live.open_rec is not None and \
                    self.clock() - live.open_rec.created_at > self.policy.expire_after:
                self.store.set_status(live.open_rec.id, "expired", self.clock())
                live.open_rec = None
            return live.open_rec

    def _own_rec(self, learner_id: str, rec_id: str) -> RecommendationRow:
        rec = self.store.get_recommendation(rec_id)
        if rec is None or rec.learner_id != learner_id:
            raise NotFound(f"no recommendation {rec_id!r} for this learner")
        return rec

    def respond(self, learner_id: str, rec_id: str, action: str) -> RecommendationRow:
        """Accept or dismiss an open recommendation."""
        status = {"accept": "accepted", "dismiss": "dismissed"}[action]
        rec: RecommendationRow | None = self._own_rec(learner_id, rec_id)
        now = self.clock()
        if not self.store.set_status(rec_id, status, now):
            current = self.store.get_recommendation(rec_id)
            state = current.status if current else "gone"
            raise Conflict(f"recommendation {rec_id} is already {state}")
        rec = self.store.get_recommendation(rec_id)
        assert rec is not None
        live = self.live_session(rec.session_id)
        if live is None and self.shared is not None:  # in view in another process, maybe
            live = self.session(None, rec.session_id)
        if live is not None:
            with self.sync.guard(live):
                if live.open_rec is not None and live.open_rec.id == rec_id:
                    live.open_rec = None
                if status == "accepted" and all(r.id != rec_id for r in live.pending_outcomes):
                    live.pending_outcomes.append(rec)
        return rec

    def feedback(self, learner_id: str, rec_id: str, value: int,
                 comment: str | None = None) -> dict[str, Any]:
        rec = self._own_rec(learner_id, rec_id)
        if rec.status == "open":  # a thumbs up on an open card counts as accepting it
            try:
                self.respond(learner_id, rec_id, "accept" if value > 0 else "dismiss")
            except Conflict:
                pass
        return self.store.set_feedback(rec_id, learner_id, value, comment, self.clock()).to_dict()

