"""Live state that every server process sees: the live view of each session, per-client
rate limits, and notifications between processes (PostgreSQL only).

With SQLite one process owns the live view and keeps it in memory. With PostgreSQL any
number of worker processes, on any number of machines, may serve the same learners, so:

* the live state of a session (the readings of the sample interval not stored yet, the
  label shown, the label's state machine, the latest reading, the open suggestion and
  cool-down markers) is a JSON document in ``live_states`` with a version number; a
  process changes it only while it holds the session's lock (a PostgreSQL advisory lock,
  :meth:`SharedLive.hold`), and re-reads what it caches when the version moved;
* rate-limit hits are rows of ``rate_hits``, counted under a per-key transaction lock;
* "close this learner's connections" travels with ``NOTIFY``/``LISTEN``
  (:meth:`SharedLive.notify`, :class:`Listener`).

Advisory locks are held on connections of a pool of their own, so a process that holds
many session locks never starves the store's pool that the work under the lock needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    create_engine,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from ...errors import MultiNetError
from ..store.database import Store, store_pool
from ..store.tables import Base, LearningSession, rowcount

log = logging.getLogger(__name__)

#: The first key of every advisory lock this module takes (the second is a hash), so they
#: never collide with another application's locks on the same database.
LOCK_SESSION, LOCK_RATE = 0x4D4E4531, 0x4D4E4532  # "MNE1", "MNE2"
#: The channel that carries "end this learner's connections" between processes.
REVOKE_CHANNEL = "multinet_revoke"


class LiveStateRow(Base):
    """The live state of one session as every process sees it (see :class:`SharedLive`)."""

    __tablename__ = "live_states"
    __table_args__ = (Index("ix_live_states_last_seen", "last_seen"),)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict] = mapped_column(JSON)
    last_seen: Mapped[float] = mapped_column(Float)  # the last sample's arrival (0: none)
    updated_at: Mapped[float] = mapped_column(Float)


class RateHit(Base):
    """One counted request of a rate limit (``name``) by one client (``key``)."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_name_key_at", "name", "key", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[float] = mapped_column(Float)


def _key32(value: str) -> int:
    """A stable signed 32-bit hash (the second key of an advisory lock)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big",
                          signed=True)


#: The statements of :meth:`SharedLive.hold` and :meth:`Held.save`, run once per sample.
_LOCK = "SELECT pg_advisory_lock(%s, %s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
_READ = "SELECT version, state FROM live_states WHERE session_id = %s"
_SAVE = ("INSERT INTO live_states (session_id, version, state, last_seen, updated_at) "
         "VALUES (%s, %s, %s::json, %s, %s) ON CONFLICT (session_id) DO UPDATE SET "
         "version = excluded.version, state = excluded.state, "
         "last_seen = excluded.last_seen, updated_at = excluded.updated_at")


@dataclass
class Held:
    """A session's live state, read while holding its lock (``version`` None: no row)."""

    session_id: str
    version: int | None
    state: dict[str, Any] | None
    conn: Connection

    def save(self, state: dict[str, Any], last_seen: float, now: float) -> int:
        """Store a new state (one version up) and return its version."""
        version = (self.version or 0) + 1
        # plain SQL (this runs once per sample): no statement to build and compile
        self.conn.exec_driver_sql(_SAVE, (self.session_id, version, json.dumps(state),
                                          last_seen, now))
        self.version, self.state = version, state
        return version


