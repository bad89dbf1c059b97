"""Atomic file writes: write to a temporary file beside the target, then rename over it;
and private files (secrets kept readable by their owner only, first writer wins)."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """Where derived files are kept between runs: ``MULTINET_CACHE``, else the user's cache."""
    return Path(os.environ.get("MULTINET_CACHE", Path.home() / ".cache" / "multinet-emotion"))


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    The temporary name keeps the suffix, so libraries that pick a format from it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_private_text(path: Path) -> str | None:
    """The text of a private file (None when there is none); a file readable by others is
    made readable by its owner only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return text


def keep_private_text(path: Path, text: str,
                      read: Callable[[Path], str | None] = read_private_text
                      ) -> tuple[str, bool]:
    """Keep ``text`` in a new file at ``path``, created 0600 and atomically (in a 0700
    folder when it makes one). When another process kept one first, that one wins: returns
    what ``read`` makes of it and False; otherwise ``text`` and True."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails when the file exists: never replace a kept secret
        except FileExistsError:
            kept = read(path)
            if kept is not None:
                return kept, False
            os.replace(tmp, path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        return text, True
    finally:
        tmp.unlink(missing_ok=True)
