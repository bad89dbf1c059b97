"""The web service: API, learner WebSocket, learner page and instructor dashboard."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
