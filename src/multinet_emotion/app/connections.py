"""The open learner WebSocket connections of one process (:class:`Connections`): ended
when a learner's token stops working, replaced by the learner's newer one, counted per
client address; and which page origins may open one (:func:`origin_allowed`)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .service import ServiceError

#: The close code and reason when the learner's token stops working mid-connection.
REVOKED_CODE, REVOKED_REASON = 1008, "token revoked"
#: ... and when a newer connection of the same learner replaced it.
REPLACED_REASON = "replaced"
#: ... and when its session ended.
ENDED_REASON = "session ended"
REPLACED_MESSAGE = ("this connection was replaced by a newer one of yours (another tab or "
                    "device); one is open at a time")


class Connection:
    """One open learner connection, as the registry knows it."""

    def __init__(self, learner_id: str, loop: asyncio.AbstractEventLoop):
        self.learner_id, self.loop = learner_id, loop
        self.id = uuid.uuid4().hex  # names it in a replacement sent to other processes
        self.session_id: str | None = None  # its session, once the hello named one
        self.revoked: str | None = None  # why the token stopped working, once it has
        self.close_reason = REVOKED_REASON  # the close frame's reason, once revoked
        self.stop: Any = None  # cancels the connection's stream (set while it runs)

    def revoke(self, reason: str, close_reason: str = REVOKED_REASON) -> None:
        """From any thread: mark it revoked now (nothing is stored after this), and stop
        its stream on its own event loop."""
        self.revoked, self.close_reason = reason, close_reason
        try:
            self.loop.call_soon_threadsafe(self._stop)
        except RuntimeError:  # the loop is closed: the connection is gone already
            pass

    def _stop(self) -> None:
        if self.stop is not None:
            self.stop()


class TooManyConnections(ServiceError):
    status = 429


class Connections:
    """The open learner connections, per learner, so that replacing a learner's token or
    deleting the learner ends them (:attr:`IngestService.on_revoke`), and a learner's new
    connection replaces their older ones (one per learner: a second tab, or a client
    opening many, ends the earlier ones; in other processes through ``publish``). One per
    process; other processes' revocations arrive through :meth:`IngestService.revoke_here`.
    It also counts the connections of each client address, hello or not, and refuses
    more than ``per_address`` (0: no limit)."""

    def __init__(self, per_address: int = 0,
                 publish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_learner: dict[str, set[Connection]] = {}
        self._by_address: dict[str, int] = {}
        self.per_address, self.publish = per_address, publish

    def open_address(self, address: str) -> None:
        """Count a new connection of ``address``; TooManyConnections over the limit."""
        with self._lock:
            n = self._by_address.get(address, 0)
            if self.per_address and n >= self.per_address:
                raise TooManyConnections(f"too many open connections from your address (at "
                                         f"most {self.per_address}); close some and try "
                                         "again later")
            self._by_address[address] = n + 1

    def close_address(self, address: str) -> None:
        with self._lock:
            n = self._by_address.get(address, 0) - 1
            if n > 0:
                self._by_address[address] = n
            else:
                self._by_address.pop(address, None)

    def add(self, learner_id: str) -> Connection:
        """Register a learner's new connection (a revocation from now on reaches it)."""
        conn = Connection(learner_id, asyncio.get_running_loop())
        with self._lock:
            self._by_learner.setdefault(learner_id, set()).add(conn)
        return conn

    def take_over(self, conn: Connection) -> None:
        """``conn`` was accepted: the learner's earlier connections (here and, through
        ``publish``, in other processes) are told and closed (1008, "replaced")."""
        self.revoke(conn.learner_id, REPLACED_MESSAGE, keep=conn.id,
                    close_reason=REPLACED_REASON)
        if self.publish is not None:
            self.publish({"learner_id": conn.learner_id, "reason": REPLACED_MESSAGE,
                          "close_reason": REPLACED_REASON, "keep": conn.id})

    def remove(self, conn: Connection) -> None:
        with self._lock:
            conns = self._by_learner.get(conn.learner_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_learner[conn.learner_id]

    def count(self, learner_id: str) -> int:
        with self._lock:
            return len(self._by_learner.get(learner_id, ()))

    def revoke(self, learner_id: str, reason: str, keep: str | None = None,
               close_reason: str = REVOKED_REASON, session_id: str | None = None) -> None:
        """End every open connection of this learner but ``keep`` (only those of
        ``session_id`` when given; callable from any thread)."""
        with self._lock:
            conns = list(self._by_learner.get(learner_id, ()))
        for conn in conns:
            if conn.id != keep and session_id in (None, conn.session_id):
                conn.revoke(reason, close_reason)

    def session_ended(self, learner_id: str, session_id: str) -> None:
        """The session ended (over HTTP, or its class ended): close its connections."""
        self.revoke(learner_id, f"session {session_id} has ended; start a new session",
                    close_reason=ENDED_REASON, session_id=session_id)


def parse_origins(text: str) -> set[str]:
    """The allowed origins of a comma-separated list ("https://a.example, http://b:8000"),
    normalised (lower case, no trailing slash)."""
    return {o.strip().rstrip("/").lower() for o in text.split(",") if o.strip()}


def origin_allowed(origin: str | None, host: str | None, allowed: set[str]) -> bool:
    """Whether a handshake's Origin may open a learner connection: no Origin (not a
    browser) passes; else it must be in ``allowed``, or, when that is empty, be the page's
    own origin (its host and port those of the request's Host header)."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if allowed:
        return origin in allowed
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and \
        host is not None and parts.netloc == host.strip().lower() and not parts.path


