"""The tool's own RSA key pair: generated once, kept in the data directory readable by its
owner only (like the instructor token), published as a JWKS at ``/lti/jwks``.

It signs what the tool sends to platforms (Deep Linking responses) and the short-lived
tickets the tool hands its own pages after a launch. The JWK (and its ``kid``, the RFC 7638
thumbprint) is pylti1p3's, so the JWKS and the ``kid`` in signed messages always agree.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto.jwk import JWK
from pylti1p3.registration import Registration

from ...errors import MultiNetError

log = logging.getLogger(__name__)

#: The file, in the data directory, that keeps the tool's private key (mode 0600).
KEY_FILE = "lti-private-key.pem"
KEY_BITS = 2048


def key_file() -> Path:
    """$XDG_DATA_HOME/multinet-emotion/lti-private-key.pem (beside the instructor token)."""
    from ...store import data_dir
    return data_dir() / KEY_FILE


@dataclass(frozen=True)
class ToolKey:
    private_pem: str
    public_pem: str

    @property
    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK (kty, n, e, kid, alg RS256, use sig)."""
        return dict(Registration.get_jwk(self.public_pem))

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [self.jwk]}


def load_or_create(path: Path | None = None) -> tuple[ToolKey, bool]:
    """The tool's key from ``path`` (default :func:`key_file`), generated and kept there
    the first time; and whether it was generated now. A file readable by others is made
    readable by its owner only."""
    path = path or key_file()
    try:
        pem = _read(path)
        created = False
        if pem is None:
            pem, created = _save(path, JWK.generate(kty="RSA", size=KEY_BITS)
                                 .export_to_pem(private_key=True, password=None).decode())
    except OSError as e:
        raise MultiNetError(f"cannot keep the LTI key in {path} ({e.strerror}); check the "
                            "data directory's permissions") from None
    try:
        jwk = JWK.from_pem(pem.encode())
    except (ValueError, TypeError):
        raise MultiNetError(f"{path} does not hold a PEM private key; move it away to have a "
                            "new key generated (platforms then need the new JWKS, which they "
                            "fetch from /lti/jwks)") from None
    if not jwk.has_private:
        raise MultiNetError(f"{path} holds a public key only; the tool needs its private key")
    if created:
        log.info("generated the tool's LTI key pair in %s (kid %s)", path, jwk.thumbprint())
    return ToolKey(private_pem=pem, public_pem=jwk.export_to_pem().decode()), created


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return text


def _save(path: Path, pem: str) -> tuple[str, bool]:
    """Keep a new key in ``path`` (created 0600, atomically); when another process kept one
    first, that one wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails when the file exists: never replace a kept key
        except FileExistsError:
            kept = _read(path)
            if kept is not None:
                return kept, False
            os.replace(tmp, path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        return pem, True
    finally:
        tmp.unlink(missing_ok=True)
