"""The store on SQLite and (when available) a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbutil import BACKENDS, database_url
from sqlalchemy import LargeBinary, inspect

from multinet_emotion.app.store import Base, RecommendationRow, Store, new_id
from multinet_emotion.emotions import EMOTIONS, Reading
from multinet_emotion.errors import MultiNetError
from multinet_emotion.recommend import Outcome, PersonalisationConfig, bandit_stats

SAD = (0.1, 0.05, 0.05, 0.05, 0.7, 0.05)
HAPPY = (0.02, 0.02, 0.85, 0.07, 0.02, 0.02)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    with database_url(request.param, tmp_path) as url:
        s = Store(url)
        s.migrate()
        yield s
        s.close()


def test_migrations_create_the_schema_of_the_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    tables = set(inspect(store.engine).get_table_names())
    assert {"learners", "sessions", "samples", "recommendations", "outcomes", "feedback",
            "alembic_version"} <= tables


def test_no_column_can_hold_an_image() -> None:
    for table in Base.metadata.tables.values():
        for col in table.columns:
            assert not isinstance(col.type, LargeBinary), f"{table.name}.{col.name}"


def test_learners_tokens_and_sessions(store: Store) -> None:
    learner, token = store.create_learner("Ada", now=100.0)
    assert store.learner_by_token(token).id == learner.id
    assert store.learner_by_token("wrong") is None
    assert store.get_learner(learner.id).token_hash != token  # only the hash is stored
    with pytest.raises(MultiNetError, match="already exists"):
        store.create_learner("Bob", learner_id=learner.id)
    with pytest.raises(MultiNetError, match="not valid"):
        store.create_learner("Bob", learner_id="no spaces please")
    new = store.new_token(learner.id)  # the old token stops working
    assert store.learner_by_token(token) is None and store.learner_by_token(new).id == learner.id
    assert store.new_token("nobody") is None
    assert store.dialect in ("sqlite", "postgresql")
    sess = store.start_session(learner.id, "algebra-1", ["algebra"], 2, now=200.0)
    assert store.get_session(sess.id).tags == ["algebra"]
    store.end_session(sess.id, now=300.0)
    assert store.get_session(sess.id).ended_at == 300.0


def _fill(store: Store, name: str, t0: float, n: int, probs=SAD):
    learner, _ = store.create_learner(name)
    sess = store.start_session(learner.id, "c1", now=t0)
    store.add_samples(sess.id, learner.id,
                      [Reading(t0 + i, probs, 0.7, shown_label="sad") if i % 10
                       else Reading(t0 + i, None)
                       for i in range(n)])
    return learner, sess


def test_samples_round_trip_and_retention(store: Store) -> None:
    learner, sess = _fill(store, "Ada", 1000.0, 50)
    rows = store.samples(session_id=sess.id)
    assert len(rows) == 50 and rows[0].face is False and rows[1].probs() == pytest.approx(SAD)
    assert rows[1].to_dict()["label"] == "sad"
    assert [r.t for r in store.samples(learner_id=learner.id, limit=3)] == [1047.0, 1048.0,
                                                                          1049.0]
    assert store.purge_samples(before=1020.0) == 20
    assert len(store.samples(learner_id=learner.id)) == 30


def _recommend(store: Store, learner_id: str, session_id: str, kind: str, t: float,
               status: str = "accepted") -> str:
    rec_id = new_id()
    store.add_recommendation(RecommendationRow(
        id=rec_id, learner_id=learner_id, session_id=session_id, created_at=t,
        rule="persistent_negative", kind=kind, item_id="x", title="X", url="/x",
        reason="you seemed down", evidence={"shares": {"sad": 1.0}}, status="open"))
    if status != "open":
        assert store.set_status(rec_id, status, t + 5)
    return rec_id


def test_bandit_statistics_separate_you_from_others(store: Store) -> None:
    p = PersonalisationConfig(feedback_weight=1.0, dismiss_weight=0.5)
    ada, s1 = _fill(store, "Ada", 0.0, 5)
    bob, s2 = _fill(store, "Bob", 0.0, 5)
    r1 = _recommend(store, ada.id, s1.id, "break", 10)
    store.add_outcome(r1, Outcome(0.2, 0.8, 0.6, 1.0, 30, 30), now=200)
    r2 = _recommend(store, ada.id, s1.id, "break", 20)
    store.set_feedback(r2, ada.id, -1, None, now=30)
    _recommend(store, ada.id, s1.id, "light_hearted", 30, status="dismissed")
    r4 = _recommend(store, bob.id, s2.id, "break", 40)
    store.add_outcome(r4, None, now=300)  # not measured: no information
    store.set_feedback(r4, bob.id, 1, "nice", now=50)
    _recommend(store, bob.id, s2.id, "break", 50, status="open")  # open: not counted
    you, others = bandit_stats(store.responses(), ada.id, p)  # the store keeps, the engine weighs
    assert you[("persistent_negative", "break")] == (1.0, 1.0)
    assert you[("persistent_negative", "light_hearted")] == (0.0, 0.5)
    assert others == {("persistent_negative", "break"): (1.0, 0.0)}
    assert not store.set_status(r1, "dismissed", 99)  # already accepted
    with pytest.raises(MultiNetError, match="already has an outcome"):
        store.add_outcome(r1, None, now=400)
    assert [r.id for r in store.pending_outcomes(ada.id)] == [r2]


def test_export_and_complete_deletion(store: Store) -> None:
    ada, s1 = _fill(store, "Ada", 0.0, 30)
    bob, s2 = _fill(store, "Bob", 0.0, 20, HAPPY)
    r1 = _recommend(store, ada.id, s1.id, "break", 10)
    store.add_outcome(r1, Outcome(0.2, 0.8, 0.6, 1.0, 30, 30), now=200)
    store.set_feedback(r1, ada.id, 1, "helped", now=30)
    data = store.export_learner(ada.id)
    assert data["learner"]["name"] == "Ada" and "token_hash" not in str(data)
    assert len(data["sessions"]) == 1 and len(data["sessions"][0]["samples"]) == 30
    assert data["sessions"][0]["samples"][1]["probs"]["sad"] == pytest.approx(0.7)
    assert len(data["recommendations"]) == 1 and data["outcomes"][0]["reward"] == 1.0
    assert data["feedback"][0]["comment"] == "helped"
    import json
    json.dumps(data)  # JSON-ready

    before = store.counts()
    deleted = store.delete_learner(ada.id)
    assert deleted == {"feedback": 1, "outcomes": 1, "recommendations": 1, "samples": 30,
                       "sessions": 1, "statements": 0, "learners": 1}
    after = store.counts()
    assert after == {"learners": 1, "sessions": 1, "samples": 20, "recommendations": 0,
                     "outcomes": 0, "feedback": 0, "classes": 0}
    assert before["samples"] - after["samples"] == 30
    assert store.export_learner(ada.id) is None and store.delete_learner(ada.id) is None
    assert len(store.samples(learner_id=bob.id)) == 20  # others untouched


def test_class_queries(store: Store) -> None:
    ada, s1 = _fill(store, "Ada", 0.0, 30)
    assert store.class_ids()[0]["class_id"] == "c1"
    assert len(store.class_samples("c1", since=10)) == 20
    assert [x[1].name for x in store.class_sessions("c1")] == ["Ada"]
    bob, _ = _fill(store, "Bob", 0.0, 30, HAPPY)
    points = store.class_timeline("c1", since=0.0, bucket=10.0)
    assert [p["t"] for p in points] == [5.0, 15.0, 25.0]
    assert [p["learners"] for p in points] == [2, 2, 2]
    assert points[0]["face_share"] == 0.9  # samples 0, 10, 20 of each learner: no face
    assert points[1]["probs"]["sad"] == pytest.approx((0.7 + 0.02) / 2, abs=1e-4)
    assert points[1]["probs"]["happy"] == pytest.approx((0.05 + 0.85) / 2, abs=1e-4)
    assert store.class_timeline("other", since=0.0, bucket=10.0) == []


def test_bad_database_urls() -> None:
    with pytest.raises(MultiNetError, match="not valid"):
        Store("not a url")
    with pytest.raises(MultiNetError, match="unsupported database"):
        Store("mysql://u@h/db")
    s = Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(MultiNetError, match="cannot open the database"):
        s.migrate()


def test_sqlite_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from multinet_emotion.app.store import default_database_url
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    url = default_database_url()
    assert url == f"sqlite:///{tmp_path}/multinet-emotion/multinet.db"
    s = Store(url)
    s.migrate()
    assert (tmp_path / "multinet-emotion" / "multinet.db").is_file()
    s.close()
    assert EMOTIONS  # (labels are the six columns of a sample)
