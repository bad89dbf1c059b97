"""Per-client rate limits: a sliding window over the last minute, in process memory.

Each limit counts the requests of one key (the client's address) in the last ``window``
seconds; a request over ``per_window`` is refused with the seconds to wait until the
oldest counted one leaves the window. One process owns the counts (the service runs one
worker), so they reset when it restarts. Keys idle for a window are forgotten, and at
most ``max_keys`` are kept (the least recently seen go first), so memory stays bounded
whatever the number of clients.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import HTTPException, Request, status

log = logging.getLogger(__name__)


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


def client_key(request: Request) -> str:
    """The client's address as the server sees it (uvicorn puts a trusted proxy's
    X-Forwarded-For there)."""
    return request.client.host if request.client is not None else "unknown"


def check_limit(request: Request, name: str, what: str) -> None:
    """Count this request against the app's limit ``name`` (``app.state.limits``); over
    it, HTTP 429 with Retry-After in whole seconds and a message that says what to do."""
    limiter: RateLimiter | None = getattr(request.app.state, "limits", {}).get(name)
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


def limits_for(signup_rate: int, session_rate: int) -> dict[str, RateLimiter]:
    """The app's limits: sign-ups; sessions started; join codes tried (as sessions)."""
    return {"signup": RateLimiter(signup_rate), "session": RateLimiter(session_rate),
            "join": RateLimiter(session_rate)}
