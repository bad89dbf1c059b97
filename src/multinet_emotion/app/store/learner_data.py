"""The Store's part for a learner's own data: everything stored about them, exported
(their right of access) or deleted (their right to erasure), each in one transaction.
Samples still queued for writing (:class:`~.writer.SampleWriter`) are written first, so
an export misses none and a deletion leaves none behind."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .tables import (
    EmotionSample,
    FeedbackRow,
    Learner,
    LearningSession,
    OutboxRow,
    OutcomeRow,
    RecommendationRow,
    rowcount,
)
from .writer import SampleWriter

log = logging.getLogger(__name__)


class LearnerDataStore:
    """Export and deletion of one learner's data (a part of the Store)."""

    session: Callable[[], AbstractContextManager[Session]]  # the Store's
    writer: SampleWriter

    def set_consent(self, learner_id: str, version: str, now: float) -> bool:
        """Record that a learner agreed to consent text ``version`` at ``now`` (an earlier
        agreement is replaced); False when there is no such learner."""
        with self.session() as s:
            return bool(rowcount(s.execute(update(Learner).where(Learner.id == learner_id)
                                           .values(consent_version=version, consent_at=now))))

    def export_learner(self, learner_id: str) -> dict[str, Any] | None:
        """Everything stored about a learner, as JSON-ready data (no token hash)."""
        self.writer.flush()
        with self.session() as s:
            learner = s.get(Learner, learner_id)
            if learner is None:
                return None
            sessions = s.scalars(select(LearningSession)
                                 .where(LearningSession.learner_id == learner_id)
                                 .order_by(LearningSession.started_at)).all()
            samples = s.scalars(select(EmotionSample)
                                .where(EmotionSample.learner_id == learner_id)
                                .order_by(EmotionSample.t, EmotionSample.id)).all()
            recs = s.scalars(select(RecommendationRow)
                             .where(RecommendationRow.learner_id == learner_id)
                             .order_by(RecommendationRow.created_at)).all()
            rec_ids = [r.id for r in recs]
            outcomes = s.scalars(select(OutcomeRow)
                                 .where(OutcomeRow.recommendation_id.in_(rec_ids))).all() \
                if rec_ids else []
            feedback = s.scalars(select(FeedbackRow)
                                 .where(FeedbackRow.learner_id == learner_id)).all()
            by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for smp in samples:
                by_session[smp.session_id].append(smp.to_dict())
            return {
                "format": "multinet-emotion learner export", "version": 1,
                "exported_at": time.time(),
                "learner": {"id": learner.id, "name": learner.name,
                            "created_at": learner.created_at,
                            "consent_at": learner.consent_at,
                            "consent_version": learner.consent_version},
                "sessions": [{"id": x.id, "class_id": x.class_id, "tags": x.tags,
                              "level": x.level, "source": x.source,
                              "started_at": x.started_at, "ended_at": x.ended_at,
                              "samples": by_session.get(x.id, [])} for x in sessions],
                "recommendations": [r.to_dict() for r in recs],
                "outcomes": [o.to_dict() for o in outcomes],
                "feedback": [f.to_dict() for f in feedback],
            }

    def delete_learner(self, learner_id: str) -> dict[str, int] | None:
        """Delete a learner and every row about them; the counts deleted, None if unknown."""
        self.writer.flush()  # what is queued is deleted too, not written after
        with self.session() as s:
            if s.get(Learner, learner_id) is None:
                return None
            rec_ids = select(RecommendationRow.id).where(
                RecommendationRow.learner_id == learner_id)
            counts = {
                "feedback": rowcount(s.execute(delete(FeedbackRow).where(
                    FeedbackRow.recommendation_id.in_(rec_ids)
                    | (FeedbackRow.learner_id == learner_id)))),
                "outcomes": rowcount(s.execute(delete(OutcomeRow).where(
                    OutcomeRow.recommendation_id.in_(rec_ids)))),
                "recommendations": rowcount(s.execute(delete(RecommendationRow).where(
                    RecommendationRow.learner_id == learner_id))),
                "samples": rowcount(s.execute(delete(EmotionSample).where(
                    EmotionSample.learner_id == learner_id))),
                "sessions": rowcount(s.execute(delete(LearningSession).where(
                    LearningSession.learner_id == learner_id))),
                "statements": rowcount(s.execute(delete(OutboxRow).where(  # xAPI, sent or not
                    OutboxRow.learner_id == learner_id))),
                "learners": rowcount(s.execute(delete(Learner).where(
                    Learner.id == learner_id))),
            }
        log.info("deleted learner data: %s", counts)
        return counts
