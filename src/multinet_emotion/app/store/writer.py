"""Write-behind of emotion samples: one transaction per flush interval, not one per sample.

A learner streaming at 1 sample/s costs one INSERT and one COMMIT per sample when each is
written at once; with hundreds of learners that is most of the server's CPU. The
:class:`SampleWriter` queues the samples of every session in memory (in arrival order) and
a background thread writes all that is queued in one transaction every ``interval``
seconds (default 0.25 s). What this process reads is never behind what it was given: the
:class:`~.database.Store` flushes the queue before every read of samples, and before every
write whose learning records may read them (ending a session, a suggestion, an outcome),
and on :meth:`close` (the server's shutdown).

What may be lost: samples queued when the process is killed (at most one interval's worth;
a normal stop flushes). A sample whose session or learner was deleted while it waited is
dropped (a deletion wins). When the database fails, the queue is kept and the next flush
tries again; past ``max_rows`` queued samples the oldest are dropped, with an error logged.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from ...emotions import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Readings of one session, stored together (in this order)."""

    session_id: str
    learner_id: str
    readings: tuple[Reading, ...]


class SampleWriter:
    """Queues samples and writes them with ``write`` (one transaction for a list of
    batches); thread-safe. ``interval`` <= 0: no background thread, flushed by callers."""

    def __init__(self, write: Callable[[Sequence[Batch]], None], interval: float = 0.25,
                 max_rows: int = 200_000):
        self._write, self.interval, self.max_rows = write, interval, max_rows
        self._queue: list[Batch] = []
        self._rows = 0
        self._lock = threading.Lock()  # guards the queue
        self._flushing = threading.Lock()  # one flush at a time: rows go in queue order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # samples given up on (deleted sessions, a full queue)

    def queue(self, session_id: str, learner_id: str, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        with self._lock:
            self._queue.append(Batch(session_id, learner_id, tuple(readings)))
            self._rows += len(readings)
            if self._rows > self.max_rows:
                self._drop_oldest()
            if self._thread is None and self.interval > 0 and not self._stop.is_set():
                self._start()

    @property
    def pending(self) -> int:
        """Samples queued and not written yet."""
        return self._rows

    def flush(self) -> int:
        """Write everything queued now (waiting for a flush in progress); the count written.
        A database error is raised and the samples stay queued for the next flush."""
        if not self._queue and not self._flushing.locked():
            return 0  # nothing to do: the common case of a read
        with self._flushing:
            with self._lock:
                batches, self._queue, rows = self._queue, [], self._rows
                self._rows = 0
            if not batches:
                return 0
            try:
                self._write(batches)
            except IntegrityError:  # a session or learner deleted meanwhile: the rest
                return rows - self._write_each(batches)
            except Exception:
                with self._lock:  # keep them, in order, before what came meanwhile
                    self._queue[:0] = batches
                    self._rows += rows
                raise
            return rows

    def _write_each(self, batches: Sequence[Batch]) -> int:
        """After a failed batch: write session by session; drop (and count) the samples
        whose session or learner is gone."""
        lost = 0
        for b in batches:
            try:
                self._write([b])
            except IntegrityError:
                lost += len(b.readings)
        if lost:
            self.dropped += lost
            log.warning("dropped %d queued emotion samples of deleted sessions", lost)
        return lost

    def _drop_oldest(self) -> None:  # under self._lock
        while self._rows > self.max_rows and self._queue:
            b = self._queue.pop(0)
            self._rows -= len(b.readings)
            self.dropped += len(b.readings)
        log.error("the database has not taken emotion samples for a while: the oldest "
                  "queued ones were dropped (%d in all so far)", self.dropped)

    def _start(self) -> None:  # under self._lock
        self._thread = threading.Thread(target=self._run, name="sample-writer", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)  # an interpreter that exits without close() still flushes

        def close_at_exit() -> None:
            if (w := ref()) is not None:
                w.close()
        atexit.register(close_at_exit)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - kept queued; try again next interval
                log.error("writing %d queued emotion samples failed (%s); retrying",
                          self._rows, type(e).__name__)

    def close(self) -> None:
        """Stop the background thread and write what is queued (the server's shutdown)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()
