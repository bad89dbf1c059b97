"""Alembic migrations for the store; run by :meth:`multinet_emotion.store.Store.migrate`."""
