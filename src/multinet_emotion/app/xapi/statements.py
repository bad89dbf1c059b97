"""xAPI statements of what happens in a session, made with the ``tincan`` models
(edx-tincan-py35) and queued in the same transaction as the write they describe.

:class:`StatementRecorder` is the store's :class:`~multinet_emotion.app.store.Recorder`: for
each :class:`~multinet_emotion.app.store.StoreEvent` it builds the statements of
:mod:`.profile` and queues them through the transaction. The learner is an ``account`` on
this service (homePage: its public URL, name: the learner id; no name, no e-mail), unless an
identity resolver (:class:`Actors`) knows a better one, such as the learning platform's
user from an LTI launch. Emotion data (the per-minute shares, the rule that fired, the
measured before/after) is only sent for learners who chose to share it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tincan import Activity, ActivityDefinition, Agent, Context, Result, Score, Statement

from ...emotions import Reading, label_mix
from ..store import StoreEvent, Transaction
from . import profile as P

log = logging.getLogger(__name__)

#: Per-minute summaries cover wall-clock minutes of this many seconds.
MINUTE = 60.0
#: Namespace of the statement ids that are derived (so made once): per-minute summaries.
ID_NAMESPACE = uuid.UUID("5b0f8a52-8c1e-4a8e-9d55-3f3c1f0c2a11")

#: An identity resolver: the xAPI agent (JSON) of a learner id, or None to leave it to the
#: next resolver and finally to the service's own account.
Resolver = Callable[[str], dict[str, Any] | None]


class Actors:
    """Who a learner is in statements. ``resolvers`` are asked first, in order (the LTI
    module adds one that answers with the platform's identity of users who came through a
    launch); the default is an account on this service, named by the learner id."""

    def __init__(self, home_page: str):
        self.home_page = home_page
        self.resolvers: list[Resolver] = []

    def __call__(self, learner_id: str) -> Agent:
        for resolve in self.resolvers:
            agent = resolve(learner_id)
            if agent is not None:
                return Agent(**_snake(agent))
        return Agent(account={"homePage": self.home_page, "name": learner_id})


def _snake(agent: dict[str, Any]) -> dict[str, Any]:
    keys = {"objectType": "object_type", "mbox_sha1sum": "mbox_sha1sum"}
    return {keys.get(k, k): v for k, v in agent.items()}


def _time(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _iso(t: float) -> str:
    return _time(t).isoformat()


def registration(session_id: str) -> uuid.UUID:
    """The context registration of a session's statements (session ids are UUIDs)."""
    try:
        return uuid.UUID(hex=session_id)
    except ValueError:
        return uuid.uuid5(ID_NAMESPACE, session_id)


