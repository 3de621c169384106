"""The console's session cookie: the API key an agent signed in with, and the session's
CSRF token, sealed with AES-256-GCM under a secret derived (HKDF-SHA256) from the current
voiceprint encryption key, as call tokens are. The key is sealed rather than only signed
because a browser's cookie store is not a place for it in clear; the cookie cannot be
forged or altered without that key, and nothing of it is stored on the server, so every
request checks the key again (a revoked key ends its sessions at once). Rotating the
voiceprint key ends every session.

A session without a key exists too: the sign-in form's, whose CSRF token the form posts
back (so another site cannot sign a browser in under a key of its choosing), and every
session while authentication is off.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from biometrics.store.crypto import Key

COOKIE = "biometrics_console"
_HKDF_INFO = b"biometrics console sessions"
_AAD = COOKIE.encode()
_NONCE_BYTES = 12
_MAX_COOKIE_CHARS = 4096  # browsers keep no more; longer text is not decoded


@dataclasses.dataclass(frozen=True)
class ConsoleSession:
    api_key: str | None  # None: signed in to nothing yet (or authentication is off)
    csrf_token: str
    expires_at: int  # Unix seconds

    def csrf_matches(self, presented: str | None) -> bool:
        """Constant-time: the token another page could not have read."""
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token.encode()
        )


class ConsoleSessions:
    """Seals and opens session cookies under a secret derived from ``key``."""

    def __init__(
        self, key: Key, lifetime_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
        self._aead = AESGCM(hkdf.derive(key.secret))
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock

    def new(self, api_key: str | None) -> tuple[str, ConsoleSession]:
        """A fresh session (with a new CSRF token) and its cookie value."""
        session = ConsoleSession(
            api_key, secrets.token_urlsafe(32), int(self._clock()) + self.lifetime_seconds
        )
        payload = json.dumps(dataclasses.asdict(session), separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, payload, _AAD)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("="), session

    def open(self, cookie: str | None) -> ConsoleSession | None:
        """The session a cookie holds; None if absent, altered, sealed under another key,
        or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
            return None
        try:
            sealed = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            payload = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD)
            session = ConsoleSession(**json.loads(payload))
        except (binascii.Error, ValueError, InvalidTag, TypeError):
            return None
        return session if session.expires_at > self._clock() else None
