"""Per-client rate limits: a sliding window over the last minute, in process memory (one
process, SQLite) or in the database that every process shares (PostgreSQL:
:class:`SharedRateLimiter`).

Each limit counts the requests of one key (the client's address) in the last ``window``
seconds; a request over ``per_window`` is refused with the seconds to wait until the
oldest counted one leaves the window. In memory, one process owns the counts, so they
reset when it restarts. Keys idle for a window are forgotten, and at
most ``max_keys`` are kept (the least recently seen go first), so memory stays bounded
whatever the number of clients.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Protocol

from fastapi import HTTPException, Request, status

from .sessions.store import SharedLive

log = logging.getLogger(__name__)


class Limiter(Protocol):
    per_window: int

    def hit(self, key: str) -> int | None: ...


class RateLimiter:
    """At most ``per_window`` hits per key in any ``window`` seconds (0: no limit)."""

    def __init__(self, per_window: int, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        if per_window < 0 or window <= 0:
            raise ValueError("per_window must be >= 0 and window > 0")
        self.per_window, self.window, self.clock = per_window, window, clock
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> int | None:
        """Count a request of ``key``; None when it is allowed, else the whole seconds to
        wait before the next one would be (at least 1). Refused requests are not counted."""
        if self.per_window == 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
                while len(self._hits) > self.max_keys:
                    self._hits.popitem(last=False)
            self._hits.move_to_end(key)
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.per_window:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            if len(self._hits) > 64:  # now and then: forget keys idle for a window
                self._forget_idle(now)
            return None

    def _forget_idle(self, now: float) -> None:
        for key in list(self._hits)[:16]:  # the least recently seen come first
            hits = self._hits[key]
            if not hits or hits[-1] <= now - self.window:
                del self._hits[key]
            else:
                break


class SharedRateLimiter:
    """The same limit counted in the database, over every process and machine together
    (the wall clock, which the machines share, not each process's monotonic one)."""

    def __init__(self, shared: SharedLive, name: str, per_window: int, window: float = 60.0,
                 clock: Callable[[], float] = time.time):
        if per_window < 0 or window <= 0:
            raise ValueError("per_window must be >= 0 and window > 0")
        self.shared, self.name, self.per_window, self.window = shared, name, per_window, window
        self.clock = clock

    def hit(self, key: str) -> int | None:
        if self.per_window == 0:
            return None
        return self.shared.hit(self.name, key, self.per_window, self.window, self.clock())


def client_key(request: Request) -> str:
    """The client's address as the server sees it (uvicorn puts a trusted proxy's
    X-Forwarded-For there)."""
    return request.client.host if request.client is not None else "unknown"


def check_limit(limits: Mapping[str, Limiter], request: Request, name: str, what: str) -> None:
    """Count this request against the limit ``name`` of ``limits`` (the app context's);
    over it, HTTP 429 with Retry-After in whole seconds and a message that says what to
    do."""
    limiter = limits.get(name)
    if limiter is None:
        return
    wait = limiter.hit(client_key(request))
    if wait is not None:
        log.warning("rate limit: %s refused for %s (%d per minute)", name, client_key(request),
                    limiter.per_window)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"too many {what} from your address (at most "
                            f"{limiter.per_window} a minute); try again in {wait} s",
                            headers={"Retry-After": str(wait)})


def limits_for(signup_rate: int, session_rate: int,
               shared: SharedLive | None = None, lti_login_rate: int = 0
               ) -> dict[str, Limiter]:
    """The app's limits: sign-ups; sessions started; join codes tried (as sessions); LTI
    logins; in the database when ``shared`` (several processes), else in this process."""
    rates = {"signup": signup_rate, "session": session_rate, "join": session_rate,
             "lti_login": lti_login_rate}
    if shared is not None:
        return {name: SharedRateLimiter(shared, name, rate) for name, rate in rates.items()}
    return {name: RateLimiter(rate) for name, rate in rates.items()}
