"""Reports: what learners and instructors read back, from the store and the live view.

A learner's timeline, summary and export; the instructor's class overview (who is
live, who needs attention, what helped) and class timeline. Nothing here changes what is
stored, except that an export first stores the readings that wait for their sample
interval to end (:meth:`IngestService.flush_learner`), so it is complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...emotions import Reading, label_mix
from ...recommend import Recommender, Trigger
from ...recommend.timeline import in_state
from ..settings import Settings
from ..store import Learner, LearningSession, Store
from .errors import NotFound
from .ingest import IngestService

#: The dashboard's "recent" mix of each learner: the last this many minutes.
RECENT_MINUTES = 5


class ReportService:
    def __init__(self, store: Store, recommender: Recommender, settings: Settings,
                 ingest: IngestService, clock: Callable[[], float] = time.time):
        self.store = store
        self.engine = recommender
        self.policy = recommender.policy
        self.settings = settings
        self.ingest = ingest  # the live view: who is in view, their latest state
        self.clock = clock

    def _learner(self, learner_id: str) -> Learner:
        learner = self.store.get_learner(learner_id)
        if learner is None:
            raise NotFound(f"no learner {learner_id!r}")
        return learner

    def _own_session(self, learner_id: str, session_id: str) -> None:
        live = self.ingest.live_session(session_id)
        owner = live.learner_id if live is not None else \
            getattr(self.store.get_session(session_id), "learner_id", None)
        if owner != learner_id:
            raise NotFound(f"no session {session_id!r} for this learner")

    # --- a learner's own data -------------------------------------------------------------

    def timeline(self, learner_id: str, session_id: str | None = None,
                 since: float | None = None, limit: int = 3600) -> list[dict[str, Any]]:
        """A learner's stored samples (of one session), the newest ``limit``, oldest first."""
        self._learner(learner_id)
        if session_id is not None:
            self._own_session(learner_id, session_id)
        return [s.to_dict() for s in self.store.samples(
            learner_id=learner_id, session_id=session_id, since=since, limit=limit)]

    def summary(self, learner_id: str) -> dict[str, Any]:
        learner = self._learner(learner_id)
        sessions = self.store.sessions(learner_id)
        samples = self.store.samples(learner_id=learner_id)
        faces = [s for s in samples if s.face]
        mix = label_mix([s.to_reading() for s in samples])
        recs = self.store.recommendations(learner_id=learner_id)
        by_status: dict[str, int] = {}
        helped = 0
        for r in recs:
            by_status[r.status] = by_status.get(r.status, 0) + 1
            o = self.store.outcome(r.id)
            helped += bool(o and o.reward is not None and o.reward > 0.5)
        return {
            "learner_id": learner_id, "name": learner.name,
            "sessions": len(sessions), "samples": len(samples),
            "face_share": round(len(faces) / len(samples), 3) if samples else None,
            "emotion_shares": {e: round(v, 3) for e, v in mix["shares"].items()}
            if faces else {},
            "recommendations": by_status, "helped": helped,
        }

    def export(self, learner_id: str) -> dict[str, Any]:
        """Everything stored about a learner (JSON-ready), pending readings included."""
        self.ingest.flush_learner(learner_id)
        data = self.store.export_learner(learner_id)
        if data is None:
            raise NotFound(f"no learner {learner_id!r}")
        return data

    # --- instructor views -----------------------------------------------------------------

    def class_overview(self, class_id: str) -> dict[str, Any]:
        now = self.clock()
        latest: dict[str, tuple[LearningSession, Learner]] = {}
        for sess, learner in self.store.class_sessions(class_id, since=now - 12 * 3600):
            latest[learner.id] = (sess, learner)  # sessions come oldest first
        learners = [self._overview_entry(sess, learner, now)
                    for sess, learner in latest.values()]
        learners.sort(key=lambda e: (e["attention"] is None, not e["live"], e["name"]))
        return {"class_id": class_id, "now": now, "learners": learners,
                "attention": [{"learner_id": e["learner_id"], "name": e["name"],
                               "reason": e["attention"]["reason"]}
                              for e in learners if e["attention"]],
                "outcomes": self.class_outcomes(class_id)}

    def _overview_entry(self, sess: LearningSession, learner: Learner, now: float
                        ) -> dict[str, Any]:
        """One learner of the class overview: their latest session's state, from the live
        view when it is in view, else from the store, and the mix of labels they were
        shown over the session and over the last :data:`RECENT_MINUTES`. Once the session
        has ended there is no current state: the mix stays."""
        entry: dict[str, Any] = {"learner_id": learner.id, "name": learner.name,
                                 "session_id": sess.id, "started_at": sess.started_at,
                                 "ended_at": sess.ended_at, "live": False,
                                 "current": None, "attention": None,
                                 "negative_share": None, "recommendation": None,
                                 "mix": {"session": self.store.label_mix(sess.id),
                                         "recent": self.store.label_mix(
                                             sess.id, since=now - RECENT_MINUTES * 60),
                                         "recent_minutes": RECENT_MINUTES}}
        if sess.ended_at is not None:
            return entry
        timeline: list[Reading]
        view = self.ingest.view(sess.id, now)  # in view in this process or another
        if view is not None:
            timeline = view.timeline
            entry["current"] = None if view.current is None else view.current.sample_json()
            entry["live"] = view.live
            if view.open_rec is not None:
                entry["recommendation"] = {"title": view.open_rec.title,
                                           "kind": view.open_rec.kind,
                                           "reason": view.open_rec.reason}
        else:
            rows = self.store.samples(session_id=sess.id, since=now - 600)
            timeline = [r.to_reading() for r in rows]
            if rows:
                entry["current"] = rows[-1].to_dict()
        recent = [s for s in timeline if s.shown_label is not None  # a label was shown
                  and s.t >= now - RECENT_MINUTES * 60]
        negative = self.policy.attention  # what counts as negative is the policy's call
        if recent and negative is not None:
            entry["negative_share"] = round(
                sum(in_state(s, negative) for s in recent) / len(recent), 3)
        trig: Trigger | None = self.engine.attention(timeline, timeline[-1].t) \
            if timeline and entry["live"] else None
        if trig is not None:
            entry["attention"] = {"reason": trig.reason(), "evidence": trig.evidence()}
        return entry

    def class_outcomes(self, class_id: str) -> dict[str, Any]:
        by_kind: dict[str, dict[str, Any]] = {}
        for rec, outcome, fb in self.store.class_recommendations(class_id):
            k = by_kind.setdefault(rec.kind, {"offered": 0, "accepted": 0, "dismissed": 0,
                                              "expired": 0, "open": 0, "measured": 0,
                                              "helped": 0, "reward_sum": 0.0,
                                              "thumbs_up": 0, "thumbs_down": 0})
            k["offered"] += 1
            k[rec.status] = k.get(rec.status, 0) + 1
            if outcome is not None and outcome.reward is not None:
                k["measured"] += 1
                k["reward_sum"] += outcome.reward
                k["helped"] += outcome.reward > 0.5
            if fb is not None:
                k["thumbs_up" if fb.value > 0 else "thumbs_down"] += 1
        for k in by_kind.values():
            k["mean_reward"] = round(k.pop("reward_sum") / k["measured"], 3) \
                if k["measured"] else None
        return by_kind

    def class_timeline(self, class_id: str, minutes: float = 10.0,
                       bucket: float = 10.0) -> dict[str, Any]:
        now = self.clock()
        since = now - minutes * 60
        points = self.store.class_timeline(class_id, since, bucket)
        return {"class_id": class_id, "since": since, "until": now, "bucket": bucket,
                "points": points}
