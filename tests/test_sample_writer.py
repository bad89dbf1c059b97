"""Samples written behind (store/writer.py): every one stored, in order, once; reads and a
shutdown write what is queued; a deleted session's queued samples are dropped; a failing
database keeps them queued."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from test_api import INSTRUCTOR, Clock, signup

from multinet_emotion.app import Settings, create_app
from multinet_emotion.app.store import Store
from multinet_emotion.emotions import EMOTIONS, Reading

T0 = 1_700_000_000.0
HAPPY = tuple(0.9 if e == "happy" else 0.02 for e in EMOTIONS)


def store_with_session(tmp_path: Path, interval: float = 3600.0) -> tuple[Store, str, str]:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}", flush_interval=interval)
    store.migrate()
    store.ensure_class("c1", "C1", now=T0)
    learner, _ = store.create_learner("Ada", now=T0)
    return store, learner.id, store.start_session(learner.id, "c1", now=T0).id


def raw_count(tmp_path: Path) -> int:
    """Samples in the file, read by another Store (which cannot flush the first one)."""
    other = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        return other.counts()["samples"]
    finally:
        other.close()


def test_deferred_samples_are_stored_in_order_once_and_reads_see_them(tmp_path: Path) -> None:
    store, lid, sid = store_with_session(tmp_path)
    readings = [Reading(T0 + i, HAPPY if i % 3 else None, 0.8 if i % 3 else None)
                for i in range(1, 41)]
    for k in range(0, 40, 4):  # queued in several batches, as a stream would
        assert store.add_samples(sid, lid, readings[k:k + 4], defer=True) == 4
    assert store.writer.pending == 40 and raw_count(tmp_path) == 0  # not written yet
    rows = store.samples(session_id=sid)  # a read writes the queue first
    assert [r.t for r in rows] == [r.t for r in readings]
    assert [r.probs() for r in rows] == [r.probs for r in readings]
    assert rows == sorted(rows, key=lambda r: r.id)  # inserted in the order given
    assert store.writer.pending == 0 and store.flush_samples() == 0
    assert raw_count(tmp_path) == 40  # once, not twice
    store.add_samples(sid, lid, [Reading(T0 + 50, HAPPY, 0.8)], defer=True)
    store.close()  # a close writes what is queued
    assert raw_count(tmp_path) == 41


def test_the_background_thread_writes_within_the_interval(tmp_path: Path) -> None:
    store, lid, sid = store_with_session(tmp_path, interval=0.05)
    store.add_samples(sid, lid, [Reading(T0 + 1, HAPPY, 0.8)], defer=True)
    deadline = time.monotonic() + 10
    while raw_count(tmp_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert raw_count(tmp_path) == 1
    store.close()


def test_a_deleted_sessions_queued_samples_are_dropped_the_rest_kept(tmp_path: Path) -> None:
    store, lid, sid = store_with_session(tmp_path)
    other, _ = store.create_learner("Bo", now=T0)
    other_sid = store.start_session(other.id, "c1", now=T0).id
    store.add_samples(sid, lid, [Reading(T0 + 1, HAPPY, 0.8)], defer=True)
    store.add_samples(other_sid, other.id, [Reading(T0 + 1, HAPPY, 0.8)], defer=True)
    assert store.delete_learner(lid)["samples"] == 1  # what was queued is deleted too
    # one queued after the deletion (a stream that raced with it) is dropped, not stored
    store.add_samples(sid, lid, [Reading(T0 + 2, HAPPY, 0.8)], defer=True)
    store.add_samples(other_sid, other.id, [Reading(T0 + 2, HAPPY, 0.8)], defer=True)
    assert store.flush_samples() == 1 and store.writer.dropped == 1
    assert [r.learner_id for r in store.samples()] == [other.id, other.id]
    store.close()


def test_a_failing_database_keeps_the_samples_queued(tmp_path: Path, monkeypatch) -> None:
    store, lid, sid = store_with_session(tmp_path)
    store.add_samples(sid, lid, [Reading(T0 + 1, HAPPY, 0.8)], defer=True)
    real = store.writer._write

    def down(batches):  # noqa: ANN001
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(store.writer, "_write", down)
    with pytest.raises(OperationalError):
        store.flush_samples()
    store.add_samples(sid, lid, [Reading(T0 + 2, HAPPY, 0.8)], defer=True)
    assert store.writer.pending == 2
    monkeypatch.setattr(store.writer, "_write", real)
    assert store.flush_samples() == 2
    assert [r.t for r in store.samples(session_id=sid)] == [T0 + 1, T0 + 2]
    store.close()


def test_the_servers_shutdown_writes_the_queued_samples(tmp_path: Path) -> None:
    """Samples streamed over the WebSocket are queued (SQLite: one process); stopping the
    app writes them, although the flush interval is far from over."""
    clock = Clock()
    store = Store(f"sqlite:///{tmp_path / 'm.db'}", flush_interval=3600)
    app = create_app(Settings(database_url=store.safe_url, instructor_token=INSTRUCTOR),
                     analyzer_factory=None, clock=clock, store=store)
    from fastapi.testclient import TestClient
    with TestClient(app) as client:
        h, sid = signup(client)
        with client.websocket_connect("/ws/learn") as ws:
            ws.send_json({"type": "hello", "token": h["Authorization"][7:],
                          "session_id": sid})
            assert ws.receive_json()["type"] == "ready"
            for _ in range(5):  # one per sample interval: each closes the one before
                clock.t += 1
                ws.send_json({"type": "sample", "probs": dict(zip(EMOTIONS, HAPPY))})
                assert ws.receive_json()["type"] == "result"
        # (the socket's close stored the last interval's readings too)
        assert store.writer.pending == 5 and raw_count(tmp_path) == 0
    assert raw_count(tmp_path) == 5  # the lifespan's end wrote them
    store.close()
