"""Call tokens: a short-lived credential bound to one call, so that whoever holds it (an
agent's desktop, a media gateway) can act on that call and no other.

A token reads ``bmc.<payload>.<mac>``: the payload is base64url (unpadded) of the JSON
``{"call", "role", "iat", "exp", "by"}`` (``by``: the id of the API key that minted it),
the MAC base64url of an HMAC-SHA256 over ``bmc.<payload>``. Tokens are stateless: nothing is
stored, so checking one reads no database and works through a database outage, and no
single token can be revoked (revoking its key does not stop it either: keep the lifetime
short). The signing secret is derived with HKDF-SHA256 from the *current* voiceprint
encryption key, so the service needs no further secret; once that key is rotated (and the
service restarted with the new one) every token signed before stops working.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from biometrics.errors import Unauthenticated
from biometrics.statuses import Role
from biometrics.store.crypto import Key

PREFIX = "bmc."
ACTOR_PREFIX = "call-token:"  # the audit actor: this and the minting key's id
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 86400
_HKDF_INFO = b"biometrics call tokens"
_MAX_TOKEN_CHARS = 2048  # a genuine token is a few hundred; longer text is not decoded


@dataclasses.dataclass(frozen=True)
class CallToken:
    """What a genuine, unexpired token grants: ``role`` on ``call_id`` alone."""

    call_id: str
    role: Role
    issued_by: str  # the key id that minted it
    issued_at: int  # Unix seconds
    expires_at: int

    @property
    def actor(self) -> str:
        return ACTOR_PREFIX + self.issued_by


def is_call_token(presented: str) -> bool:
    return presented.startswith(PREFIX)


class CallTokens:
    """Mints and checks call tokens under a secret derived from ``key``."""

    def __init__(self, key: Key, clock: Callable[[], float] = time.time) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
        self._secret = hkdf.derive(key.secret)
        self._clock = clock

    def mint(
        self, call_id: str, role: Role, issued_by: str, ttl_seconds: int
    ) -> tuple[str, CallToken]:
        """The token text and what it grants, valid for ``ttl_seconds`` from now."""
        now = int(self._clock())
        granted = CallToken(call_id, role, issued_by, now, now + ttl_seconds)
        payload = {
            "call": call_id,
            "role": role.value,
            "iat": granted.issued_at,
            "exp": granted.expires_at,
            "by": issued_by,
        }
        signed = PREFIX + _encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{signed}.{_encode(self._mac(signed))}", granted

    def check(self, token: str) -> CallToken:
        """What ``token`` grants; :class:`Unauthenticated` if it is malformed, not signed
        under the current key, or expired. The MAC is compared in constant time, before
        the payload is read."""
        signed, _, mac = token.rpartition(".")
        if len(token) > _MAX_TOKEN_CHARS or not signed.startswith(PREFIX) or "." in signed[4:]:
            raise Unauthenticated("malformed call token")
        try:
            given = _decode(mac)
        except ValueError:
            raise Unauthenticated("malformed call token") from None
        if not hmac.compare_digest(given, self._mac(signed)):
            raise Unauthenticated(
                "call token not valid: it was altered, or signed under a voiceprint encryption "
                "key that has since been rotated (mint a new one)"
            )
        granted = _granted(signed.removeprefix(PREFIX))
        if granted.expires_at <= self._clock():
            raise Unauthenticated(
                f"call token for call {granted.call_id!r} expired; mint a new one"
            )
        return granted

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._secret, signed.encode(), hashlib.sha256).digest()


def _granted(payload: str) -> CallToken:
    """The payload of a token whose MAC matched: only this service wrote it, so a bad shape
    means another version of it, still refused rather than trusted."""
    try:
        fields = json.loads(_decode(payload))
        return CallToken(
            call_id=str(fields["call"]),
            role=Role(fields["role"]),
            issued_by=str(fields["by"]),
            issued_at=int(fields["iat"]),
            expires_at=int(fields["exp"]),
        )
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("malformed call token") from None


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
