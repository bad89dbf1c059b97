"""The live view of sessions when several processes serve them (PostgreSQL).

Each process keeps its :class:`~.live.LiveSession` objects as a cache; what counts is the
session's live state in the database (:class:`~multinet_emotion.app.store.SharedLive`). Every
change to a session happens inside :meth:`LiveSync.guard`: it takes the session's lock
(in this process, then across processes), re-reads the session when another process
changed it since (its version moved), and stores the state again when it changed. With
SQLite (``shared`` None) the guard is the session's in-process lock and nothing else.

The state document holds what cannot be rebuilt from stored rows: the readings of the
sample interval not stored yet, the label's state machine, the latest reading, when the
last sample came. The open suggestion, the cool-downs and the outcomes to measure are
rebuilt from the stored suggestions; their ids are in the document too, so that answering a
suggestion in one process moves the version and the others re-read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ...emotions import Reading
from ..sessions.store import SharedLive
from ..store import RecommendationRow, Store
from .live import LiveSession

log = logging.getLogger(__name__)


def reading_json(r: Reading | None) -> list[Any] | None:
    """What the live state keeps of a reading: t, probabilities, confidence, shown label."""
    if r is None:
        return None
    return [r.t, None if r.probs is None else list(r.probs), r.confidence, r.shown_label]


def reading_of(data: list[Any] | None) -> Reading | None:
    if data is None:
        return None
    t, probs, confidence, label = data
    return Reading(t, None if probs is None else tuple(probs), confidence, shown_label=label)


def snapshot(live: LiveSession) -> dict[str, Any]:
    """The session's live state as stored (JSON)."""
    return {"interval": live.interval, "pending": [reading_json(r) for r in live.pending],
            "last_raw_t": live.last_raw_t, "current": reading_json(live.current),
            "main_track": live.main_track, "labeler": live.labeler.state(),
            "last_seen": live.last_seen, "ended": live.ended,
            "open_rec": None if live.open_rec is None else live.open_rec.id,
            "pending_outcomes": sorted(r.id for r in live.pending_outcomes),
            "last_recommended_at": live.last_recommended_at}


def restore(live: LiveSession, state: dict[str, Any]) -> None:
    """Take the stored live state into the cached session (the parts rebuilt from stored
    rows, :meth:`IngestService._fill`, are not in it)."""
    live.interval = state["interval"]
    live.pending = [r for r in (reading_of(x) for x in state["pending"]) if r is not None]
    live.last_raw_t = state["last_raw_t"]
    live.current = reading_of(state["current"])
    live.main_track = state["main_track"]
    if len(state["labeler"]) == 4:  # (a state stored by an older version: start afresh)
        live.labeler.restore(state["labeler"])
    else:
        live.labeler.reset()
    live.last_seen = state["last_seen"]
    live.ended = live.ended or bool(state["ended"])


@dataclass
class LiveView:
    """What the dashboard shows of a session in view: its recent stored readings, the
    latest reading, whether it is live, and its open suggestion."""

    timeline: list[Reading]
    current: Reading | None
    live: bool
    open_rec: RecommendationRow | None


class LiveSync:
    """Keeps this process's cached sessions in step with the shared live state."""

    def __init__(self, shared: SharedLive | None,
                 refill: Callable[[LiveSession, dict[str, Any] | None], None],
                 clock: Callable[[], float]):
        self.shared, self.refill, self.clock = shared, refill, clock

    @contextmanager
    def guard(self, live: LiveSession) -> Iterator[None]:
        """Read and change ``live`` inside this block only (re-entrant in one thread)."""
        with live.lock:
            if self.shared is None or live.held:
                yield
                return
            with self.shared.hold(live.id) as held:
                if held.version is None or held.version != live.version:
                    self.refill(live, held.state)  # another process changed it (or new here)
                    live.version = held.version
                live.held = True
                try:
                    yield
                finally:
                    live.held = False
                    state = snapshot(live)
                    if state != held.state:
                        try:
                            live.version = held.save(state, live.last_seen, self.clock())
                        except Exception:
                            live.version = None  # re-read next time: the cache may be ahead
                            raise

    def view(self, store: Store, live: LiveSession | None, session_id: str, now: float,
             horizon: float, live_seconds: float) -> LiveView | None:
        """The dashboard's view of a session in view (None when it is not): from the
        cached session in one process, from the shared state with several."""
        if self.shared is None:
            if live is None:
                return None
            with live.lock:
                return LiveView(list(live.timeline), live.current,
                                live.is_live(now, live_seconds), live.open_rec)
        found = self.shared.states([session_id]).get(session_id)
        if found is None:
            return None
        state, last_seen = found
        timeline = [s.to_reading() for s in store.samples(session_id=session_id,
                                                          since=now - horizon)]
        rec = None if state["open_rec"] is None else store.get_recommendation(state["open_rec"])
        return LiveView(timeline, reading_of(state["current"]),
                        not state["ended"] and now - last_seen <= live_seconds,
                        rec if rec is not None and rec.status == "open" else None)
