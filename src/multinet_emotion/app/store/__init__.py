"""Persistence for learners, sessions, emotion samples, recommendations and their outcomes.

SQLAlchemy 2 over SQLite (a file, the embedded default) or PostgreSQL (by URL). The schema is
created and upgraded by the Alembic migrations shipped in ``multinet_emotion/app/migrations``;
:meth:`Store.migrate` runs them, so a fresh database needs no manual step.

Privacy by construction: no table has a column for images. Samples hold only six smoothed
probabilities (or "no face") per time step, downsampled; :meth:`Store.purge_samples`
applies the retention period; :meth:`Store.export_learner` and :meth:`Store.delete_learner`
give a learner all their data or remove it completely. Times are UTC epoch seconds.

Two modules: :mod:`.tables` (the SQLAlchemy models, ids and row types) and :mod:`.database`
(the :class:`Store`, the only place that writes SQL). Import from here.
"""

from .classes import JOIN_ALPHABET, class_id_from_name, new_join_code, normalise_join_code
from .database import Store, data_dir, default_database_url, migrations_path
from .live import REVOKE_CHANNEL, Held, Listener, SharedLive  # live state across processes
from .lti import LtiRecords  # the LTI tables (lti_*) and their queries
from .outbox import Outbox, Recorder, StoreEvent, Transaction  # the xAPI outbox
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
           "FeedbackRow", "Held", "Learner", "LearningSession", "Listener", "LtiRecords",
           "Measured", "OutcomeRow", "REVOKE_CHANNEL",
           "OutboxRow", "Outbox", "Recorder", "RecommendationRow", "Response",
           "SharedLive", "Store", "StoreEvent", "Transaction", "class_id_from_name", "data_dir",
           "default_database_url", "hash_token",
           "migrations_path", "new_id", "new_join_code", "normalise_join_code"]