class SharedLive:
    """The live state of sessions, rate limits and notifications, shared by every process
    over one PostgreSQL database."""

    def __init__(self, store: Store, connections: int = 32):
        """``connections``: what this process may open in all (the store's engine takes
        half, ``store.database.store_pool``); the locks get the rest but one, the listener's."""
        if store.dialect != "postgresql":
            raise MultiNetError(f"live state shared between processes needs PostgreSQL, not "
                                f"{store.dialect}; with SQLite run one worker")
        self.store = store
        rest = max(2, connections - sum(store_pool(connections)) - 1)
        self._locks: Engine = create_engine(
            store.engine.url, pool_size=max(1, rest // 2), max_overflow=rest - max(1, rest // 2),
            pool_pre_ping=True, isolation_level="AUTOCOMMIT")

    def close(self) -> None:
        self._locks.dispose()

    # --- the live state of sessions ---------------------------------------------------------

    @contextmanager
    def hold(self, session_id: str) -> Iterator[Held]:
        """Hold the session's lock (waiting for another process that holds it) and read its
        live state; the lock is let go on leaving, whatever happens."""
        with self._locks.connect() as conn:
            key = (LOCK_SESSION, _key32(session_id))
            conn.exec_driver_sql(_LOCK, key)
            try:
                row = conn.exec_driver_sql(_READ, (session_id,)).first()
                yield Held(session_id, None if row is None else row[0],
                           None if row is None else row[1], conn)
            finally:
                try:
                    conn.exec_driver_sql(_UNLOCK, key)
                except Exception:  # noqa: BLE001 - a broken connection lets go of it anyway
                    conn.invalidate()

    def states(self, session_ids: list[str]) -> dict[str, tuple[dict[str, Any], float]]:
        """The stored live states (state, last seen) of these sessions, read without a lock."""
        if not session_ids:
            return {}
        with self.store.session() as s:
            rows = s.execute(select(LiveStateRow.session_id, LiveStateRow.state,
                                    LiveStateRow.last_seen)
                             .where(LiveStateRow.session_id.in_(session_ids)))
            return {sid: (state, seen) for sid, state, seen in rows}

    def live_counts(self, since: float) -> dict[str, int]:
        """Sessions not ended that had a sample at or after ``since``, per class."""
        with self.store.session() as s:
            rows = s.execute(
                select(LearningSession.class_id, func.count())
                .join(LiveStateRow, LiveStateRow.session_id == LearningSession.id)
                .where(LiveStateRow.last_seen >= since, LearningSession.ended_at.is_(None))
                .group_by(LearningSession.class_id))
            return {class_id: n for class_id, n in rows}

    def forget(self, before: float) -> int:
        """Delete the live states not changed since ``before`` (rebuilt from the stored
        samples and suggestions if their session comes back)."""
        with self.store.session() as s:
            return rowcount(s.execute(delete(LiveStateRow).where(
                LiveStateRow.updated_at < before)))

    # --- rate limits ------------------------------------------------------------------------

    def hit(self, name: str, key: str, per_window: int, window: float, now: float
            ) -> int | None:
        """Count a request of ``key`` against limit ``name`` (at most ``per_window`` in any
        ``window`` seconds, all processes together); None when allowed, else the whole
        seconds to wait (at least 1). Refused requests are not counted."""
        with self.store.session() as s:
            s.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                      {"a": LOCK_RATE, "b": _key32(f"{name}\0{key}")})
            s.execute(delete(RateHit).where(RateHit.name == name, RateHit.key == key,
                                            RateHit.at <= now - window))
            n, oldest = s.execute(select(func.count(), func.min(RateHit.at)).where(
                RateHit.name == name, RateHit.key == key)).one()
            if n >= per_window:
                return max(1, math.ceil(oldest + window - now))
            s.add(RateHit(name=name, key=key[:255], at=now))
            return None

    def forget_hits(self, before: float) -> int:
        """Delete the hits older than ``before`` (of keys that stopped asking)."""
        with self.store.session() as s:
            return rowcount(s.execute(delete(RateHit).where(RateHit.at < before)))

    # --- notifications ----------------------------------------------------------------------

    def notify(self, channel: str, payload: Mapping[str, Any]) -> None:
        """Send ``payload`` (JSON) to every process listening on ``channel``, this one too."""
        with self.store.session() as s:
            s.execute(text("SELECT pg_notify(:c, :p)"),
                      {"c": channel, "p": json.dumps(payload)})

    def listener(self, channel: str, callback: Callable[[dict[str, Any]], None]) -> Listener:
        return Listener(self.store.engine.url.set(drivername="postgresql")
                        .render_as_string(hide_password=False), channel, callback)


class Listener:
    """A thread that calls ``callback`` with each JSON payload sent on ``channel``; it
    reconnects (waiting up to 30 s between tries) when the connection is lost."""

    def __init__(self, conninfo: str, channel: str,
                 callback: Callable[[dict[str, Any]], None]):
        self.conninfo, self.channel, self.callback = conninfo, channel, callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}",
                                        daemon=True)
        self.ready = threading.Event()  # set once LISTEN is in effect

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg
        wait = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.ready.set()
                    wait = 1.0
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._deliver(note.payload)
            except psycopg.Error as e:
                self.ready.clear()
                log.warning("listening on %s failed (%s); retrying in %.0f s", self.channel,
                            type(e).__name__, wait)
                self._stop.wait(wait)
                wait = min(30.0, wait * 2)

    def _deliver(self, payload: str) -> None:
        try:
            self.callback(json.loads(payload))
        except Exception:  # noqa: BLE001 - one bad message must not stop the listener
            log.exception("handling a notification on %s failed", self.channel)
