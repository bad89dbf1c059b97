"""The service layer: sessions, samples, recommendations and aggregates over store + engine.

Routes and the WebSocket stay thin and call :class:`LearningService`. It keeps a small
in-memory view of each live session (the recent timeline, the open recommendation, the
latest state) so the engine runs once per stored sample without reading the database, and
writes every downsampled sample, recommendation, response and outcome through the
:class:`~multinet_emotion.store.Store`. One process owns the live view: run one worker.

What people see is steady: the ``label`` of the live state (``current``) and of stored
samples is the *stable* label (minimum dwell time and hysteresis, see
:class:`~multinet_emotion.tracking.StableLabel`): the detector's ``stable_label`` for
frames the server analysed, or, for samples without one (clients that classify on their
own), a per-session state machine with the same settings. The probabilities stay the
smoothed ones as received; the recommender works on them, not on the label.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..emotions import EMOTIONS
from ..errors import MultiNetError
from ..recommend import LearnerContext, Recommender, Sample, Trigger, detect_state
from ..store import (
    CLASS_ID,
    Learner,
    LearningSession,
    RecommendationRow,
    Store,
    StoredSample,
    hash_token,
    new_id,
)
from ..tracking import StableLabel
from .analysis import stable_label_config
from .settings import Settings

log = logging.getLogger(__name__)


class ServiceError(MultiNetError):
    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Invalid(ServiceError):
    status = 422


@dataclass(frozen=True)
class RawSample:
    """A sample as received: from the server's detector or a client that classified."""

    t: float
    probs: tuple[float, ...] | None    # smoothed probabilities in EMOTIONS order; None = no face
    confidence: float | None = None
    label: str | None = None           # the stable label to show; None = the session's own

    @classmethod
    def from_client(cls, t: float, probs: Mapping[str, float] | None,
                    confidence: float | None = None) -> RawSample:
        """A sample from a client that classified on its own, over the HTTP API or the
        WebSocket alike: its probabilities (validated to sum to about 1) normalised to sum
        exactly 1, in EMOTIONS order; no probabilities = no face."""
        if not probs:
            return cls(t, None, confidence)
        total = sum(probs[e] for e in EMOTIONS)
        return cls(t, tuple(probs[e] / total for e in EMOTIONS), confidence)


@dataclass
class _Bucket:
    index: int
    t_last: float = 0.0
    sums: list[float] = field(default_factory=lambda: [0.0] * len(EMOTIONS))
    faces: int = 0
    total: int = 0
    confidence: float = 0.0
    label: str | None = None  # the stable label of the bucket's last face sample

    def add(self, s: RawSample, label: str | None) -> None:
        self.total += 1
        self.t_last = s.t
        if s.probs is not None:
            self.faces += 1
            self.sums = [a + b for a, b in zip(self.sums, s.probs)]
            self.confidence += s.confidence or 0.0
            self.label = label

    def sample(self) -> StoredSample:
        if self.faces * 2 < self.total or self.faces == 0:  # mostly nobody there
            return StoredSample(Sample(self.t_last, None))
        return StoredSample(Sample(self.t_last, tuple(x / self.faces for x in self.sums)),
                            self.confidence / self.faces, self.label)


class LiveSession:
    """The in-memory view of one session."""

    def __init__(self, row: LearningSession, horizon: float,
                 labeler: StableLabel | None = None):
        self.row = row
        self.id, self.learner_id, self.class_id = row.id, row.learner_id, row.class_id
        self.timeline: deque[Sample] = deque()
        self.horizon = horizon
        self.bucket: _Bucket | None = None
        self.last_raw_t: float | None = None
        self.current: dict[str, Any] | None = None
        # steadies the label of samples that come without a stable label
        self.labeler = labeler or StableLabel(stable_label_config())
        self.main_track: Any = None
        self.open_rec: RecommendationRow | None = None
        self.last_recommended_at: float | None = None
        self.last_by_rule: dict[str, float] = {}
        self.recent_items: list[str] = []
        self.pending_outcomes: list[RecommendationRow] = []
        self.last_seen = 0.0
        self.ended = row.ended_at is not None
        self.lock = threading.RLock()

    def append(self, s: Sample) -> None:
        self.timeline.append(s)
        while self.timeline and self.timeline[0].t < s.t - self.horizon:
            self.timeline.popleft()


