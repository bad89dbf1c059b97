"""Persistence for learners, sessions, emotion samples, recommendations and their outcomes.

SQLAlchemy 2 over SQLite (a file, the embedded default) or PostgreSQL (by URL). The schema is
created and upgraded by the Alembic migrations shipped in ``multinet_emotion/app/migrations``;
:meth:`Store.migrate` runs them, so a fresh database needs no manual step.

Privacy by construction: no table has a column for images. Samples hold only six smoothed
probabilities (or "no face") per time step, downsampled; :meth:`Store.purge_samples`
applies the retention period; :meth:`Store.export_learner` and :meth:`Store.delete_learner`
give a learner all their data or remove it completely. Times are UTC epoch seconds.

The core shared by every feature: :mod:`.tables` (the SQLAlchemy models, ids and row types),
:mod:`.database` (the engine, its sessions and migrations, and the :class:`Store`),
:mod:`.events` (the hook that tells xAPI recorders of each write in its transaction). Each
feature keeps its own tables and queries in its folder, over this core:
:class:`~multinet_emotion.app.lti.store.LtiRecords` (the ``lti_*`` tables),
:class:`~multinet_emotion.app.xapi.store.Outbox` (the sender's side of ``xapi_outbox``),
:class:`~multinet_emotion.app.sessions.store.SharedLive` (live state across processes).
"""

from .classes import JOIN_ALPHABET, class_id_from_name, new_join_code, normalise_join_code
from .database import Store, data_dir, default_database_url, migrations_path
from .events import Recorder, StoreEvent, Transaction  # what the xAPI recorders are told
from .tables import (
    CLASS_ID,
    LEARNER_ID,
    Base,
    ClassRow,
    EmotionSample,
    FeedbackRow,
    Learner,
    LearningSession,
    Measured,
    OutboxRow,
    OutcomeRow,
    RecommendationRow,
    Response,
    hash_token,
    new_id,
)

__all__ = ["CLASS_ID", "JOIN_ALPHABET", "LEARNER_ID", "Base", "ClassRow", "EmotionSample",
           "FeedbackRow", "Learner", "LearningSession",
           "Measured", "OutcomeRow",
           "OutboxRow", "Recorder", "RecommendationRow", "Response",
           "Store", "StoreEvent", "Transaction", "class_id_from_name", "data_dir",
           "default_database_url", "hash_token",
           "migrations_path", "new_id", "new_join_code", "normalise_join_code"]
