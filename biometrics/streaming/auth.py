"""Who may stream audio: ACS signs each WebSocket connection with a bearer JWT (RS256, issuer
Call Automation, audience your ACS resource id), checked against Call Automation's published
keys; other platforms (and ACS through a ``transportUrl`` query string) present an API key
with the ``stream`` role. Either is checked before any audio is read."""

from __future__ import annotations

from collections.abc import Mapping

import jwt

from biometrics.errors import BiometricsError
from biometrics.statuses import Role
from biometrics.store.keys import PREFIX, KeyStore, Refusal, key_from_headers

ACS_ISSUER = "https://acscallautomation.communication.azure.com"
ACS_JWKS_URL = "https://acscallautomation.communication.azure.com/calling/keys"


class Unauthorized(BiometricsError):
    code = "unauthorized"
    status_code = 401


class SocketAuthenticator:
    """Validates ``Authorization: Bearer <JWT>``. Blocking: the first check (and
    one after a key rotation) fetches the keys, so call it from a worker thread."""

    def __init__(self, audience: str, issuer: str = ACS_ISSUER, jwks_url: str = ACS_JWKS_URL):
        self.audience = audience
        self.issuer = issuer
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    def check(self, authorization: str | None) -> dict[str, object]:
        """The token's claims, or :class:`Unauthorized` saying what is wrong."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        try:
            key = self._keys.get_signing_key_from_jwt(token.strip())
            return jwt.decode(
                token.strip(),
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise Unauthorized("signing keys unavailable") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(f"invalid token: {error}") from None


class SocketGate:
    """ACS's token or a ``stream`` key; ``keys`` None means API keys are turned off, and
    both None leaves the socket open (a development setting, warned about at start)."""

    def __init__(self, keys: KeyStore | None, acs: SocketAuthenticator | None) -> None:
        self._keys = keys
        self._acs = acs

    @property
    def open(self) -> bool:
        return self._keys is None and self._acs is None

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        """Blocking. Who streams: ``acs`` or the key id; :class:`Unauthorized` otherwise."""
        key = query.get("token") or key_from_headers(headers)
        if key is not None and key.startswith(PREFIX + "_"):
            return self._check_key(key)
        authorization = headers.get("authorization")
        if self._acs is not None and authorization:
            self._acs.check(authorization)
            return "acs"
        wanted = "ACS's signed token (Authorization: Bearer) or " if self._acs else ""
        if self._keys is None:
            raise Unauthorized(f"this socket needs {wanted}a valid credential")
        raise Unauthorized(
            f"this socket needs {wanted}an API key with the stream role (?token= or "
            "Authorization: Bearer)"
        )

    def _check_key(self, key: str) -> str:
        if self._keys is None:
            raise Unauthorized("API keys are turned off: this socket takes ACS's token only")
        found = self._keys.authenticate(key)
        if isinstance(found, Refusal):
            raise Unauthorized(found.reason)
        if not found.role.allows(Role.STREAM):
            raise Unauthorized(f"API key {found.key_id} has the role {found.role}, not stream")
        return found.key_id
