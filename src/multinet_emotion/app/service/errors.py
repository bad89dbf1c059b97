"""What the service refuses, with the HTTP status each maps to (the WebSocket sends the
message as an error and, after the hello, closes)."""

from __future__ import annotations

from ...errors import MultiNetError


class ServiceError(MultiNetError):
    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Gone(ServiceError):
    """It existed, and no longer works (an expired join code, an ended class)."""

    status = 410


class Invalid(ServiceError):
    status = 422


class ConsentNeeded(ServiceError):
    """The learner has not agreed to the consent text as it is now (it changed since, e.g.
    the analysis mode or the learning record store): nothing is stored until they do."""

    status = 403
