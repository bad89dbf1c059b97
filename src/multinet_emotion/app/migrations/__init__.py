"""Alembic migrations for the store; run by :meth:`multinet_emotion.app.store.Store.migrate`."""
