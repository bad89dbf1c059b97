"""The tool's own RSA key pair: generated once, kept in the data directory readable by its
owner only (like the instructor token), published as a JWKS at ``/lti/jwks``.

It signs what the tool sends to platforms (Deep Linking responses) and the short-lived
tickets the tool hands its own pages after a launch. The JWK (and its ``kid``, the RFC 7638
thumbprint) is pylti1p3's, so the JWKS and the ``kid`` in signed messages always agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto.jwk import JWK
from pylti1p3.registration import Registration

from ...errors import MultiNetError
from ...files import keep_private_text, read_private_text

log = logging.getLogger(__name__)

#: The file, in the data directory, that keeps the tool's private key (mode 0600).
KEY_FILE = "lti-private-key.pem"
KEY_BITS = 2048


def key_file() -> Path:
    """$XDG_DATA_HOME/multinet-emotion/lti-private-key.pem (beside the instructor token)."""
    from ..store import data_dir
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
        pem = read_private_text(path)
        created = False
        if pem is None:
            pem, created = keep_private_text(path, JWK.generate(kty="RSA", size=KEY_BITS)
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


