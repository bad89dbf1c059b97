"""Ingest and live state: learners, sessions, samples, recommendations and responses.

It keeps a small in-memory view of each live session (:class:`~.live.LiveSession`: the
recent timeline, the open recommendation, the cool-downs, the latest state) so the
recommender runs once per stored sample without reading the database, and writes every
downsampled sample, recommendation, response and outcome through the
:class:`~multinet_emotion.app.store.Store`. With SQLite one process owns the live view; with
PostgreSQL (``shared``) the view is a cache of the live state every process sees, read and
changed only inside :meth:`~.shared_live.LiveSync.guard` (any number of workers).

What people see, what is stored and what the rules judge is one label: the ``label`` of
the live state (``current``) and of stored samples is the *shown* label
(:class:`~multinet_emotion.runtime.label_filter.LabelFilter`): the detector's ``shown_label`` for
frames the server analysed, the page's own for a learner page that analyses in the browser
(it runs the same filter), or, for samples that come without one (other clients), the
session's own filter with the same settings. The probabilities stay the smoothed ones as
received. A stored second carries the label shown longest in it, and is "no face" when
nobody was in view for at least half of its readings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ...emotions import Reading
from ...errors import MultiNetError
from ...recommend import LearnerContext, Recommender, detect_state
from ...runtime.label_filter import FilterConfig, LabelFilter
from ..sessions.store import REVOKE_CHANNEL, SharedLive
from ..settings import Settings
from ..store import (
    CLASS_ID,
    Learner,
    LearningSession,
    RecommendationRow,
    Store,
    new_id,
)
from .errors import Conflict, Invalid, NotFound
from .live import LiveSession, average
from .responses import Responses
from .shared_live import LiveSync, LiveView, restore

log = logging.getLogger(__name__)

#: A sample may be stamped at most this many seconds ahead of the server clock (clocks
#: differ a little); later ones would block the learner's real samples, which must come
#: in time order.
MAX_AHEAD = 5.0


class IngestService(Responses):
    def __init__(self, store: Store, recommender: Recommender, settings: Settings,
                 clock: Callable[[], float] = time.time, shared: SharedLive | None = None):
        self.store = store
        self.shared = shared  # PostgreSQL: the live state every process sees
        self.sync = LiveSync(shared, self._refill, clock)
        self.engine = recommender
        self.policy = recommender.policy
        self.settings = settings
        self.clock = clock
        self.label_config = FilterConfig()  # the runtime's, as the detector's
        self._live: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        #: Called with (learner id, reason) once a learner's token stops working (rotated,
        #: or the learner deleted), after the change is stored: the WebSocket ends that
        #: learner's open connections.
        self.on_revoke: list[Callable[[str, str], None]] = []
        #: Called with (learner id, session id) once a session ended (and in every other
        #: process, through ``shared``): the WebSocket closes that session's connections.
        self.on_end: list[Callable[[str, str], None]] = []

    # --- learners -------------------------------------------------------------------------

    def register(self, name: str, learner_id: str | None = None,
                 consent_version: str | None = None) -> tuple[Learner, str]:
        """A new learner and their token; ``consent_version``: the consent text they agreed
        to (checked by the caller: :func:`..consent.check_consent`), stored with the time."""
        if learner_id is not None and self.store.get_learner(learner_id) is not None:
            raise Conflict(f"learner {learner_id!r} already exists; ask the instructor for a "
                           "new token instead")
        learner, token = self.store.create_learner(name, learner_id, now=self.clock(),
                                                   consent_version=consent_version)
        return learner, token

    def new_token(self, learner_id: str) -> str:
        """Replace a learner's token (instructor action); the old one stops working."""
        token = self.store.new_token(learner_id)
        if token is None:
            raise NotFound(f"no learner {learner_id!r}")
        self._revoked(learner_id, "your token was replaced; sign in with the new token")
        return token

    def _revoked(self, learner_id: str, reason: str) -> None:
        self.revoke_here(learner_id, reason)
        if self.shared is not None:  # and in every other process (theirs call revoke_here)
            self.shared.notify(REVOKE_CHANNEL, {"learner_id": learner_id, "reason": reason})

    def revoke_here(self, learner_id: str, reason: str) -> None:
        """End this process's connections of a learner whose token stopped working."""
        for callback in self.on_revoke:
            callback(learner_id, reason)

    def learner_for_token(self, token: str) -> str | None:
        """The learner of a token, read from the database on every call (a unique-index
        lookup): no cache that a rotation or deletion racing with a lookup could leave
        holding a revoked token."""
        learner = self.store.learner_by_token(token)
        return None if learner is None else learner.id

    def token_learner(self, token: str) -> Learner | None:
        """The learner a token belongs to (one unique-index lookup, as above)."""
        return self.store.learner_by_token(token)

    def agree(self, learner_id: str, version: str) -> float:
        """Record the learner's agreement to consent text ``version`` (checked by the
        caller: :func:`..consent.check_consent`); the time it was stored."""
        now = self.clock()
        if not self.store.set_consent(learner_id, version, now):
            raise NotFound(f"no learner {learner_id!r}")
        return now

    def learner_name(self, learner_id: str) -> str:
        """The learner's display name ("" when there is no such learner)."""
        learner = self.store.get_learner(learner_id)
        return learner.name if learner else ""

    # --- sessions -------------------------------------------------------------------------

    def start_session(self, learner_id: str, class_id: str = "default",
                      tags: Sequence[str] = (), level: int | None = None,
                      source: str = "camera") -> LiveSession:
        if not CLASS_ID.match(class_id):
            raise Invalid(f"class id {class_id!r} is not valid (letters, digits, _ . -)")
        if self.store.get_class(class_id) is None:  # learners join by code (ClassService)
            raise NotFound(f"no class {class_id!r}: an instructor creates classes first "
                           "(POST /api/classes, or Store.ensure_class for a platform)")
        row = self.store.start_session(learner_id, class_id, tags, level, source,
                                       now=self.clock())
        return self._load(row)

    def _load(self, row: LearningSession) -> LiveSession:
        with self._lock:
            if row.id in self._live:
                return self._live[row.id]
        live = LiveSession(row, self.policy.horizon, LabelFilter(self.label_config))
        if self.shared is None:  # shared: filled under the session's lock when first used
            self._fill(live)
        with self._lock:
            return self._live.setdefault(row.id, live)

    def _fill(self, live: LiveSession) -> None:
        """Rebuild a session's view from the store: the recent stored readings, the open
        suggestion, the cool-downs and the accepted suggestions whose outcome is due."""
        now = self.clock()
        live.timeline.clear()
        for smp in self.store.samples(session_id=live.id, since=now - self.policy.horizon):
            live.append(smp.to_reading())
        if live.timeline:
            live.last_raw_t = live.timeline[-1].t
            live.last_seen = live.timeline[-1].t
        recs = self.store.recommendations(learner_id=live.learner_id)
        live.open_rec, live.last_recommended_at, live.last_by_rule = None, None, {}
        for r in recs:
            live.last_recommended_at = max(live.last_recommended_at or 0.0, r.created_at)
            live.last_by_rule[r.rule] = max(live.last_by_rule.get(r.rule, 0.0), r.created_at)
            if r.status == "open" and r.session_id == live.id:
                live.open_rec = r
        live.recent_items = [r.item_id for r in reversed(recs)][:20]
        live.pending_outcomes = self.store.pending_outcomes(live.learner_id)

    def _refill(self, live: LiveSession, state: dict[str, Any] | None) -> None:
        """Re-read a cached session another process changed (``state``: its stored live
        state; None: none yet). NotFound when the session was deleted meanwhile."""
        row = self.store.get_session(live.id)
        if row is None:
            with self._lock:
                self._live.pop(live.id, None)
            raise NotFound(f"no session {live.id!r}: it was deleted")
        live.row, live.ended = row, row.ended_at is not None
        self._fill(live)
        if state is not None:
            restore(live, state)

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

    def open_session(self, learner_id: str, session_id: str) -> LiveSession:
        """The live session, when it has not ended (Conflict when it has)."""
        live = self.session(learner_id, session_id)
        with self.sync.guard(live):
            ended = live.ended
        if ended:
            raise Conflict(f"session {session_id} has ended; start a new session")
        return live

    def end_session(self, learner_id: str, session_id: str) -> LearningSession:
        live = self.session(learner_id, session_id)
        with self.sync.guard(live):
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
        self.ended_here(learner_id, session_id)
        if self.shared is not None:  # and in every other process (theirs call ended_here)
            self.shared.notify(REVOKE_CHANNEL, {"learner_id": learner_id,
                                                "session_id": session_id})
        assert row is not None
        return row

    def ended_here(self, learner_id: str, session_id: str) -> None:
        """Close this process's connections of a session that ended."""
        for callback in self.on_end:
            callback(learner_id, session_id)

    # --- what the reports read ------------------------------------------------------------

    def live_counts(self) -> dict[str, int]:
        """Live sessions (not ended, a sample within ``live_seconds``) per class, of every
        process."""
        now = self.clock()
        if self.shared is not None:
            return self.shared.live_counts(now - self.settings.live_seconds)
        with self._lock:
            lives = list(self._live.values())
        out: dict[str, int] = {}
        for x in lives:
            with x.lock:
                if x.is_live(now, self.settings.live_seconds):
                    out[x.class_id] = out.get(x.class_id, 0) + 1
        return out

    def view(self, session_id: str, now: float) -> LiveView | None:
        """What the dashboard shows of a session in view (of any process), or None."""
        return self.sync.view(self.store, self.live_session(session_id), session_id, now,
                              self.policy.horizon, self.settings.live_seconds)

    def live_session(self, session_id: str) -> LiveSession | None:
        """The session's live view when it is in view (never loaded from the database)."""
        with self._lock:
            return self._live.get(session_id)

    def flush_learner(self, learner_id: str) -> None:
        """Store the readings of a learner's sessions that wait for their sample interval to
        end, so that what is read next from the store is complete."""
        if self.shared is not None:  # readings may wait in any process's live state
            lives = [self.session(learner_id, row.id) for row in
                     self.store.sessions(learner_id) if row.ended_at is None]
        else:
            lives = self._lives_of(learner_id)
        for live in lives:
            with self.sync.guard(live):
                self._flush(live)

    def flush_session(self, learner_id: str, session_id: str) -> None:
        """Store the readings of a session's current sample interval now (its WebSocket
        closed without ending it: they would wait for a next reading that may not come)."""
        try:
            live = self.session(learner_id, session_id)
        except NotFound:  # deleted meanwhile
            return
        with self.sync.guard(live):
            self._flush(live)

    def flush_all(self) -> None:
        """Store every live session's waiting readings (the service stops)."""
        with self._lock:
            lives = list(self._live.values())
        for live in lives:
            try:
                with self.sync.guard(live):
                    self._flush(live)
            except Exception:  # noqa: BLE001 - store what can be stored
                log.exception("storing session %s's last readings failed", live.id)

    def _lives_of(self, learner_id: str) -> list[LiveSession]:
        with self._lock:
            return [x for x in self._live.values() if x.learner_id == learner_id]

    # --- samples --------------------------------------------------------------------------

    def add_samples(self, learner_id: str, session_id: str, samples: Sequence[Reading],
                    flush: bool = True, labelled: Sequence[bool] | bool = False
                    ) -> tuple[int, RecommendationRow | None]:
        """Validate and ingest readings (all or nothing); returns (stored, new recommendation).

        ``labelled`` (one flag, or one per reading): the reading's ``shown_label`` is the
        label its source showed (the detector's, or a page's that runs the same filter;
        None = still reading); other readings are labelled by the session's own filter. The
        readings of one ``sample_interval`` are stored as one (:func:`.live.average`)."""
        flags = [labelled] * len(samples) if isinstance(labelled, bool) else list(labelled)
        live = self.session(learner_id, session_id)
        now = self.clock()
        with self.sync.guard(live):
            if live.ended:
                raise Conflict(f"session {session_id} has ended; start a new session")
            prev = live.last_raw_t
            for i, s in enumerate(samples):
                if prev is not None and s.t <= prev:
                    raise Invalid(f"samples[{i}]: t={s.t} is not after the previous sample "
                                  f"(t={prev}); send samples in time order, once")
                if s.t < live.row.started_at:
                    raise Invalid(f"samples[{i}]: t={s.t} is outside the session: before it "
                                  f"started (at {live.row.started_at:.3f})")
                if s.t > now + MAX_AHEAD:
                    raise Invalid(f"samples[{i}]: t={s.t} is outside the session: "
                                  f"{s.t - now:.1f} s ahead of the server clock ({now:.3f}); "
                                  f"at most {MAX_AHEAD:g} s ahead is accepted (check the "
                                  "client's clock, or leave t out)")
                prev = s.t
            stored: list[Reading] = []
            interval = self.settings.sample_interval
            # the interval stored last: one stored early (a request's end, a read of the
            # data) takes no second reading; later ones of it only change the live state
            done = int(live.timeline[-1].t // interval) if live.timeline else None
            for s, own in zip(samples, flags):
                if s.probs is not None and not own:  # a gap resets the filter by itself
                    probs = s.raw_probs if s.raw_probs is not None else s.probs
                    s = replace(s, shown_label=live.labeler.update(probs, s.t))
                index = int(s.t // interval)
                if live.pending and live.interval != index:
                    stored.append(average(live.pending))
                    done, live.pending = live.interval, []
                live.interval = index
                if index != done:
                    live.pending.append(s)
                live.last_raw_t = s.t
                live.current = s  # "label" is the shown label, "probs" the smoothed ones
            if flush and live.pending:
                stored.append(average(live.pending))
                live.pending = []
            if samples:
                live.last_seen = now
            return len(stored), self._store_and_tick(live, stored)

    def add_reading(self, learner_id: str, session_id: str, reading: Reading,
                    labelled: bool = False
                    ) -> tuple[Reading | None, RecommendationRow | None]:
        """Ingest one reading of a client that classified on its own (the WebSocket's
        samples; ``labelled``: it carries the label the client showed); returns the
        learner's current reading and a new recommendation."""
        live = self.session(learner_id, session_id)
        with self.sync.guard(live):  # stamped by the server: in order, whoever sent first
            if live.last_raw_t is not None and reading.t <= live.last_raw_t:
                reading = replace(reading, t=live.last_raw_t + 1e-3)
            _, rec = self.add_samples(learner_id, session_id, [reading], False, labelled)
            return live.current, rec

    def add_faces(self, learner_id: str, session_id: str, faces: Sequence[Reading],
                  t: float | None = None) -> tuple[Reading | None, RecommendationRow | None]:
        """Ingest the detector's readings of one frame of this learner's camera, taken at
        ``t`` (default: now): the main face's reading, or "no face" when there is none.
        Returns the learner's current reading (the label shown) and a new recommendation."""
        live = self.session(learner_id, session_id)
        t = self.clock() if t is None else t
        with self.sync.guard(live):
            main = self._main_face(live, faces)
            reading = Reading(t, None) if main is None else main
            if live.last_raw_t is not None and reading.t <= live.last_raw_t:
                reading = replace(reading, t=live.last_raw_t + 1e-3)
            _, rec = self.add_samples(learner_id, session_id, [reading], flush=False,
                                      labelled=True)
            return live.current, rec

    @staticmethod
    def _main_face(live: LiveSession, faces: Sequence[Reading]) -> Reading | None:
        """The learner's face: the one followed so far, else the largest."""
        faces = [f for f in faces if f.face]
        if not faces:
            return None
        for f in faces:
            if live.main_track is not None and f.track_id == live.main_track:
                return f
        main = max(faces, key=lambda f: f.box[2] * f.box[3] if f.box else 0)
        live.main_track = main.track_id
        return main

    def _flush(self, live: LiveSession) -> None:
        if live.pending:
            stored = [average(live.pending)]
            live.pending = []
            self._store_and_tick(live, stored)

    def _store_and_tick(self, live: LiveSession, stored: list[Reading]
                        ) -> RecommendationRow | None:
        if not stored:
            return None
        # one process (SQLite): written behind, in one transaction per flush interval for
        # every learner (this process's reads write what is queued first); several
        # (PostgreSQL): at once, because other processes read them from the database; and at
        # once when learning records are kept (an LRS): a record sums up its minute's samples
        # as they are written, in order with the learner's other choices (sharing)
        defer = self.shared is None and not self.store.recorders
        self.store.add_samples(live.id, live.learner_id, stored, defer=defer)
        for r in stored:
            live.append(r)
        return self._tick(live, live.timeline[-1].t)

    def _tick(self, live: LiveSession, now: float) -> RecommendationRow | None:
        """Expire, measure outcomes and maybe recommend, at timeline time ``now``."""
        if live.open_rec is not None and now - live.open_rec.created_at > self.policy.expire_after:
            self.store.set_status(live.open_rec.id, "expired", now)
            live.open_rec = None
        for pending in list(live.pending_outcomes):
            if pending.responded_at is not None and now >= self.engine.outcome_due(pending.responded_at):
                self._finish_outcome(live, pending)
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
        ctx.you, ctx.others = self.engine.bandit_stats(self.store.responses(), live.learner_id)
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
        samples = [s.to_reading() for s in self.store.samples(
            learner_id=rec.learner_id, since=rec.created_at - o.before,
            until=self.engine.outcome_due(rec.responded_at))]
        outcome = self.engine.outcome(rec.rule, samples, rec.created_at, rec.responded_at)
        try:
            self.store.add_outcome(rec.id, outcome, self.clock())
        except MultiNetError:
            pass  # measured already by another session of the same learner
        live.pending_outcomes = [r for r in live.pending_outcomes if r.id != rec.id]

    # --- deletion and retention -----------------------------------------------------------

    def delete(self, learner_id: str) -> dict[str, int]:
        """Delete a learner's data completely (their live sessions are forgotten first)."""
        for live in self._lives_of(learner_id):
            with self._lock:
                self._live.pop(live.id, None)
        counts = self.store.delete_learner(learner_id)
        if counts is None:
            raise NotFound(f"no learner {learner_id!r}")
        self._revoked(learner_id, "your data was deleted; sign up again")
        return counts

    def housekeeping(self) -> int:
        """Apply the retention period and forget sessions idle for an hour."""
        now = self.clock()
        n = self.store.purge_samples(now - self.settings.retention_days * 86_400)
        if self.shared is not None:  # idle live states and old rate-limit hits
            self.shared.forget(now - 3600)
            self.shared.forget_hits(now - 3600)
        with self._lock:
            for sid, live in list(self._live.items()):
                if now - max(live.last_seen, live.row.started_at) > 3600:
                    del self._live[sid]
        return n
