"""The :class:`Store`: every query of the service, each in its own short transaction.

SQLAlchemy 2 over SQLite (a file, the embedded default) or PostgreSQL (by URL). The schema
is created and upgraded by the Alembic migrations shipped in ``multinet_emotion/app/migrations``;
:meth:`Store.migrate` runs them, so a fresh database needs no manual step. Nothing outside
this package writes SQL.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, case, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement

from ...emotions import EMOTIONS, Reading
from ...errors import MultiNetError
from .classes import ClassStore
from .events import XapiStore
from .learner_data import LearnerDataStore
from .tables import (
    LEARNER_ID,
    ClassRow,
    EmotionSample,
    FeedbackRow,
    Learner,
    LearningSession,
    Measured,
    OutcomeRow,
    RecommendationRow,
    Response,
    hash_token,
    new_id,
    rowcount,
)
from .writer import Batch, SampleWriter

log = logging.getLogger(__name__)


def data_dir() -> Path:
    """Where the service keeps its files: $XDG_DATA_HOME (or ~/.local/share)/multinet-emotion."""
    import os
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "multinet-emotion"


def default_database_url() -> str:
    """SQLite under $XDG_DATA_HOME (or ~/.local/share)/multinet-emotion/."""
    return f"sqlite:///{data_dir() / 'multinet.db'}"


def migrations_path() -> Path:
    return Path(str(resources.files("multinet_emotion") / "app" / "migrations"))


def store_pool(connections: int) -> tuple[int, int]:
    """(pool_size, max_overflow) of the store's engine when a process may open at most
    ``connections`` PostgreSQL connections: half of them; the other half are the live
    state's locks and its listener (``SharedLive``). Past them a request waits for a free
    connection (up to 30 s) instead of PostgreSQL refusing a new one ("too many clients")."""
    half = max(2, connections // 2)
    return max(1, half // 2), half - max(1, half // 2)


class Store(ClassStore, LearnerDataStore, XapiStore):
    """All database access. Thread-safe: every method opens its own short transaction.

    Classes and join codes: :class:`~.classes.ClassStore`. Samples given with ``defer``
    are written behind, ``flush_interval`` seconds at most (:class:`~.writer.SampleWriter`);
    every read of samples here writes what is queued first."""

    def __init__(self, url: str, echo: bool = False, flush_interval: float = 0.25,
                 connections: int | None = None):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise MultiNetError(f"database URL {url!r} is not valid; use sqlite:///PATH or "
                                "postgresql+psycopg://USER@HOST:PORT/DB") from None
        self.url = parsed
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
                parsed = parsed.set(database=str(Path(db).expanduser()))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":  # psycopg 3 is what we install
                parsed = parsed.set(drivername="postgresql+psycopg")
            kwargs["pool_pre_ping"] = True
            if connections is not None:  # the store's share of the process's connections
                kwargs["pool_size"], kwargs["max_overflow"] = store_pool(connections)
        else:
            raise MultiNetError(f"unsupported database {parsed.get_backend_name()!r} in "
                                "MULTINET_DATABASE_URL; use sqlite:/// or postgresql://")
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except ModuleNotFoundError as e:
            raise MultiNetError(f"the driver for {parsed.drivername} is missing ({e.name}); "
                                "install it with: pip install 'multinet-emotion[postgres]'") \
                from None
        if self.engine.dialect.name == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                if parsed.database and parsed.database != ":memory:":
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.writer = SampleWriter(self._write_samples, flush_interval)

    @property
    def dialect(self) -> str:
        """The database in use: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for logs."""
        return self.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config
        from alembic.migration import MigrationContext

        cfg = Config()
        cfg.set_main_option("script_location", str(migrations_path()))
        alembic_log = logging.getLogger("alembic")
        if alembic_log.level == logging.NOTSET:  # its step-by-step INFO lines are noise here
            alembic_log.setLevel(logging.WARNING)
        try:
            with self.engine.begin() as conn:
                before = MigrationContext.configure(conn).get_current_revision()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                after = MigrationContext.configure(conn).get_current_revision()
        except OperationalError as e:
            raise MultiNetError(f"cannot open the database {self.safe_url}: "
                                f"{str(e.orig).strip().splitlines()[0]}") from None
        if before != after:
            if before is None:
                log.info("database schema created at revision %s", after)
            else:
                log.info("database schema upgraded from revision %s to %s", before, after)

    def close(self) -> None:
        """Write the queued samples and let go of the connections."""
        self.writer.close()
        self.engine.dispose()

    def flush_samples(self) -> int:
        """Write the samples queued by ``add_samples(defer=True)`` now; their count."""
        return self.writer.flush()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    # --- learners and sessions ---------------------------------------------------------

    def create_learner(self, name: str = "", learner_id: str | None = None,
                       now: float | None = None, consent_version: str | None = None
                       ) -> tuple[Learner, str]:
        """A new learner and their bearer token (only its hash is stored); with the
        version of the consent text they agreed to (stored with the time, ``now``)."""
        learner_id = learner_id or new_id()[:16]
        if not LEARNER_ID.match(learner_id):
            raise MultiNetError(f"learner id {learner_id!r} is not valid (letters, digits, "
                                "_ . @ -; at most 64)")
        token = secrets.token_urlsafe(24)
        now = now if now is not None else time.time()
        row = Learner(id=learner_id, name=name.strip()[:100], token_hash=hash_token(token),
                      created_at=now, consent_version=consent_version,
                      consent_at=now if consent_version is not None else None)
        with self.session() as s:
            if s.get(Learner, learner_id) is not None:
                raise MultiNetError(f"learner {learner_id!r} already exists")
            s.add(row)
        return row, token

    def new_token(self, learner_id: str) -> str | None:
        """Give a learner a new bearer token (the old one stops working); None: no such
        learner."""
        token = secrets.token_urlsafe(24)
        with self.session() as s:
            n = rowcount(s.execute(update(Learner).where(Learner.id == learner_id)
                                   .values(token_hash=hash_token(token))))
        return token if n else None

    def learner_by_token(self, token: str) -> Learner | None:
        with self.session() as s:
            return s.scalar(select(Learner).where(Learner.token_hash == hash_token(token)))

    def get_learner(self, learner_id: str) -> Learner | None:
        with self.session() as s:
            return s.get(Learner, learner_id)

    def start_session(self, learner_id: str, class_id: str = "default",
                      tags: Sequence[str] = (), level: int | None = None,
                      source: str = "camera", now: float | None = None) -> LearningSession:
        row = LearningSession(id=new_id(), learner_id=learner_id, class_id=class_id,
                              tags=list(tags), level=level, source=source,
                              started_at=now if now is not None else time.time())
        with self.session() as s:
            s.add(row)
            self._emit(s, "session_started", row.started_at, row)
        return row

    def get_session(self, session_id: str) -> LearningSession | None:
        with self.session() as s:
            return s.get(LearningSession, session_id)

    def end_session(self, session_id: str, now: float | None = None) -> LearningSession | None:
        self.writer.flush()  # the session's learning record sums up its samples
        with self.session() as s:
            row = s.get(LearningSession, session_id)
            if row is not None and row.ended_at is None:
                row.ended_at = now if now is not None else time.time()
                self._emit(s, "session_ended", row.ended_at, row)
            return row

    def sessions(self, learner_id: str) -> list[LearningSession]:
        with self.session() as s:
            return list(s.scalars(select(LearningSession)
                                  .where(LearningSession.learner_id == learner_id)
                                  .order_by(LearningSession.started_at)))

    # --- samples -----------------------------------------------------------------------

    def add_samples(self, session_id: str, learner_id: str,
                    readings: Sequence[Reading], defer: bool = False) -> int:
        """Store readings (the downsampled ones), one row each; their count. ``defer``:
        queue them for the next flush (one transaction for every session's samples)."""
        if defer:
            self.writer.queue(session_id, learner_id, readings)
        elif readings:
            self._write_samples([Batch(session_id, learner_id, tuple(readings))])
        return len(readings)

    def _write_samples(self, batches: Sequence[Batch]) -> None:
        """Insert the batches' rows in one transaction (one multi-row statement)."""
        rows = [{"session_id": b.session_id, "learner_id": b.learner_id, "t": r.t,
                 "face": r.face, "confidence": r.confidence, "label": r.shown_label,
                 **dict(zip(EMOTIONS, r.probs if r.probs is not None else (None,) * len(EMOTIONS)))}
                for b in batches for r in b.readings]
        with self.session() as s:
            s.execute(insert(EmotionSample), rows)
            for b in batches:
                self._emit(s, "samples", b.readings[-1].t, None, learner_id=b.learner_id,
                           session_id=b.session_id, readings=b.readings)

    def samples(self, *, session_id: str | None = None, learner_id: str | None = None,
                since: float | None = None, until: float | None = None,
                limit: int | None = None) -> list[EmotionSample]:
        self.writer.flush()
        q = select(EmotionSample)
        if session_id is not None:
            q = q.where(EmotionSample.session_id == session_id)
        if learner_id is not None:
            q = q.where(EmotionSample.learner_id == learner_id)
        if since is not None:
            q = q.where(EmotionSample.t >= since)
        if until is not None:
            q = q.where(EmotionSample.t <= until)
        if limit is not None:  # the newest `limit`, returned oldest first
            q = q.order_by(EmotionSample.t.desc(), EmotionSample.id.desc()).limit(limit)
            with self.session() as s:
                return list(reversed(list(s.scalars(q))))
        with self.session() as s:
            return list(s.scalars(q.order_by(EmotionSample.t, EmotionSample.id)))

    def label_mix(self, session_id: str, since: float | None = None) -> dict[str, Any]:
        """What a session's stored samples (since ``since``) showed, counted by the database:
        :func:`~multinet_emotion.emotions.label_mix` of them, without reading every row."""
        self.writer.flush()
        q = (select(EmotionSample.face, EmotionSample.label, func.count())
             .where(EmotionSample.session_id == session_id))
        if since is not None:
            q = q.where(EmotionSample.t >= since)
        counts = {e: 0 for e in EMOTIONS}
        total = faces = 0
        with self.session() as s:
            for face, label, n in s.execute(q.group_by(EmotionSample.face, EmotionSample.label)):
                total += n
                faces += n if face else 0
                if face and label in counts:
                    counts[label] += n
        labelled = sum(counts.values())
        return {"shares": {e: round(c / labelled, 4) if labelled else 0.0
                           for e, c in counts.items()},
                "face_share": round(faces / total, 4) if total else 0.0, "samples": total}

    def purge_samples(self, before: float) -> int:
        """Delete samples older than ``before`` (the retention period); returns the count."""
        self.writer.flush()
        with self.session() as s:
            n = rowcount(s.execute(delete(EmotionSample).where(EmotionSample.t < before)))
        if n:
            log.info("retention: deleted %d emotion samples older than %s", n,
                     time.strftime("%Y-%m-%d %H:%M", time.gmtime(before)))
        return n or 0

    # --- recommendations, outcomes, feedback --------------------------------------------

    def add_recommendation(self, row: RecommendationRow) -> RecommendationRow:
        self.writer.flush()  # its learning record may read the samples before it
        with self.session() as s:
            s.add(row)
            self._emit(s, "recommended", row.created_at, row)
        return row

    def get_recommendation(self, rec_id: str) -> RecommendationRow | None:
        with self.session() as s:
            return s.get(RecommendationRow, rec_id)

    def recommendations(self, *, learner_id: str | None = None, session_id: str | None = None,
                        status: str | None = None) -> list[RecommendationRow]:
        q = select(RecommendationRow)
        if learner_id is not None:
            q = q.where(RecommendationRow.learner_id == learner_id)
        if session_id is not None:
            q = q.where(RecommendationRow.session_id == session_id)
        if status is not None:
            q = q.where(RecommendationRow.status == status)
        with self.session() as s:
            return list(s.scalars(q.order_by(RecommendationRow.created_at)))

    def set_status(self, rec_id: str, status: str, now: float,
                   only_if: str | None = "open") -> bool:
        """Change a recommendation's status; False when it was not in state ``only_if``."""
        self.writer.flush()  # the learning records of answers and outcomes read samples
        q = update(RecommendationRow).where(RecommendationRow.id == rec_id)
        if only_if is not None:
            q = q.where(RecommendationRow.status == only_if)
        with self.session() as s:
            n = rowcount(s.execute(q.values(status=status, responded_at=now)))
            if n:
                self._emit(s, "responded", now, s.get(RecommendationRow, rec_id))
        return bool(n)

    def add_outcome(self, rec_id: str, outcome: Measured | None, now: float) -> OutcomeRow:
        """Store the measured outcome of a recommendation (None: it could not be measured)."""
        row = OutcomeRow(recommendation_id=rec_id, computed_at=now)
        if outcome is not None:
            row.before, row.after, row.delta = outcome.before, outcome.after, outcome.delta
            row.reward = outcome.reward
            row.samples_before, row.samples_after = outcome.samples_before, outcome.samples_after
        self.writer.flush()
        try:
            with self.session() as s:
                if s.scalar(select(OutcomeRow).where(OutcomeRow.recommendation_id == rec_id)):
                    raise MultiNetError(f"recommendation {rec_id} already has an outcome")
                s.add(row)
                self._emit(s, "outcome", now, row)
        except IntegrityError:  # stored at the same moment by another session of the learner
            raise MultiNetError(f"recommendation {rec_id} already has an outcome") from None
        return row

    def outcome(self, rec_id: str) -> OutcomeRow | None:
        with self.session() as s:
            return s.scalar(select(OutcomeRow).where(OutcomeRow.recommendation_id == rec_id))

    def pending_outcomes(self, learner_id: str) -> list[RecommendationRow]:
        """Accepted recommendations of a learner whose outcome is not computed yet."""
        with self.session() as s:
            q = (select(RecommendationRow)
                 .outerjoin(OutcomeRow, OutcomeRow.recommendation_id == RecommendationRow.id)
                 .where(RecommendationRow.learner_id == learner_id,
                        RecommendationRow.status == "accepted", OutcomeRow.id.is_(None)))
            return list(s.scalars(q))

    def set_feedback(self, rec_id: str, learner_id: str, value: int, comment: str | None,
                     now: float) -> FeedbackRow:
        with self.session() as s:
            row = s.scalar(select(FeedbackRow).where(FeedbackRow.recommendation_id == rec_id))
            if row is None:
                row = FeedbackRow(recommendation_id=rec_id, learner_id=learner_id)
                s.add(row)
            row.value, row.comment, row.created_at = value, comment, now
            self._emit(s, "rated", now, row)
        return row

    def responses(self) -> list[Response]:
        """Every recommendation a learner accepted or dismissed, with its measured reward and
        feedback (None where there is none). What they are worth is the recommender's
        business (``recommend.bandit_stats``)."""
        q = (select(RecommendationRow.learner_id, RecommendationRow.rule,
                    RecommendationRow.kind, RecommendationRow.status, OutcomeRow.reward,
                    FeedbackRow.value)
             .outerjoin(OutcomeRow, OutcomeRow.recommendation_id == RecommendationRow.id)
             .outerjoin(FeedbackRow, FeedbackRow.recommendation_id == RecommendationRow.id)
             .where(RecommendationRow.status.in_(("accepted", "dismissed"))))
        with self.session() as s:
            return [Response(*row) for row in s.execute(q)]

    # --- summaries and class aggregates --------------------------------------------------

    def class_ids(self) -> list[dict[str, Any]]:
        with self.session() as s:
            q = (select(LearningSession.class_id,
                        func.count(func.distinct(LearningSession.learner_id)),
                        func.max(LearningSession.started_at))
                 .group_by(LearningSession.class_id).order_by(LearningSession.class_id))
            return [{"class_id": c, "learners": n, "last_started": t} for c, n, t in s.execute(q)]

    def class_sessions(self, class_id: str, since: float | None = None
                       ) -> list[tuple[LearningSession, Learner]]:
        q = (select(LearningSession, Learner)
             .join(Learner, Learner.id == LearningSession.learner_id)
             .where(LearningSession.class_id == class_id))
        if since is not None:
            q = q.where((LearningSession.ended_at.is_(None))
                        | (LearningSession.ended_at >= since))
        with self.session() as s:
            return [(a, b) for a, b in s.execute(q.order_by(LearningSession.started_at))]

    def class_samples(self, class_id: str, since: float) -> list[EmotionSample]:
        self.writer.flush()
        q = (select(EmotionSample)
             .join(LearningSession, LearningSession.id == EmotionSample.session_id)
             .where(LearningSession.class_id == class_id, EmotionSample.t >= since)
             .order_by(EmotionSample.t))
        with self.session() as s:
            return list(s.scalars(q))

    def class_timeline(self, class_id: str, since: float, bucket: float
                       ) -> list[dict[str, Any]]:
        """Per time bucket since ``since``: the shares of the labels shown over the class's
        face samples (``shares``), the mean probabilities (``probs``), the share of samples
        with a face and how many learners sent samples. Aggregated by the database, so a
        dashboard can poll it often."""
        self.writer.flush()
        offset = (EmotionSample.t - since) / bucket
        if self.engine.dialect.name == "sqlite":  # t >= since: truncation is floor
            b: ColumnElement[Any] = func.cast(offset, Integer)
        else:
            b = func.floor(offset)
        b = b.label("b")
        shown = [func.sum(case((EmotionSample.label == e, 1), else_=0)) for e in EMOTIONS]
        q = (select(b, func.count(), func.sum(func.cast(EmotionSample.face, Integer)),
                    func.count(func.distinct(EmotionSample.learner_id)), *shown,
                    *(func.avg(getattr(EmotionSample, e)) for e in EMOTIONS))
             .join(LearningSession, LearningSession.id == EmotionSample.session_id)
             .where(LearningSession.class_id == class_id, EmotionSample.t >= since)
             .group_by(b).order_by(b))
        out = []
        with self.session() as s:
            for row in s.execute(q):
                index, total, faces, learners, *rest = row
                counts = [int(c or 0) for c in rest[:len(EMOTIONS)]]
                means = rest[len(EMOTIONS):]
                faces = int(faces or 0)
                labelled = sum(counts)
                out.append({"t": since + (int(index) + 0.5) * bucket, "learners": learners,
                            "face_share": round(faces / total, 3) if total else 0.0,
                            "shares": {e: round(c / labelled, 4) for e, c in
                                       zip(EMOTIONS, counts)} if labelled else None,
                            "probs": {e: round(float(m), 4) for e, m in zip(EMOTIONS, means)}
                            if faces else None})
        return out

    def class_recommendations(self, class_id: str) -> list[tuple[RecommendationRow,
                                                                  OutcomeRow | None,
                                                                  FeedbackRow | None]]:
        q = (select(RecommendationRow, OutcomeRow, FeedbackRow)
             .join(LearningSession, LearningSession.id == RecommendationRow.session_id)
             .outerjoin(OutcomeRow, OutcomeRow.recommendation_id == RecommendationRow.id)
             .outerjoin(FeedbackRow, FeedbackRow.recommendation_id == RecommendationRow.id)
             .where(LearningSession.class_id == class_id))
        with self.session() as s:
            return [(r, o, f) for r, o, f in s.execute(q)]

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests and the health endpoint)."""
        self.writer.flush()
        with self.session() as s:
            return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                    for m in (Learner, LearningSession, EmotionSample, RecommendationRow,
                              OutcomeRow, FeedbackRow, ClassRow)}
