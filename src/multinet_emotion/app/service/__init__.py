"""The service layer: what the routes and the WebSocket call, split by job.

* :mod:`.ingest` (:class:`IngestService`): learners and tokens, sessions, samples and
  frames, recommendations and responses, deletion and retention; it owns the in-memory
  view of the live sessions (:mod:`.live`), shared by every process with PostgreSQL
  (:mod:`.shared_live`).
* :mod:`.classes` (:class:`ClassService`): classes the instructor creates, their join
  codes, and the refusal of codes that no class has or that expired.
* :mod:`.reports` (:class:`ReportService`): timelines, summaries, exports, the class
  overview and class timeline; it reads the store and the live view, and writes nothing.

:class:`LearningService` holds one of each over one store (the app context's ``service``); routes
take ``service.ingest`` or ``service.reports`` and never the store. Errors a caller can
cause are :class:`ServiceError` subclasses, each with its HTTP status (:mod:`.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...recommend import Recommender
from ..sessions.store import SharedLive
from ..settings import Settings
from ..store import Store
from .classes import ClassService
from .errors import Conflict, ConsentNeeded, Gone, Invalid, NotFound, ServiceError
from .ingest import IngestService
from .live import LiveSession, client_reading
from .reports import ReportService

__all__ = ["ClassService", "Conflict", "ConsentNeeded", "Gone", "IngestService", "Invalid", "LearningService",
           "LiveSession", "NotFound", "ReportService", "ServiceError", "client_reading"]


class LearningService:
    """Ingest and reports over one store, one recommender and one clock."""

    def __init__(self, store: Store, recommender: Recommender, settings: Settings,
                 clock: Callable[[], float] = time.time, shared: SharedLive | None = None):
        self.store = store  # for wiring, the CLI's start-up lines and tests; routes never
        self.settings = settings
        self.clock = clock
        self.policy = recommender.policy
        self.ingest = IngestService(store, recommender, settings, clock, shared)
        self.reports = ReportService(store, recommender, settings, self.ingest, clock)
        self.classes = ClassService(store, settings, self.ingest, clock)

    @property
    def database(self) -> str:
        """The database in use: "sqlite" or "postgresql" (for the health check)."""
        return self.store.dialect

    def housekeeping(self) -> int:
        """Apply the retention period and forget idle sessions (hourly, from the app)."""
        return self.ingest.housekeeping()
