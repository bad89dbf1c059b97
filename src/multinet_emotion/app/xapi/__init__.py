"""xAPI: learning records of each session, sent to the platform's Learning Record Store.

* :mod:`.profile`: the verbs, activity types and extensions (docs/xapi-profile.md).
* :mod:`.statements`: the statements, made with the ``tincan`` models and queued in the
  store's durable outbox in the same transaction as the write they describe.
* :mod:`.store`: the outbox's queries for the sender (:class:`~.store.Outbox`).
* :mod:`.sender`: delivery to the LRS with back-off; nothing lost, nothing sent twice.
* :mod:`.routes`: the outbox's status for the dashboard, the learner's sharing choice.

:class:`XapiService` wires them over one store (the app context's ``xapi``). With no LRS
configured (``MULTINET_LRS_URL`` unset) no statement is made or queued at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..settings import Settings
from ..store import Store
from .sender import LrsClient, Sender
from .statements import Actors, StatementRecorder
from .store import Outbox

__all__ = ["Actors", "LrsClient", "Sender", "StatementRecorder", "XapiService"]

log = logging.getLogger(__name__)


def home_page(settings: Settings) -> str:
    """The service's own URL: the learners' accounts' homePage and the activities' base."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


class XapiService:
    """The outbox's recorder and sender over one store, and what the routes read."""

    def __init__(self, settings: Settings, store: Store,
                 clock: Callable[[], float] = time.time, client: LrsClient | None = None):
        self.settings, self.store, self.clock = settings, store, clock
        self.endpoint = settings.lrs_url
        self.configured = bool(settings.lrs_url)
        self.actors = Actors(home_page(settings))
        self.recorder = StatementRecorder(home_page(settings), self.actors, clock=clock)
        self.outbox = Outbox(store.session)  # the sender's side of the store's xAPI outbox
        self.sender: Sender | None = None
        self._task: asyncio.Task | None = None
        if not self.configured:
            return
        store.recorders.append(self.recorder)
        client = client or LrsClient(settings.lrs_url, settings.lrs_username,
                                     settings.lrs_password, settings.lrs_timeout)
        self.sender = Sender(self.outbox, client, batch=settings.lrs_batch,
                             max_backoff=settings.lrs_max_backoff,
                             timeout=settings.lrs_timeout,
                             keep_sent=settings.retention_days * 86400, clock=clock)
        if not settings.public_url:
            log.warning("xAPI: MULTINET_PUBLIC_URL is not set; learners are named as "
                        "accounts on %s in the LRS", home_page(settings))

    def start(self) -> None:
        """Start sending (in the running event loop: the app's lifespan)."""
        if self.sender is not None and self._task is None:
            self._task = asyncio.create_task(self.sender.run(), name="xapi-sender")
            log.info("xAPI: sending learning records to the LRS at %s", self.endpoint)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            assert self.sender is not None
            await self.sender.client.aclose()

    def status(self) -> dict[str, Any]:
        """The outbox for the dashboard: counts per state, the oldest queued statement's
        age, the last error; no credentials."""
        if not self.configured:
            return {"configured": False}
        now = self.clock()
        stats = self.outbox.stats()
        oldest = stats.pop("oldest_queued_at")
        sender = self.sender.snapshot() if self.sender else {}
        last_error = sender.get("last_error") if sender.get("failures") else None
        last_error = last_error or stats["retry_error"] or stats["failing_error"]
        return {"configured": True, "endpoint": self.endpoint, "sending": sender.get("running"),
                "queued": stats["queued"], "sent": stats["sent"], "failing": stats["failing"],
                "oldest_queued_age": None if oldest is None else max(0.0, now - oldest),
                "last_error": last_error, "last_error_at": sender.get("last_error_at"),
                "failing_error": stats["failing_error"],
                "failures_in_a_row": sender.get("failures", 0),
                "next_try_in": None if not sender.get("next_try_at")
                else max(0.0, sender["next_try_at"] - now),
                "last_sent_at": sender.get("last_sent_at")}

    def retry_failing(self) -> int:
        """Queue the failing statements again (after the cause was fixed)."""
        return self.outbox.requeue_failing(self.clock())

    def sharing(self, learner_id: str) -> bool:
        return self.store.shares_emotions(learner_id)

    def set_sharing(self, learner_id: str, share: bool) -> bool:
        return self.store.set_share_emotions(learner_id, share)
