"""A platform's registration as the operator gives it (``multinet-emotion platform add``),
checked when made. Standard library only: the command line builds its options from it
without loading pylti1p3 or SQLAlchemy.

A registration is what the platform shows its administrator when the tool is added:
issuer, client id, deployment id(s), the OIDC authorization (login) URL, the access token
URL and the public keyset (JWKS) URL. The origins that may frame the tool (CSP
``frame-ancestors``) default to those of the issuer and the login URL; Canvas and others
serve courses from another host than their issuer, so the operator may name them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...errors import MultiNetError
from ...options import setting

LOOPBACK_HOSTS = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(what: str, url: str) -> str:
    """An https URL (http only on loopback, for testing); the message names the field."""
    url = url.strip()
    if any(c.isspace() or c in ";,'\"" for c in url):
        raise MultiNetError(f"{what} {url!r} holds a space, quote, comma or semicolon; write "
                            "it as https://host/path")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise MultiNetError(f"{what} {url!r} is not a URL; write it as https://host/path")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise MultiNetError(f"{what} {url!r} must use https (LTI 1.3 needs TLS; plain http is "
                            "accepted on loopback only, for testing)")
    if not url.isascii():
        raise MultiNetError(f"{what} {url!r}: write an international domain name in its "
                            "ASCII (xn--) form")
    if parts.fragment:
        raise MultiNetError(f"{what} {url!r} must not have a #fragment")
    return url


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


#: An origin as a CSP source may name it: scheme, host name (letters, digits, hyphens,
#: dots) or IP address, and port; nothing else (a space or ";" would add CSP directives).
ORIGIN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?")


def check_origin(origin: str) -> str:
    if not ORIGIN.fullmatch(origin.strip().rstrip("/")):
        raise MultiNetError(f"frame origin {origin!r} is not an origin; write it as "
                            "https://host or https://host:port (a host name or IP address, "
                            "no spaces, path or other characters)")
    url = check_url("frame origin", origin.rstrip("/"))
    if origin_of(url) != url:
        raise MultiNetError(f"frame origin {origin!r} is not an origin; write it as "
                            "https://host or https://host:port, without a path")
    return url


def _check_text(what: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 255 or any(ord(c) < 32 for c in value):
        raise MultiNetError(f"{what} {value!r} must be 1 to 255 printable characters")
    return value


@dataclass(frozen=True, kw_only=True)
class PlatformSpec:
    """A registration as the operator gives it, checked when made."""

    issuer: str = setting(metavar="URL", help="the platform's issuer (platform ID), as it "
                          "shows it: https://lms.school.edu")
    client_id: str = setting(metavar="ID", help="the client ID the platform gave the tool")
    deployment_ids: list[str] = setting(
        default_factory=list, flag="--deployment-id", metavar="ID",
        help="a deployment ID the platform shows for the tool (repeat for several)")
    auth_login_url: str = setting(metavar="URL", help="the platform's OIDC authentication "
                                  "(authorization) request URL")
    auth_token_url: str = setting(metavar="URL", help="the platform's access token URL")
    key_set_url: str = setting(metavar="URL", help="the platform's public keyset (JWKS) URL")
    frame_origins: list[str] = setting(
        default_factory=list, flag="--frame-origin", metavar="ORIGIN",
        help="an origin whose pages frame the tool (repeat for several; default: those of "
             "the issuer and the login URL)")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "issuer", check_url("issuer", _check_text("issuer", self.issuer)))
        set_(self, "client_id", _check_text("client id", self.client_id))
        ids = [_check_text("deployment id", d) for d in self.deployment_ids]
        if not ids:
            raise MultiNetError("name at least one deployment id (--deployment-id, the "
                                "platform shows it when the tool is deployed)")
        set_(self, "deployment_ids", list(dict.fromkeys(ids)))
        set_(self, "auth_login_url", check_url("auth login URL", self.auth_login_url))
        set_(self, "auth_token_url", check_url("auth token URL", self.auth_token_url))
        set_(self, "key_set_url", check_url("key set URL", self.key_set_url))
        origins = [check_origin(o) for o in self.frame_origins] or \
            [origin_of(self.issuer), origin_of(self.auth_login_url)]
        set_(self, "frame_origins", list(dict.fromkeys(origins)))