class LearningService:
    def __init__(self, store: Store, recommender: Recommender, settings: Settings,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.engine = recommender
        self.policy = recommender.policy
        self.settings = settings
        self.clock = clock
        self.label_config = stable_label_config(settings.min_dwell, settings.hysteresis)
        self._live: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    # --- learners -------------------------------------------------------------------------

    def register(self, name: str, learner_id: str | None = None) -> tuple[Learner, str]:
        if learner_id is not None and self.store.get_learner(learner_id) is not None:
            raise Conflict(f"learner {learner_id!r} already exists; ask the instructor for a "
                           "new token instead")
        learner, token = self.store.create_learner(name, learner_id, now=self.clock())
        return learner, token

    def new_token(self, learner_id: str) -> str:
        """Replace a learner's token (instructor action); the old one stops working."""
        import secrets
        if self.store.get_learner(learner_id) is None:
            raise NotFound(f"no learner {learner_id!r}")
        token = secrets.token_urlsafe(24)
        from sqlalchemy import update

        from ..store import Learner as L
        with self.store.session() as s:
            s.execute(update(L).where(L.id == learner_id).values(token_hash=hash_token(token)))
        return token

    def learner_for_token(self, token: str) -> str | None:
        """The learner of a token, read from the database on every call (a unique-index
        lookup): no cache that a rotation or deletion racing with a lookup could leave
        holding a revoked token."""
        learner = self.store.learner_by_token(token)
        return None if learner is None else learner.id

    # --- sessions -------------------------------------------------------------------------

    def start_session(self, learner_id: str, class_id: str = "default",
                      tags: Sequence[str] = (), level: int | None = None,
                      source: str = "camera") -> LiveSession:
        if not CLASS_ID.match(class_id):
            raise Invalid(f"class id {class_id!r} is not valid (letters, digits, _ . -)")
        row = self.store.start_session(learner_id, class_id, tags, level, source,
                                       now=self.clock())
        return self._load(row)

    def _load(self, row: LearningSession) -> LiveSession:
        with self._lock:
            if row.id in self._live:
                return self._live[row.id]
        live = LiveSession(row, self.policy.horizon, StableLabel(self.label_config))
        now = self.clock()
        for smp in self.store.samples(session_id=row.id, since=now - self.policy.horizon):
            live.append(smp.to_sample())
        if live.timeline:
            live.last_raw_t = live.timeline[-1].t
            live.last_seen = live.timeline[-1].t
        recs = self.store.recommendations(learner_id=row.learner_id)
        for r in recs:
            live.last_recommended_at = max(live.last_recommended_at or 0.0, r.created_at)
            live.last_by_rule[r.rule] = max(live.last_by_rule.get(r.rule, 0.0), r.created_at)
            if r.status == "open" and r.session_id == row.id:
                live.open_rec = r
        live.recent_items = [r.item_id for r in reversed(recs)][:20]
        live.pending_outcomes = self.store.pending_outcomes(row.learner_id)
        with self._lock:
            return self._live.setdefault(row.id, live)

    def session(self, learner_id: str | None, session_id: str) -> LiveSession:
        """The live session; NotFound when it does not exist or is not this learner's."""
        with self._lock:
            live = self._live.get(session_id)
        if live is None:
            row = self.store.get_session(session_id)
            if row is None or (learner_id is not None and row.learner_id != learner_id):
                raise NotFound(f"no session {session_id!r} for this learner")
            live = self._load(row)
        if learner_id is not None and live.learner_id != learner_id:
            raise NotFound(f"no session {session_id!r} for this learner")
        return live

    def end_session(self, learner_id: str, session_id: str) -> LearningSession:
        live = self.session(learner_id, session_id)
        with live.lock:
            self._flush(live)
            row = self.store.end_session(session_id, now=self.clock())
            live.ended = True
            if live.open_rec is not None:
                self.store.set_status(live.open_rec.id, "expired", self.clock())
                live.open_rec = None
            for rec in list(live.pending_outcomes):  # measure with what there is
                self._finish_outcome(live, rec)
        with self._lock:
            self._live.pop(session_id, None)
        assert row is not None
        return row

    # --- samples --------------------------------------------------------------------------

    def add_samples(self, learner_id: str, session_id: str, samples: Sequence[RawSample],
                    flush: bool = True) -> tuple[int, RecommendationRow | None]:
        """Validate and ingest samples (all or nothing); returns (stored, new recommendation)."""
        live = self.session(learner_id, session_id)
        now = self.clock()
        with live.lock:
            if live.ended:
                raise Conflict(f"session {session_id} has ended; start a new session")
            prev = live.last_raw_t
            for i, s in enumerate(samples):
                if prev is not None and s.t <= prev:
                    raise Invalid(f"samples[{i}]: t={s.t} is not after the previous sample "
                                  f"(t={prev}); send samples in time order, once")
                if s.t < live.row.started_at - 60 or s.t > now + 60:
                    raise Invalid(f"samples[{i}]: t={s.t} is outside the session (started at "
                                  f"{live.row.started_at:.0f}, server time {now:.0f})")
                prev = s.t
            stored: list[StoredSample] = []
            interval = self.settings.sample_interval
            label: str | None = None
            for s in samples:
                if s.probs is None:  # nobody in view: the next face's label is taken at once
                    label = None
                    live.labeler.reset()
                else:
                    label = s.label or live.labeler.update(s.probs, s.t)
                index = int(s.t // interval)
                if live.bucket is not None and live.bucket.index != index:
                    stored.append(live.bucket.sample())
                    live.bucket = None
                if live.bucket is None:
                    live.bucket = _Bucket(index)
                live.bucket.add(s, label)
                live.last_raw_t = s.t
            if flush and live.bucket is not None:
                stored.append(live.bucket.sample())
                live.bucket = None
            if samples:
                last = samples[-1]
                live.last_seen = now
                # "label" is the stable label, what the pages show; "probs" the smoothed ones
                live.current = {"t": last.t, "face": last.probs is not None,
                                "probs": dict(zip(EMOTIONS, last.probs)) if last.probs else None,
                                "label": label, "confidence": last.confidence}
            return len(stored), self._store_and_tick(live, stored)

    def add_faces(self, learner_id: str, session_id: str, faces: Sequence[dict[str, Any]],
                  t: float | None = None) -> tuple[dict[str, Any] | None,
                                                   RecommendationRow | None]:
        """Ingest the detector's per-face results for one frame of this learner's camera."""
        live = self.session(learner_id, session_id)
        t = self.clock() if t is None else t
        main = self._main_face(live, faces)
        if main is None:
            raw = RawSample(t, None)
        else:
            sm = main.get("smoothed") or main.get("probs") or {}
            probs = tuple(float(sm.get(e, 0.0)) for e in EMOTIONS)
            stable = main.get("stable_label")
            raw = RawSample(t, probs, float(main.get("confidence") or max(probs)),
                            stable if stable in EMOTIONS else None)
        with live.lock:
            if live.last_raw_t is not None and t <= live.last_raw_t:
                t = live.last_raw_t + 1e-3
                raw = RawSample(t, raw.probs, raw.confidence, raw.label)
            _, rec = self.add_samples(learner_id, session_id, [raw], flush=False)
            return live.current, rec

    @staticmethod
    def _main_face(live: LiveSession, faces: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        faces = [f for f in faces if f.get("face", True)]
        if not faces:
            return None
        for f in faces:
            if live.main_track is not None and f.get("track_id") == live.main_track:
                return f
        main = max(faces, key=lambda f: (f.get("box") or [0, 0, 0, 0])[2]
                   * (f.get("box") or [0, 0, 0, 0])[3])
        live.main_track = main.get("track_id")
        return main

    def _flush(self, live: LiveSession) -> None:
        if live.bucket is not None:
            stored = [live.bucket.sample()]
            live.bucket = None
            self._store_and_tick(live, stored)

    def _store_and_tick(self, live: LiveSession, stored: list[StoredSample]
                        ) -> RecommendationRow | None:
        if not stored:
            return None
        self.store.add_samples(live.id, live.learner_id, stored)
        for st in stored:
            live.append(st.sample)
        return self._tick(live, live.timeline[-1].t)

    def _tick(self, live: LiveSession, now: float) -> RecommendationRow | None:
        """Expire, measure outcomes and maybe recommend, at timeline time ``now``."""
        if live.open_rec is not None and now - live.open_rec.created_at > self.policy.expire_after:
            self.store.set_status(live.open_rec.id, "expired", now)
            live.open_rec = None
        for rec in list(live.pending_outcomes):
            if rec.responded_at is not None and now >= self.engine.outcome_due(rec.responded_at):
                self._finish_outcome(live, rec)
        if live.open_rec is not None:
            return None
        ctx = LearnerContext(last_recommended_at=live.last_recommended_at,
                             last_by_rule=live.last_by_rule, open_recommendation=False,
                             recent_items=live.recent_items, tags=live.row.tags or (),
                             level=live.row.level)
        if self.engine.in_cooldown(ctx, now):
            return None
        timeline = list(live.timeline)
        if not any(not self.engine.in_cooldown(ctx, now, rule)  # cheap: check it first
                   and detect_state(rule, self.policy, timeline, now) is not None
                   for rule in self.policy.rules):
            return None  # no rule that may suggest now holds: skip the bandit statistics
        ctx.you, ctx.others = self.store.bandit_stats(self.policy.personalisation,
                                                      live.learner_id)
        rec = self.engine.recommend(timeline, now, ctx)
        if rec is None:
            return None
        row = RecommendationRow(
            id=new_id(), learner_id=live.learner_id, session_id=live.id, created_at=now,
            rule=rec.rule, kind=rec.kind, item_id=rec.item.id, title=rec.item.title,
            url=rec.item.url, reason=rec.reason,
            evidence=rec.evidence | {"item": rec.item.to_dict()}, status="open")
        self.store.add_recommendation(row)
        live.open_rec = row
        live.last_recommended_at = now
        live.last_by_rule[rec.rule] = now
        live.recent_items.insert(0, rec.item.id)
        del live.recent_items[20:]
        log.info("recommendation %s (%s/%s) for session %s", row.id, rec.rule, rec.kind,
                 live.id)
        return row

    def _finish_outcome(self, live: LiveSession, rec: RecommendationRow) -> None:
        o = self.policy.outcome
        assert rec.responded_at is not None
        samples = [s.to_sample() for s in self.store.samples(
            learner_id=rec.learner_id, since=rec.created_at - o.before,
            until=self.engine.outcome_due(rec.responded_at))]
        outcome = self.engine.outcome(rec.rule, samples, rec.created_at, rec.responded_at)
        try:
            self.store.add_outcome(rec.id, outcome, self.clock())
        except (MultiNetError, IntegrityError):
            pass  # measured already by another session of the same learner
        live.pending_outcomes = [r for r in live.pending_outcomes if r.id != rec.id]

    # --- recommendations ------------------------------------------------------------------

    def current_recommendation(self, learner_id: str, session_id: str
                               ) -> RecommendationRow | None:
        live = self.session(learner_id, session_id)
        with live.lock:
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
        rec = self._own_rec(learner_id, rec_id)
        now = self.clock()
        if not self.store.set_status(rec_id, status, now):
            current = self.store.get_recommendation(rec_id)
            state = current.status if current else "gone"
            raise Conflict(f"recommendation {rec_id} is already {state}")
        rec = self.store.get_recommendation(rec_id)
        assert rec is not None
        with self._lock:
            live = self._live.get(rec.session_id)
        if live is not None:
            with live.lock:
                if live.open_rec is not None and live.open_rec.id == rec_id:
                    live.open_rec = None
                if status == "accepted":
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

    # --- a learner's own data -------------------------------------------------------------

    def timeline(self, learner_id: str, session_id: str | None = None,
                 since: float | None = None, limit: int = 3600) -> list[dict[str, Any]]:
        if session_id is not None:
            self.session(learner_id, session_id)
        return [s.to_dict() for s in self.store.samples(
            learner_id=learner_id, session_id=session_id, since=since, limit=limit)]

    def summary(self, learner_id: str) -> dict[str, Any]:
        sessions = self.store.sessions(learner_id)
        samples = self.store.samples(learner_id=learner_id)
        faces = [s for s in samples if s.face]
        counts = {e: 0 for e in EMOTIONS}
        for s in faces:
            counts[s.shown_label()] += 1  # type: ignore[index]
        recs = self.store.recommendations(learner_id=learner_id)
        by_status: dict[str, int] = {}
        helped = 0
        for r in recs:
            by_status[r.status] = by_status.get(r.status, 0) + 1
            o = self.store.outcome(r.id)
            helped += bool(o and o.reward is not None and o.reward > 0.5)
        learner = self.store.get_learner(learner_id)
        return {
            "learner_id": learner_id, "name": learner.name if learner else "",
            "sessions": len(sessions), "samples": len(samples),
            "face_share": round(len(faces) / len(samples), 3) if samples else None,
            "emotion_shares": {e: round(c / len(faces), 3) for e, c in counts.items()}
            if faces else {},
            "recommendations": by_status, "helped": helped,
        }

    # --- instructor views -----------------------------------------------------------------

    def classes(self) -> list[dict[str, Any]]:
        out = self.store.class_ids()
        now = self.clock()
        with self._lock:
            lives = list(self._live.values())
        for c in out:
            c["live"] = sum(1 for x in lives if x.class_id == c["class_id"] and not x.ended
                            and now - x.last_seen <= self.settings.live_seconds)
        return out

    def class_overview(self, class_id: str) -> dict[str, Any]:
        now = self.clock()
        latest: dict[str, tuple[LearningSession, Learner]] = {}
        for sess, learner in self.store.class_sessions(class_id, since=now - 12 * 3600):
            latest[learner.id] = (sess, learner)  # sessions come oldest first
        learners = []
        for learner_id, (sess, learner) in latest.items():
            with self._lock:
                live = self._live.get(sess.id)
            entry: dict[str, Any] = {"learner_id": learner_id, "name": learner.name,
                                     "session_id": sess.id, "started_at": sess.started_at,
                                     "ended_at": sess.ended_at, "live": False,
                                     "current": None, "attention": None,
                                     "negative_share": None, "recommendation": None}
            timeline: list[Sample]
            if live is not None:
                with live.lock:
                    timeline = list(live.timeline)
                    entry["current"] = live.current
                    entry["live"] = (not live.ended
                                     and now - live.last_seen <= self.settings.live_seconds)
                    if live.open_rec is not None:
                        entry["recommendation"] = {"title": live.open_rec.title,
                                                   "kind": live.open_rec.kind,
                                                   "reason": live.open_rec.reason}
            else:
                rows = self.store.samples(session_id=sess.id, since=now - 600)
                timeline = [r.to_sample() for r in rows]
                if rows:
                    entry["current"] = rows[-1].to_dict()
            recent = [s for s in timeline if s.face and s.t >= now - 300]
            negative = self.policy.attention  # what counts as negative is the policy's call
            if recent and negative is not None:
                idx = negative.indices
                entry["negative_share"] = round(sum(
                    sum(s.probs[i] for i in idx) >= negative.threshold  # type: ignore[index]
                    for s in recent) / len(recent), 3)
            trig: Trigger | None = self.engine.attention(timeline, timeline[-1].t) \
                if timeline and entry["live"] else None
            if trig is not None:
                entry["attention"] = {"reason": trig.reason(), "evidence": trig.evidence()}
            learners.append(entry)
        learners.sort(key=lambda e: (e["attention"] is None, not e["live"], e["name"]))
        return {"class_id": class_id, "now": now, "learners": learners,
                "attention": [{"learner_id": e["learner_id"], "name": e["name"],
                               "reason": e["attention"]["reason"]}
                              for e in learners if e["attention"]],
                "outcomes": self.class_outcomes(class_id)}

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

    # --- export, deletion, retention ------------------------------------------------------

    def export(self, learner_id: str) -> dict[str, Any]:
        for live in self._lives_of(learner_id):
            with live.lock:
                self._flush(live)
        data = self.store.export_learner(learner_id)
        if data is None:
            raise NotFound(f"no learner {learner_id!r}")
        return data

    def delete(self, learner_id: str) -> dict[str, int]:
        for live in self._lives_of(learner_id):
            with self._lock:
                self._live.pop(live.id, None)
        counts = self.store.delete_learner(learner_id)
        if counts is None:
            raise NotFound(f"no learner {learner_id!r}")
        return counts

    def _lives_of(self, learner_id: str) -> list[LiveSession]:
        with self._lock:
            return [x for x in self._live.values() if x.learner_id == learner_id]

    def housekeeping(self) -> int:
        """Apply the retention period and forget sessions idle for an hour."""
        now = self.clock()
        n = self.store.purge_samples(now - self.settings.retention_days * 86_400)
        with self._lock:
            for sid, live in list(self._live.items()):
                if now - max(live.last_seen, live.row.started_at) > 3600:
                    del self._live[sid]
        return n
