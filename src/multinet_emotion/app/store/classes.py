"""Classes and their join codes: the part of the :class:`~.database.Store` that keeps them.

An instructor creates a class; learners join it with its join code: 8 characters from an
alphabet without look-alikes (no 0/O, 1/I/L), typed in any case, with or without spaces
or dashes. A code may expire, and can be replaced ("rotated"); the class keeps its id, so
its sessions and data stay where they were.
"""

from __future__ import annotations

import re
import secrets
import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...errors import MultiNetError
from .tables import CLASS_ID, ClassRow, LearningSession

#: The characters of a join code: upper-case letters and digits that cannot be mistaken
#: for one another when read aloud or copied from a board.
JOIN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 8
_SEPARATORS = re.compile(r"[\s\-_.]+")


def new_join_code() -> str:
    """A random join code (8 characters: about 40 bits)."""
    return "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def normalise_join_code(text: str) -> str:
    """A code as typed ("abcd-efgh ") in the form it is stored ("ABCDEFGH")."""
    return _SEPARATORS.sub("", text).upper()


def class_id_from_name(name: str) -> str:
    """An id for a class named ``name`` ("Algebra 1 (B)" -> "algebra-1-b")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:56].strip("-")
    return slug or "class"


class ClassStore:
    """Queries over the ``classes`` table (mixed into :class:`~.database.Store`)."""

    def session(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def create_class(self, name: str, class_id: str | None = None,
                     code_expires_at: float | None = None,
                     now: float | None = None) -> ClassRow:
        """A new class with a fresh join code. Without ``class_id`` one is made from the
        name (with -2, -3... when taken); a given id that is taken is an error."""
        now = time.time() if now is None else now
        name = name.strip()[:100]
        if class_id is not None and not CLASS_ID.match(class_id):
            raise MultiNetError(f"class id {class_id!r} is not valid (letters, digits, _ . -; "
                                "at most 64)")
        base = class_id or class_id_from_name(name)
        for attempt in range(1, 50):
            cid = base if attempt == 1 else f"{base}-{attempt}"
            with self.session() as s:
                if s.get(ClassRow, cid) is not None:
                    if class_id is not None:
                        raise MultiNetError(f"a class with the id {class_id!r} exists already")
                    continue
            row = ClassRow(id=cid, name=name or cid, join_code=self._free_code(),
                           code_expires_at=code_expires_at, created_at=now)
            try:
                with self.session() as s:
                    s.add(row)
                return row
            except IntegrityError:  # made at the same moment by another request: next id
                if class_id is not None:
                    raise MultiNetError(f"a class with the id {class_id!r} exists already") \
                        from None
        raise MultiNetError(f"too many classes are named like {name!r}; give a class_id")

    def ensure_class(self, class_id: str, name: str = "", now: float | None = None
                     ) -> ClassRow:
        """The class ``class_id``, created (with a fresh code) when there is none: for
        platforms that name their own courses (an LMS context)."""
        row = self.get_class(class_id)
        if row is not None:
            return row
        try:
            return self.create_class(name or class_id, class_id, now=now)
        except MultiNetError:  # created meanwhile
            row = self.get_class(class_id)
            if row is None:
                raise
            return row

    def _free_code(self) -> str:
        with self.session() as s:
            for _ in range(20):
                code = new_join_code()
                if s.scalar(select(ClassRow.id).where(ClassRow.join_code == code)) is None:
                    return code
        raise MultiNetError("could not find a free join code; try again")

    def get_class(self, class_id: str) -> ClassRow | None:
        with self.session() as s:
            return s.get(ClassRow, class_id)

    def class_by_code(self, code: str) -> ClassRow | None:
        """The class whose current join code is ``code`` (as typed; see
        :func:`normalise_join_code`), expired or not."""
        code = normalise_join_code(code)
        if not code:
            return None
        with self.session() as s:
            return s.scalar(select(ClassRow).where(ClassRow.join_code == code))

    def rotate_code(self, class_id: str, code_expires_at: float | None = None
                    ) -> ClassRow | None:
        """Give a class a new join code (the old one stops working); None: no such class."""
        for _ in range(5):
            code = self._free_code()
            try:
                with self.session() as s:
                    row = s.get(ClassRow, class_id)
                    if row is None:
                        return None
                    row.join_code, row.code_expires_at = code, code_expires_at
                return row
            except IntegrityError:  # the same code taken meanwhile: draw again
                continue
        raise MultiNetError("could not find a free join code; try again")

    def end_class(self, class_id: str, now: float | None = None) -> ClassRow | None:
        """End a class: its code stops working; its data stays. None: no such class."""
        with self.session() as s:
            row = s.get(ClassRow, class_id)
            if row is not None and row.ended_at is None:
                row.ended_at = time.time() if now is None else now
            return row

    def classes(self) -> list[ClassRow]:
        with self.session() as s:
            return list(s.scalars(select(ClassRow).order_by(ClassRow.created_at, ClassRow.id)))

    def class_activity(self) -> dict[str, dict[str, Any]]:
        """Per class id named by sessions: learners and when the last session started."""
        with self.session() as s:
            q = (select(LearningSession.class_id,
                        func.count(func.distinct(LearningSession.learner_id)),
                        func.max(LearningSession.started_at))
                 .group_by(LearningSession.class_id))
            return {c: {"learners": n, "last_started": t} for c, n, t in s.execute(q)}
