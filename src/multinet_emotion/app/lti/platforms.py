"""Registered platforms (add, list, remove; their frame origins) and pylti1p3's tool
configuration read from them. What a registration holds and how it is checked:
:mod:`.spec`.
"""

from __future__ import annotations

import builtins
import time
from typing import Any

from pylti1p3.deployment import Deployment
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.tool_config import ToolConfAbstract

from ...errors import MultiNetError
from .keys import ToolKey
from .spec import PlatformSpec
from .store import LtiPlatform, LtiRecords


class Platforms:
    """Add, list and remove registrations (the ``platform`` command and the tests)."""

    def __init__(self, records: LtiRecords):
        self.records = records

    def add(self, spec: PlatformSpec) -> LtiPlatform:
        return self.records.add_platform(spec.issuer, spec.client_id, spec.deployment_ids,
                                         spec.auth_login_url, spec.auth_token_url,
                                         spec.key_set_url, spec.frame_origins, time.time())

    def list(self) -> list[LtiPlatform]:
        return self.records.platforms()

    def remove(self, issuer: str, client_id: str | None = None) -> int:
        n = self.records.remove_platform(issuer.strip(), client_id.strip() if client_id else None)
        if not n:
            which = f" with client id {client_id}" if client_id else ""
            raise MultiNetError(f"no platform {issuer}{which} is registered (see: "
                                "multinet-emotion platform list)")
        return n

    def frame_origins(self) -> builtins.list[str]:  # `list` here is the method above
        return sorted({o for p in self.records.platforms() for o in p.frame_origins})


class ToolConf(ToolConfAbstract[Request]):
    """pylti1p3's tool configuration, read from the registered platforms at each call (so
    a ``platform add`` in another process counts at once). Every issuer may have many
    client ids; a login that names none finds the issuer's only registration."""

    def __init__(self, records: LtiRecords, key: ToolKey):
        super().__init__()
        self.records, self.key = records, key

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def _row(self, iss: str, client_id: str | None) -> LtiPlatform | None:
        if client_id:
            return self.records.platform(iss, client_id)
        rows = self.records.platforms(iss)
        return rows[0] if len(rows) == 1 else None

    def _registration(self, row: LtiPlatform) -> Registration:
        reg = Registration()
        reg.set_issuer(row.issuer).set_client_id(row.client_id) \
            .set_auth_login_url(row.auth_login_url).set_auth_token_url(row.auth_token_url) \
            .set_key_set_url(row.key_set_url).set_tool_private_key(self.key.private_pem) \
            .set_tool_public_key(self.key.public_pem)
        return reg

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any
                                    ) -> Registration:
        row = self._row(iss, None)
        return self._registration(row) if row else None  # type: ignore[return-value]

    def find_registration_by_params(self, iss: str, client_id: str, *args: Any,
                                    **kwargs: Any) -> Registration:
        row = self._row(iss, client_id)
        return self._registration(row) if row else None  # type: ignore[return-value]

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        return self.find_deployment_by_params(iss, deployment_id, None)  # type: ignore[arg-type]

    def find_deployment_by_params(self, iss: str, deployment_id: str, client_id: str,
                                  *args: Any, **kwargs: Any) -> Deployment | None:
        row = self._row(iss, client_id)
        if row is None or deployment_id not in row.deployment_ids:
            return None
        return Deployment().set_deployment_id(deployment_id)

    def get_jwks(self, iss: str | None = None, client_id: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
        return self.key.jwks()
