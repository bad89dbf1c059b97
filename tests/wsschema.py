"""Checks of learner WebSocket messages against the JSON Schema the server publishes
(``GET /api/ws-schema``, made by ``multinet_emotion.app.messages.json_schema``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest


def check_messages(schema: dict[str, Any], sent: Iterable[Any] = (),
                   received: Iterable[Any] = ()) -> None:
    """Validate each text message the page ``sent`` against ``$defs/ClientMessage`` and each
    one it ``received`` against ``$defs/ServerMessage`` (JSON text or parsed; binary frames
    are skipped). Fails with the message and what is wrong with it."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    for direction, messages in (("ClientMessage", sent), ("ServerMessage", received)):
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"#/$defs/{direction}", "$defs": schema["$defs"]})
        for m in messages:
            if isinstance(m, bytes | bytearray):
                continue
            data = json.loads(m) if isinstance(m, str) else m
            error = jsonschema.exceptions.best_match(validator.iter_errors(data))
            assert error is None, f"{direction} {data}: {error.message}"


def is_valid(schema: dict[str, Any], direction: str, message: Any) -> bool:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{direction}", "$defs": schema["$defs"]})
    return validator.is_valid(message)
