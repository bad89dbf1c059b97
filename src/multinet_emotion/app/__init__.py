"""The web service: API, learner WebSocket, learner page and instructor dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str):
    # imported on first use: the command line reads Settings to build `serve`'s options
    # without loading FastAPI and SQLAlchemy for every command
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "Settings":
        from .settings import Settings
        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