def summary_id(session_id: str, minute: int) -> str:
    """The fixed statement id of a session's summary of one minute (made once)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{session_id}/minute/{minute}"))


def emotion_summary(readings: Sequence[Reading]) -> dict[str, Any]:
    """Shares of the six emotions as shown (among the samples with a face and a label),
    the share of samples with a face, and how many samples there were."""
    return label_mix(readings)


class StatementRecorder:
    """Queues the statements of each store event (see :mod:`.profile`)."""

    def __init__(self, home_page: str, actors: Actors | None = None,
                 clock: Callable[[], float] = time.time):
        self.home = home_page.rstrip("/")
        self.actors = actors or Actors(self.home)
        self.clock = clock  # the outbox's bookkeeping; statements carry the event's time

    # --- the store's hook -------------------------------------------------------------------

    def __call__(self, tx: Transaction, event: StoreEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(tx, event)

    def _queue(self, tx: Transaction, learner_id: str, at: float, build: Callable[[], Statement],
               statement_id: str | None = None) -> None:
        """Build a statement and queue it. A statement that cannot be built is logged and
        left out: the learner's work is never refused for a learning record."""
        try:
            st = build()
            st.id = statement_id or str(uuid.uuid4())
            st.timestamp = _time(at)
            st.version = P.XAPI_VERSION
            body = st.as_version()
        except Exception:  # noqa: BLE001 - a bug here must not refuse the learner's work
            log.exception("could not make an xAPI statement; left out")
            return
        tx.queue(learner_id, body, self.clock())

    def _statement(self, learner_id: str, verb: str, obj: Activity, context: Context,
                   result: Result | None = None) -> Statement:
        st = Statement(actor=self.actors(learner_id), verb=P.VERBS[verb].as_dict(),
                       object=obj, context=context)
        if result is not None:
            st.result = result
        return st

    def _session_activity(self, session_id: str) -> Activity:
        return Activity(id=f"{self.home}/xapi/sessions/{session_id}", definition=ActivityDefinition(
            type=P.SESSION, name={"en-US": "Emotion-aware study session"}))

    def _context(self, session_id: str, class_id: str | None,
                 extensions: dict[str, Any] | None = None) -> Context:
        ctx = Context(registration=registration(session_id), platform=P.PLATFORM)
        if class_id:
            ctx.context_activities = {"grouping": [Activity(
                id=f"{self.home}/xapi/classes/{class_id}",
                definition=ActivityDefinition(type=P.CLASS, name={"en-US": class_id}))]}
        if extensions:
            ctx.extensions = extensions
        return ctx

    # --- sessions ---------------------------------------------------------------------------

    def _on_session_started(self, tx: Transaction, e: StoreEvent) -> None:
        row = e.row
        self._queue(tx, row.learner_id, e.at, lambda: self._statement(
            row.learner_id, "session_started", self._session_activity(row.id),
            self._context(row.id, row.class_id, {P.EXT_SOURCE: row.source})))

    def _on_session_ended(self, tx: Transaction, e: StoreEvent) -> None:
        row = e.row
        last = tx.last_sample_t(row.id)
        if last is not None:  # the last minute's summary, however short
            self._summarise(tx, row.learner_id, row.id, row.class_id,
                            [int(last // MINUTE)], e.at)
        seconds = max(0.0, (row.ended_at or e.at) - row.started_at)
        self._queue(tx, row.learner_id, e.at, lambda: self._statement(
            row.learner_id, "session_ended", self._session_activity(row.id),
            self._context(row.id, row.class_id, {P.EXT_SOURCE: row.source}),
            Result(duration=timedelta(seconds=round(seconds, 2)))))

    # --- per-minute emotion summaries (with the learner's consent only) ---------------------

    def _on_samples(self, tx: Transaction, e: StoreEvent) -> None:
        """When stored samples start a new minute, summarise each minute that ended."""
        if not e.readings or e.learner_id is None or e.session_id is None:
            return
        times = [r.t for r in e.readings]
        before = tx.last_sample_t(e.session_id, before=min(times))
        minutes = {int(t // MINUTE) for t in ([before] if before is not None else []) + times}
        ended = sorted(m for m in minutes if m < int(max(times) // MINUTE))
        if ended:
            session = tx.learning_session(e.session_id)
            self._summarise(tx, e.learner_id, e.session_id,
                            session.class_id if session else None, ended, None)

    def _summarise(self, tx: Transaction, learner_id: str, session_id: str,
                   class_id: str | None, minutes: Sequence[int], at: float | None) -> None:
        if not tx.shares_emotions(learner_id):
            return
        for m in minutes:
            sid = summary_id(session_id, m)
            if tx.queued(sid):
                continue
            start = m * MINUTE
            rows = tx.samples(session_id, start, start + MINUTE)
            if not rows:
                continue
            summary = emotion_summary([r.to_reading() for r in rows])
            end = min(start + MINUTE, at if at is not None else math.inf)

            def build(summary: dict[str, Any] = summary, start: float = start,
                      end: float = end) -> Statement:
                return self._statement(
                    learner_id, "emotion_summary", self._session_activity(session_id),
                    self._context(session_id, class_id,
                                  {P.EXT_MINUTE: {"start": _iso(start), "end": _iso(end)}}),
                    Result(extensions={P.EXT_SHARES: summary["shares"],
                                       P.EXT_FACE_SHARE: summary["face_share"],
                                       P.EXT_SAMPLES: summary["samples"]}))
            self._queue(tx, learner_id, end, build, statement_id=sid)

    # --- suggestions ------------------------------------------------------------------------

    def _item(self, rec: Any) -> Activity:
        definition = ActivityDefinition(type=P.CONTENT, name={"en-US": rec.title or rec.item_id})
        if str(rec.url).startswith(("http://", "https://")):
            definition.more_info = rec.url
        return Activity(id=f"{self.home}/xapi/items/{rec.item_id}", definition=definition)

    def _suggestion(self, tx: Transaction, rec: Any, verb: str, at: float,
                    result: Result | None = None) -> None:
        session = tx.learning_session(rec.session_id)
        extensions: dict[str, Any] = {P.EXT_SUGGESTION: rec.id, P.EXT_KIND: rec.kind}
        if tx.shares_emotions(rec.learner_id):  # the rule says what state it answered
            extensions[P.EXT_RULE] = rec.rule
        self._queue(tx, rec.learner_id, at, lambda: self._statement(
            rec.learner_id, verb, self._item(rec),
            self._context(rec.session_id, session.class_id if session else None, extensions),
            result))

    def _on_recommended(self, tx: Transaction, e: StoreEvent) -> None:
        self._suggestion(tx, e.row, "suggestion_shown", e.at)

    def _on_responded(self, tx: Transaction, e: StoreEvent) -> None:
        verb = {"accepted": "suggestion_opened", "dismissed": "suggestion_dismissed"}.get(
            e.row.status)
        if verb is not None:  # "expired": nobody did anything
            self._suggestion(tx, e.row, verb, e.at)

    def _on_rated(self, tx: Transaction, e: StoreEvent) -> None:
        rec = tx.recommendation(e.row.recommendation_id)
        if rec is not None:
            value = int(e.row.value)
            self._suggestion(tx, rec, "suggestion_rated", e.at, Result(
                response="up" if value > 0 else "down",
                score=Score(raw=value, min=-1, max=1, scaled=float(value))))

    def _on_outcome(self, tx: Transaction, e: StoreEvent) -> None:
        """Whether the accepted suggestion helped: success (the reward above 0.5, as the
        recommender counts it) and the reward as score; not measured: neither."""
        o = e.row
        rec = tx.recommendation(o.recommendation_id)
        if rec is None:
            return
        result = Result(extensions={P.EXT_SAMPLES: {"before": o.samples_before,
                                                    "after": o.samples_after}})
        if o.reward is not None:
            result.success = o.reward > 0.5
            result.score = Score(scaled=round(float(o.reward), 4))
            if tx.shares_emotions(rec.learner_id):
                result.extensions[P.EXT_OUTCOME] = {
                    "before": round(o.before, 4), "after": round(o.after, 4),
                    "delta": round(o.delta, 4)}
        self._suggestion(tx, rec, "suggestion_outcome", e.at, result)
