"""API keys: made, listed, revoked, and checked. Blocking; call from a worker thread.

A key reads ``bmk_<key id>_<secret>``. The key id is public (it names the key in lists and
in the audit trail); the secret is 32 random bytes and only its salted SHA-256 is stored.
A fast hash is enough because the secret is random, not chosen by a person: 256 bits
cannot be guessed from the hash, and a slow hash (argon2, scrypt) would only add its cost
to every request. Hashes are compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select

from biometrics.clock import utcnow
from biometrics.errors import KeyNotFound
from biometrics.statuses import Role
from biometrics.store.database import Database, is_unavailable
from biometrics.store.models import ApiKey

logger = logging.getLogger(__name__)

PREFIX = "bmk"
_KEY_ID_BYTES = 6  # 12 hex characters
_SECRET_BYTES = 32
_USE_MARK_INTERVAL = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """A key as lists show it: never its secret."""

    key_id: str
    name: str | None
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a presented key does not authenticate; the text goes to the caller as it is."""

    reason: str


class KeyStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def create(
        self, role: Role, name: str | None = None, expires_in: timedelta | None = None
    ) -> tuple[KeyInfo, str]:
        """A new key and its whole text, which is never shown again."""
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        salt = secrets.token_bytes(16)
        row = ApiKey(
            key_id=key_id,
            name=name,
            role=role,
            salt=salt,
            secret_sha256=_digest(salt, secret),
            expires_at=None if expires_in is None else utcnow() + expires_in,
        )
        with self._database.session() as session:
            session.add(row)
            session.flush()
            return _info(row), f"{PREFIX}_{key_id}_{secret}"

    def count(self) -> int:
        """Keys ever made, revoked ones included."""
        with self._database.session() as session:
            return session.scalar(select(func.count()).select_from(ApiKey)) or 0

    def list(self) -> list[KeyInfo]:
        with self._database.session() as session:
            return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke(self, key_id: str) -> KeyInfo:
        with self._database.session() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
            if row is None:
                raise KeyNotFound(f"no API key {key_id!r}; `biometrics keys list` shows them")
            row.revoked_at = row.revoked_at or utcnow()
            return _info(row)

    def authenticate(self, presented: str) -> KeyInfo | Refusal:
        """The key ``presented`` names, if it is genuine, unrevoked and unexpired."""
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != PREFIX or not key_id or not secret:
            return Refusal("not an API key of this service")
        with self._database.session() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
            # A missing key costs the same comparison, so that timing says nothing.
            expected = row.secret_sha256 if row is not None else "0" * 64
            genuine = hmac.compare_digest(
                expected, _digest(row.salt if row is not None else b"", secret)
            )
            if row is None or not genuine:
                return Refusal("unknown API key")
            now = utcnow()
            if row.revoked_at is not None:
                return Refusal(f"API key {key_id} was revoked")
            if row.expires_at is not None and row.expires_at <= now:
                return Refusal(f"API key {key_id} expired")
            # Marking use at most once a minute keeps a write off most requests.
            if row.last_used_at is None or now - row.last_used_at > _USE_MARK_INTERVAL:
                row.last_used_at = now
            return _info(row)


class RecentKeyStore(KeyStore):
    """Keys for live-call sockets, which must (re)connect through a database outage: a key
    the database accepted within the last ``remember_seconds`` is accepted again while
    the database is unreachable, and only then. Each time the database answers, its answer
    wins, so a revoked key is refused as soon as it is back. Only a digest of each
    presented key is held in memory, never the key."""

    def __init__(
        self,
        database: Database,
        remember_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(database)
        self._remember_seconds = remember_seconds
        self._clock = clock
        self._recent: dict[str, tuple[KeyInfo, float]] = {}  # digest -> (key, accepted at)
        self._lock = threading.Lock()

    def authenticate(self, presented: str) -> KeyInfo | Refusal:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        try:
            found = super().authenticate(presented)
        except Exception as error:
            if not is_unavailable(error):
                raise
            return self._remembered(digest)
        now = self._clock()
        with self._lock:
            self._recent = {
                known: entry
                for known, entry in self._recent.items()
                if now - entry[1] < self._remember_seconds and known != digest
            }
            if isinstance(found, KeyInfo):
                self._recent[digest] = (found, now)
        return found

    def _remembered(self, digest: str) -> KeyInfo | Refusal:
        with self._lock:
            entry = self._recent.get(digest)
        if entry is None or self._clock() - entry[1] >= self._remember_seconds:
            return Refusal("the database is unreachable and this key was not checked lately")
        info = entry[0]
        if not info.usable(utcnow()):
            return Refusal(f"API key {info.key_id} expired")
        logger.warning(
            "database unreachable: a key checked lately is accepted",
            extra={"key_id": info.key_id},
        )
        return info


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key a request or socket upgrade carries: ``Authorization: Bearer <key>``,
    else ``X-API-Key``."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(PREFIX + "_"):
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )
