"""Who may stream audio: ACS signs each WebSocket connection with a bearer JWT
(RS256, issuer Call Automation, audience your ACS resource id), to be checked
against Call Automation's published keys before any audio is trusted."""

from __future__ import annotations

import jwt

from biometrics.errors import BiometricsError

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
