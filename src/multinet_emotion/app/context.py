"""What the app's routes, WebSocket handler and middleware share: one :class:`AppContext`,
built by :func:`~.app.create_app` and kept as ``app.state.context`` (the only attribute on
``app.state``). Routes take it as a dependency (:data:`Context`); the WebSocket handler and
middleware read it with :func:`context_of`."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from fastapi import Depends
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from .analysis import AnalysisSlots, AnalyzerFactory
    from .browser import BrowserAnalysis
    from .connections import Connections
    from .lti.launch import LtiService
    from .ratelimit import Limiter
    from .service import LearningService
    from .sessions.store import SharedLive
    from .settings import Settings
    from .xapi import XapiService


@dataclass(eq=False)
class AppContext:
    """The application's parts. Frozen except the fields named in :attr:`MUTABLE` (a field
    is set once, in the constructor; assigning another field again raises
    :class:`~dataclasses.FrozenInstanceError`). The objects it holds keep their own state:
    e.g. the LTI module adds an identity resolver to ``xapi.actors`` and the tests change
    the rate limits in ``limits``."""

    MUTABLE: ClassVar[frozenset[str]] = frozenset({"analysis_slots"})

    settings: Settings
    """The configuration the app was built with (its instructor token filled in)."""
    service: LearningService
    """The learning service over the store: ingest, reports, classes (``service.store``)."""
    xapi: XapiService
    """Learning records for an LRS (an outbox in the store; sends nothing without one)."""
    lti: LtiService
    """The LTI 1.3 tool: registered platforms, launches, its key pair and records."""
    connections: Connections
    """The open learner WebSocket connections of this process, per learner and address."""
    limits: dict[str, Limiter]
    """The rate limits by name ("signup", "session", "join", "lti_login")."""
    shared: SharedLive | None
    """With PostgreSQL, the live state shared by every worker process; None with SQLite."""
    analyzer_factory: AnalyzerFactory | None
    """Makes one analyzer of camera frames per connection; None: no server-side analysis."""
    analysis_note: str
    """Why the server analyses frames or not, for the pages and the logs."""
    model_path: Path | None
    """The model file the server's analysis runs (None: analysis is off)."""
    browser_model_path: Path | None
    """The model file the learner's browser runs (None: analysis is off)."""
    browser_analysis: BrowserAnalysis | None
    """The files the learner's page needs to analyse pictures itself; None: not offered."""
    browser_note: str
    """Why in-browser analysis is offered or not."""
    analysis_mode: str
    """Where pictures are analysed: "browser", "server", "auto" or "off"."""
    analysis_slots: AnalysisSlots = field(repr=False)
    """At most ``settings.analysis_workers`` frames analysed at once. Mutable: made again
    each time the app starts (its semaphore belongs to the running event loop)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__ and name not in self.MUTABLE:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)


def context_of(conn: HTTPConnection) -> AppContext:
    """The context of the app that serves a request or a WebSocket."""
    context: AppContext = conn.app.state.context
    return context


def scope_context(app: Any) -> AppContext | None:
    """The context of an ASGI scope's ``app`` (middleware); None for an app without one."""
    return getattr(getattr(app, "state", None), "context", None)


Context = Annotated[AppContext, Depends(context_of)]
"""A route's parameter: ``ctx: Context``."""
