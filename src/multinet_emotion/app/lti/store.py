"""LTI 1.3 records: registered platforms, the launch state pylti1p3 keeps between the OIDC
login and the launch (nonces, launch data), and which learner and class an LTI user and
course are.

Why the database and not a file: the operator's ``platform add`` and every server process
(one or many, SQLite or PostgreSQL) must see the same registrations, and a nonce used in
one process must be refused by every other; one transactional store does both.

Privacy: nothing about a learner is stored before they agree. ``lti_users`` rows are made
in the same transaction as the learner row (on consent) and go with it
(``ON DELETE CASCADE``); the key-value rows expire.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ...errors import MultiNetError
from ..store.database import Store
from ..store.tables import Base, Learner, hash_token, rowcount


class LtiPlatform(Base):
    """A platform (LMS) the operator registered: what its id_tokens are checked against."""

    __tablename__ = "lti_platforms"
    __table_args__ = (UniqueConstraint("issuer", "client_id", name="uq_lti_platform"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    deployment_ids: Mapped[list] = mapped_column(JSON)
    auth_login_url: Mapped[str] = mapped_column(String(1000))
    auth_token_url: Mapped[str] = mapped_column(String(1000))
    key_set_url: Mapped[str] = mapped_column(String(1000))
    # origins whose pages may frame the tool (CSP frame-ancestors)
    frame_origins: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)

    def to_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "client_id": self.client_id,
                "deployment_ids": list(self.deployment_ids),
                "auth_login_url": self.auth_login_url, "auth_token_url": self.auth_token_url,
                "key_set_url": self.key_set_url, "frame_origins": list(self.frame_origins),
                "created_at": self.created_at}


class LtiValue(Base):
    """pylti1p3's launch data storage: nonces, state parameters and launch data, each with
    an expiry time (rows past it count as absent and are purged)."""

    __tablename__ = "lti_values"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class LtiUser(Base):
    """An LTI user (issuer + sub) who agreed, and the learner they are."""

    __tablename__ = "lti_users"
    __table_args__ = (UniqueConstraint("issuer", "sub", name="uq_lti_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255))
    sub: Mapped[str] = mapped_column(String(255))
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id", ondelete="CASCADE"),
                                            index=True)
    created_at: Mapped[float] = mapped_column(Float)


class LtiContext(Base):
    """A course (issuer + context id) and the class it is."""

    __tablename__ = "lti_contexts"
    __table_args__ = (UniqueConstraint("issuer", "context_id", name="uq_lti_context"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255))
    context_id: Mapped[str] = mapped_column(String(255))
    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[float] = mapped_column(Float)


LTI_TABLES = (LtiPlatform, LtiValue, LtiUser, LtiContext)


class LtiRecords:
    """The LTI queries, over a :class:`Store`'s engine, each in its own transaction."""

    def __init__(self, store: Store):
        self.store = store

    # --- platforms -----------------------------------------------------------------------

    def add_platform(self, issuer: str, client_id: str, deployment_ids: list[str],
                     auth_login_url: str, auth_token_url: str, key_set_url: str,
                     frame_origins: list[str], now: float | None = None) -> LtiPlatform:
        row = LtiPlatform(issuer=issuer, client_id=client_id, deployment_ids=deployment_ids,
                          auth_login_url=auth_login_url, auth_token_url=auth_token_url,
                          key_set_url=key_set_url, frame_origins=frame_origins,
                          created_at=now if now is not None else time.time())
        try:
            with self.store.session() as s:
                s.add(row)
        except IntegrityError:
            raise MultiNetError(f"platform {issuer} with client id {client_id} is already "
                                "registered; remove it first to change it") from None
        return row

    def platforms(self, issuer: str | None = None) -> list[LtiPlatform]:
        q = select(LtiPlatform).order_by(LtiPlatform.issuer, LtiPlatform.client_id)
        if issuer is not None:
            q = q.where(LtiPlatform.issuer == issuer)
        with self.store.session() as s:
            return list(s.scalars(q))

    def platform(self, issuer: str, client_id: str) -> LtiPlatform | None:
        with self.store.session() as s:
            return s.scalar(select(LtiPlatform).where(LtiPlatform.issuer == issuer,
                                                      LtiPlatform.client_id == client_id))

    def remove_platform(self, issuer: str, client_id: str | None = None) -> int:
        """Remove a platform's registrations (all of its client ids when none is named)."""
        q = delete(LtiPlatform).where(LtiPlatform.issuer == issuer)
        if client_id is not None:
            q = q.where(LtiPlatform.client_id == client_id)
        with self.store.session() as s:
            return rowcount(s.execute(q)) or 0

    # --- launch state (pylti1p3's storage) -----------------------------------------------

    def set_value(self, key: str, value: Any, expires_at: float) -> None:
        with self.store.session() as s:
            row = s.get(LtiValue, key)
            if row is None:
                s.add(LtiValue(key=key, value=value, expires_at=expires_at))
            else:
                row.value, row.expires_at = value, expires_at

    def get_value(self, key: str, now: float | None = None) -> Any:
        now = now if now is not None else time.time()
        with self.store.session() as s:
            row = s.get(LtiValue, key)
            return row.value if row is not None and row.expires_at > now else None

    def take_value(self, key: str, now: float | None = None) -> bool:
        """Delete a live value; True for exactly one caller (the one whose DELETE removed
        it), however many processes try at once: a nonce is used once."""
        now = now if now is not None else time.time()
        with self.store.session() as s:
            n = rowcount(s.execute(delete(LtiValue).where(LtiValue.key == key,
                                                          LtiValue.expires_at > now)))
        return bool(n)

    def count_values(self, now: float | None = None) -> int:
        """The launch state's values that have not expired."""
        now = now if now is not None else time.time()
        with self.store.session() as s:
            return s.scalar(select(func.count()).select_from(LtiValue)
                            .where(LtiValue.expires_at > now)) or 0

    def purge_values(self, now: float | None = None) -> int:
        now = now if now is not None else time.time()
        with self.store.session() as s:
            return rowcount(s.execute(delete(LtiValue).where(LtiValue.expires_at <= now))) or 0

    # --- users and courses ---------------------------------------------------------------

    def learner_for(self, issuer: str, sub: str) -> str | None:
        with self.store.session() as s:
            return s.scalar(select(LtiUser.learner_id).where(LtiUser.issuer == issuer,
                                                             LtiUser.sub == sub))

    def identity_of(self, learner_id: str) -> tuple[str, str] | None:
        """The platform identity (issuer, sub) of a learner who came through a launch."""
        with self.store.session() as s:
            row = s.execute(select(LtiUser.issuer, LtiUser.sub).where(
                LtiUser.learner_id == learner_id)).first()
            return (row[0], row[1]) if row is not None else None

    def sign_in_learner(self, issuer: str, sub: str, name: str, consent_version: str,
                        learner_id: str, token: str, now: float | None = None
                        ) -> tuple[str, bool]:
        """The learner of an LTI user, with a new bearer token (``token``; only its hash is
        kept). The learner row and its link are made together, on consent, when there is
        none. Returns the learner id and whether it was made now."""
        now = now if now is not None else time.time()
        with self.store.session() as s:
            existing = s.scalar(select(LtiUser).where(LtiUser.issuer == issuer,
                                                      LtiUser.sub == sub))
            if existing is not None:
                learner = s.get(Learner, existing.learner_id)
                assert learner is not None  # the link goes with its learner (cascade)
                learner.token_hash = hash_token(token)
                learner.consent_at, learner.consent_version = now, consent_version
                if name:
                    learner.name = name[:100]
                return learner.id, False
            s.add(Learner(id=learner_id, name=name.strip()[:100], token_hash=hash_token(token),
                          created_at=now, consent_at=now, consent_version=consent_version))
            s.flush()
            s.add(LtiUser(issuer=issuer, sub=sub, learner_id=learner_id, created_at=now))
        return learner_id, True

    def class_for(self, issuer: str, context_id: str) -> str | None:
        with self.store.session() as s:
            return s.scalar(select(LtiContext.class_id).where(
                LtiContext.issuer == issuer, LtiContext.context_id == context_id))

    def link_context(self, issuer: str, context_id: str, class_id: str,
                     now: float | None = None) -> str:
        """Remember that a course is ``class_id`` (the class must exist); when another
        launch linked it first, that class wins and is returned."""
        try:
            with self.store.session() as s:
                s.add(LtiContext(issuer=issuer, context_id=context_id, class_id=class_id,
                                 created_at=now if now is not None else time.time()))
        except IntegrityError:
            kept = self.class_for(issuer, context_id)
            if kept is None:
                raise
            return kept
        return class_id

    def counts(self) -> dict[str, int]:
        """Rows per LTI table (for tests)."""
        with self.store.session() as s:
            return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                    for m in LTI_TABLES}
