"""Sending the outbox to the LRS: batches, back-off with jitter, and what each answer means.

:class:`Sender` claims due statements from the :class:`~multinet_emotion.app.xapi.store.Outbox`,
POSTs them as one batch to ``{endpoint}/statements`` and marks them by the answer:

* 200/204: stored. 409 on our own id: the LRS has it already (a resend after an answer that
  never came); ids are fixed when queued, so a resend is idempotent (ralph drops a
  duplicate with the same content and answers 204).
* connection errors, timeouts, 408, 429, 5xx, and 401/403/404/405 (the LRS or its
  credentials or address are wrong, not the statement): kept queued, tried again after an
  exponential back-off with jitter (1 s doubling up to ``lrs_max_backoff``).
* other 4xx (400, 413, 422, ...): the batch is sent again one statement at a time (PUT with
  its id), so that only the statement the LRS rejects is marked ``failing``, with the
  reason; failing ones are not sent again unless an operator asks (:meth:`Outbox.requeue_failing`).

Credentials travel only in the Authorization header: never in a URL, a log line, an error
kept in the outbox or the status the dashboard reads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from .profile import XAPI_VERSION
from .store import Outbox

log = logging.getLogger(__name__)

#: Answers that say nothing against the statements: try again later.
RETRY_STATUS = {401, 403, 404, 405, 408, 425, 429}
#: The first back-off, doubled after each failure in a row.
BASE_DELAY = 1.0
#: How often the sender looks for new statements when it has nothing to send.
POLL = 1.0


class LrsClient:
    """The LRS's statements resource over HTTP (basic auth, xAPI version header)."""

    def __init__(self, endpoint: str, username: str = "", password: str = "",
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None):
        self.endpoint = endpoint.rstrip("/") + "/"
        self._secrets = [x for x in (username, password) if x]
        self._client = httpx.AsyncClient(
            base_url=self.endpoint, timeout=timeout, transport=transport,
            auth=httpx.BasicAuth(username, password) if username or password else None,
            headers={"X-Experience-API-Version": XAPI_VERSION,
                     "Content-Type": "application/json"})

    def __repr__(self) -> str:
        return f"LrsClient({self.endpoint!r})"

    async def post(self, statements: Sequence[dict[str, Any]]) -> httpx.Response:
        return await self._client.post("statements", json=list(statements))

    async def put(self, statement: dict[str, Any]) -> httpx.Response:
        return await self._client.put("statements", json=statement,
                                      params={"statementId": str(statement["id"])})

    def clean(self, text: str) -> str:
        """``text`` with the credentials blanked, should anything echo them."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def aclose(self) -> None:
        await self._client.aclose()


def describe(response: httpx.Response) -> str:
    """A short reason from an LRS answer: its status and the start of its message."""
    detail: Any = response.text
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("message") or body.get("error") or body
    except ValueError:
        pass
    detail = " ".join(str(detail).split())[:200]
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


@dataclass
class Status:
    """What the sender knows beyond the table (for the dashboard)."""

    last_error: str | None = None
    last_error_at: float | None = None
    last_sent_at: float | None = None
    failures: int = 0              # failed tries in a row
    next_try_at: float | None = None
    sent: int = 0                  # statements delivered since start
    running: bool = False


class Sender:
    """Delivers the outbox to the LRS until stopped; one per process."""

    def __init__(self, outbox: Outbox, client: LrsClient, *, batch: int = 50,
                 max_backoff: float = 300.0, timeout: float = 10.0, keep_sent: float = 30 * 86400,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.outbox, self.client = outbox, client
        self.batch, self.max_backoff, self.keep_sent = batch, max_backoff, keep_sent
        self.lease = 2 * timeout + 5  # claimed rows are not due again while being sent
        self.clock, self.rng, self.sleep = clock, rng or random.Random(), sleep
        self.status = Status()
        self._purged_at = 0.0

    def backoff(self) -> float:
        """The wait after the current run of failures: exponential, capped, with jitter
        (between half and all of it) so that many senders do not come back at once."""
        n = max(1, self.status.failures)
        delay = min(self.max_backoff, BASE_DELAY * 2 ** min(n - 1, 30))
        return delay * self.rng.uniform(0.5, 1.0)

    async def run(self) -> None:
        """Send until cancelled."""
        self.status.running = True
        try:
            while True:
                try:
                    outcome = await self.send_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a database hiccup: keep the loop alive
                    log.exception("xAPI sender: unexpected error; trying again")
                    outcome = "retry"
                if outcome == "retry":
                    await self.sleep(max(0.0, (self.status.next_try_at or 0) - self.clock()))
                elif outcome == "idle":
                    await self._purge()
                    await self.sleep(POLL)
        finally:
            self.status.running = False

    async def send_once(self) -> str:
        """Send one batch: "idle" (nothing due), "sent" (done, maybe partly failing) or
        "retry" (the LRS is unreachable or failing: back off)."""
        rows = await asyncio.to_thread(self.outbox.claim, self.clock(), self.batch, self.lease)
        if not rows:
            return "idle"
        bodies = {r.statement_id: r.body for r in rows}
        try:
            response = await self.client.post(list(bodies.values()))
        except httpx.HTTPError as e:  # refused, reset, timed out, ...
            return await self._retry(list(bodies), f"{type(e).__name__}: {e}".strip(": "))
        if response.status_code in (200, 204, 409):
            await self._sent(list(bodies))
            return "sent"
        if response.status_code in RETRY_STATUS or response.status_code >= 500:
            return await self._retry(list(bodies), describe(response))
        if len(bodies) == 1:
            await self._failing(next(iter(bodies)), describe(response))
            return "sent"
        return await self._one_by_one(bodies)

    async def _one_by_one(self, bodies: dict[str, dict[str, Any]]) -> str:
        """The LRS refused the batch: find which statements it refuses."""
        for i, (statement_id, body) in enumerate(bodies.items()):
            try:
                response = await self.client.put(body)
            except httpx.HTTPError as e:
                return await self._retry(list(bodies)[i:], f"{type(e).__name__}: {e}")
            if response.status_code in (200, 204, 409):
                await self._sent([statement_id])
            elif response.status_code in RETRY_STATUS or response.status_code >= 500:
                return await self._retry(list(bodies)[i:], describe(response))
            else:
                await self._failing(statement_id, describe(response))
        return "sent"

    async def _sent(self, ids: list[str]) -> None:
        now = self.clock()
        await asyncio.to_thread(self.outbox.mark_sent, ids, now)
        if self.status.failures:
            log.info("xAPI: the LRS at %s takes statements again", self.client.endpoint)
        self.status.failures, self.status.next_try_at = 0, None
        self.status.last_sent_at = now
        self.status.sent += len(ids)

    async def _retry(self, ids: list[str], error: str) -> str:
        error = self.client.clean(error)
        now = self.clock()
        self.status.failures += 1
        wait = self.backoff()
        self.status.last_error, self.status.last_error_at = error, now
        self.status.next_try_at = now + wait
        await asyncio.to_thread(self.outbox.retry_later, ids, error, now + wait)
        log.warning("xAPI: the LRS at %s did not take %d statements (%s); trying again in "
                    "%.1f s", self.client.endpoint, len(ids), error, wait)
        return "retry"

    async def _failing(self, statement_id: str, error: str) -> None:
        error = self.client.clean(error)
        self.status.last_error, self.status.last_error_at = error, self.clock()
        await asyncio.to_thread(self.outbox.mark_failing, statement_id, error)
        log.error("xAPI: the LRS rejected statement %s (%s); it is kept as failing",
                  statement_id, error)

    async def _purge(self) -> None:
        now = self.clock()
        if now - self._purged_at >= 3600:
            self._purged_at = now
            n = await asyncio.to_thread(self.outbox.purge_sent, now - self.keep_sent)
            if n:
                log.info("xAPI: forgot %d statements the LRS has had for a while", n)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self.status)
