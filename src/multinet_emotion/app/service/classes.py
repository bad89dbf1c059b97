"""Classes: created by the instructor, joined by learners with the class's join code.

A learner never names a class by its id: they type the join code their teacher gave them,
and a code that no class has, or that expired, or whose class has ended, is refused with a
message that tells them what to do (nothing is stored). The instructor's class list is
the ``classes`` table, so invented codes cannot grow it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ...errors import MultiNetError
from ..settings import Settings
from ..store import ClassRow, Store, normalise_join_code
from .errors import Conflict, Gone, NotFound, ServiceError
from .ingest import IngestService

log = logging.getLogger(__name__)


def utc_label(t: float) -> str:
    """A time as people read it: "2026-01-10 14:00 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


class ClassService:
    def __init__(self, store: Store, settings: Settings, ingest: IngestService,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.settings = settings
        self.ingest = ingest  # the live view: how many learners are live per class
        self.clock = clock

    def _expiry(self, expires_in_days: float | None) -> float | None:
        return None if expires_in_days is None else self.clock() + expires_in_days * 86_400

    def create(self, name: str, class_id: str | None = None,
               expires_in_days: float | None = None) -> ClassRow:
        try:
            row = self.store.create_class(name, class_id, self._expiry(expires_in_days),
                                          now=self.clock())
        except MultiNetError as e:
            raise Conflict(str(e)) from None
        log.info("class %s created", row.id)
        return row

    def rotate(self, class_id: str, expires_in_days: float | None = None) -> ClassRow:
        """A new join code for the class; the old one stops working at once."""
        if (row := self.store.get_class(class_id)) is not None and row.ended_at is not None:
            raise Conflict(f"class {class_id!r} has ended; create a new class instead")
        row = self.store.rotate_code(class_id, self._expiry(expires_in_days))
        if row is None:
            raise NotFound(f"no class {class_id!r}")
        log.info("class %s has a new join code", class_id)
        return row

    def end(self, class_id: str) -> ClassRow:
        """End a class: its code stops working, its open sessions end (their connections
        close); its data stays listed."""
        row = self.store.end_class(class_id, now=self.clock())
        if row is None:
            raise NotFound(f"no class {class_id!r}")
        for session, _learner in self.store.class_sessions(class_id, since=self.clock()):
            if session.ended_at is None:
                try:
                    self.ingest.end_session(session.learner_id, session.id)
                except ServiceError:  # ended or deleted meanwhile
                    pass
        return row

    def join(self, code: str) -> ClassRow:
        """The class a learner joins with ``code``; refused, in words a learner
        understands, when no class has that code or it no longer works."""
        typed = code.strip()
        row = self.store.class_by_code(typed) if normalise_join_code(typed) else None
        if row is None:
            shown = typed[:24] or "(empty)"
            raise NotFound(f"No class has the code {shown}: check it, or ask your teacher "
                           "for the current code")
        if row.ended_at is not None:
            raise Gone(f"The class {row.name} has ended (on {utc_label(row.ended_at)}): ask "
                       "your teacher which class to join now")
        if row.code_expires_at is not None and row.code_expires_at <= self.clock():
            raise Gone(f"This code expired on {utc_label(row.code_expires_at)}: ask your "
                       "teacher for the current code")
        return row

    def list(self) -> list[dict[str, Any]]:
        """Every class with its code, learners, live learners and last session start."""
        activity = self.store.class_activity()
        now = self.clock()
        live = self.ingest.live_counts()  # of every process
        out = []
        for row in self.store.classes():
            seen = activity.get(row.id, {})
            expired = row.code_expires_at is not None and row.code_expires_at <= now
            out.append(row.to_dict() | {"code_expired": expired,
                                        "learners": seen.get("learners", 0),
                                        "last_started": seen.get("last_started"),
                                        "live": live.get(row.id, 0)})
        return out

    def entry(self, row: ClassRow) -> dict[str, Any]:
        """One class as :meth:`list` gives it."""
        return next((c for c in self.list() if c["class_id"] == row.id), row.to_dict())
