"""Helpers for tests that drive the HTTP API: sign-up with consent, classes and join codes.

They work with any client that has ``get``/``post`` returning responses with
``status_code`` and ``json()`` (FastAPI's TestClient, httpx.Client).
"""

from __future__ import annotations

from typing import Any


def consent_fields(client: Any) -> dict[str, Any]:
    """What a sign-up sends to say the learner agreed to the current consent text."""
    r = client.get("/api/consent")
    assert r.status_code == 200, r.text
    return {"consent": True, "consent_version": r.json()["version"]}


def sign_up(client: Any, name: str = "Ada", headers: dict[str, str] | None = None,
            **fields: Any) -> dict[str, Any]:
    """A learner who agreed to the consent text: the sign-up's answer (token, learner_id)."""
    r = client.post("/api/learners", json={"name": name, **consent_fields(client), **fields},
                    headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()


def join_code(client: Any, instructor: dict[str, str], class_id: str,
              name: str | None = None, **fields: Any) -> str:
    """The join code of class ``class_id``, created when there is none yet."""
    r = client.post("/api/classes", json={"name": name or class_id, "class_id": class_id,
                                          **fields}, headers=instructor)
    if r.status_code == 201:
        return r.json()["join_code"]
    assert r.status_code == 409, r.text
    classes = client.get("/api/classes", headers=instructor).json()
    return next(c["join_code"] for c in classes if c["class_id"] == class_id)
