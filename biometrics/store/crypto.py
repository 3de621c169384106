"""Voiceprints at rest: the keys, and the AES-256-GCM cipher that seals each vector.

A sealed vector is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``: a fresh random
96-bit nonce for every write, so one key never sees a nonce twice in practice. Each
vector is sealed with *associated data* that names what it is, so that a sealed vector
copied elsewhere does not open:

* a voiceprint: the speaker's ``speaker_id`` (unique and never changed; the row's primary
  key may not exist before the first flush) and the model's checkpoint sha256;
* a cohort: the model's checkpoint sha256 (one cohort row per model).

A key is named by its *key id*, a fingerprint of the key (16 hex digits of a SHA-256 over
it), kept beside every sealed row, so that keys can rotate: the current key seals, older
keys still open what they sealed. No key state is global: a :class:`Cipher` is built once
(see :func:`load_keyring`) and handed to the code that reads or writes vectors.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from biometrics.errors import ConfigError, VoiceprintUnreadable

logger = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
KEY_VARIABLE = "BIOMETRICS_ENCRYPTION_KEY"
KEY_FILE_VARIABLE = "BIOMETRICS_ENCRYPTION_KEY_FILE"
OLD_KEYS_VARIABLE = "BIOMETRICS_ENCRYPTION_OLD_KEYS"
_CHECK_PLAINTEXT = b"biometrics voiceprint key check v1"

KEY_FILE_WARNING = (
    "made a new encryption key for voiceprints at {path} (mode 0600): back it up now, "
    "apart from the database. Losing it loses every voiceprint (every speaker must enroll "
    "again); set {variable} to use a key kept elsewhere"
)


def voiceprint_aad(speaker_id: str, model_sha256: str) -> bytes:
    """What a voiceprint is bound to: its speaker and the model that made it."""
    return json.dumps(["voiceprint", speaker_id, model_sha256]).encode()


def cohort_aad(model_sha256: str) -> bytes:
    """What a cohort is bound to: its model (one cohort per model)."""
    return json.dumps(["cohort", model_sha256]).encode()


@dataclasses.dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes = dataclasses.field(repr=False)

    @classmethod
    def of(cls, secret: bytes) -> Key:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"an encryption key is {KEY_BYTES} bytes, not {len(secret)}")
        fingerprint = hashlib.sha256(b"biometrics encryption key id\0" + secret).hexdigest()
        return cls(fingerprint[:16], secret)

    @classmethod
    def generate(cls) -> Key:
        return cls.of(secrets.token_bytes(KEY_BYTES))

    def encoded(self) -> str:
        """The key as the variables and key files hold it: base64 of its 32 bytes."""
        return base64.b64encode(self.secret).decode()


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """The key that seals (``current``) and the older ones that still open."""

    current: Key
    older: tuple[Key, ...] = ()

    @property
    def keys(self) -> dict[str, Key]:
        return {key.key_id: key for key in (*self.older, self.current)}


class Cipher:
    """Seals and opens vectors under a key ring; AES-256-GCM with associated data."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._aead = {key_id: AESGCM(key.secret) for key_id, key in keyring.keys.items()}

    @property
    def key_id(self) -> str:
        """The key id new writes are sealed under."""
        return self.keyring.current.key_id

    def knows(self, key_id: str) -> bool:
        return key_id in self._aead

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """``(key id, nonce || ciphertext || tag)`` under the current key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return self.key_id, nonce + self._aead[self.key_id].encrypt(nonce, plaintext, aad)

    def open(self, key_id: str | None, sealed: bytes, aad: bytes, what: str) -> bytes:
        """The plaintext; :class:`VoiceprintUnreadable` naming ``what`` if it cannot be."""
        if key_id is None:
            raise VoiceprintUnreadable(
                f"{what} is not encrypted yet: start the service once, or run "
                "`biometrics keys rotate-voiceprints`"
            )
        aead = self._aead.get(key_id)
        if aead is None:
            raise VoiceprintUnreadable(
                f"{what} is encrypted under key {key_id}, which is not configured "
                f"({KEY_VARIABLE}, {KEY_FILE_VARIABLE} or {OLD_KEYS_VARIABLE})"
            )
        if len(sealed) < OVERHEAD:
            raise VoiceprintUnreadable(f"{what} is {len(sealed)} bytes: too short to be sealed")
        try:
            return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise VoiceprintUnreadable(
                f"{what} does not decrypt under key {key_id}: it was sealed for another "
                "speaker or model, or altered"
            ) from None

    def check_value(self) -> bytes:
        """A constant sealed under the current key: stored, it tells a wrong key at start."""
        return self.seal(_CHECK_PLAINTEXT, self.key_id.encode())[1]

    def checks(self, key_id: str, check_value: bytes) -> bool:
        """Whether the configured key ``key_id`` opens its stored check value."""
        try:
            return self.open(key_id, check_value, key_id.encode(), "") == _CHECK_PLAINTEXT
        except VoiceprintUnreadable:
            return False


def load_keyring(
    key: str | None, key_file: Path | None, old_keys: Sequence[str], database_url: str
) -> KeyRing:
    """The configured keys: ``key`` (base64), else the key in ``key_file``. With neither, a
    SQLite database gets a key file beside it (made on first use, mode 0600, with a
    warning to back it up); any other database refuses to start."""
    if key is not None and key_file is not None:
        raise ConfigError(f"set {KEY_VARIABLE} or {KEY_FILE_VARIABLE}, not both")
    if key is not None:
        current = _decode(key, KEY_VARIABLE)
    elif key_file is not None:
        current = _read_key_file(key_file, KEY_FILE_VARIABLE)
    else:
        current = _quick_start_key(database_url)
    older = tuple(
        _decode(text, f"{OLD_KEYS_VARIABLE} (entry {index})")
        for index, text in enumerate(old_keys, start=1)
    )
    return KeyRing(current, tuple(k for k in older if k.key_id != current.key_id))


def _decode(text: str, source: str) -> Key:
    try:
        secret = base64.b64decode(text.strip(), validate=True)
        return Key.of(secret)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{source} is not an encryption key: it must be base64 of {KEY_BYTES} random "
            "bytes (make one with `openssl rand -base64 32`)"
        ) from None


def _read_key_file(path: Path, source: str) -> Key:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read {path}: {error.strerror or error}") from None
    if path.stat().st_mode & 0o077:
        logger.warning(
            "the voiceprint encryption key file can be read by other users; chmod 600 it",
            extra={"path": str(path)},
        )
    return _decode(text, f"{source} ({path})")


def _quick_start_key(database_url: str) -> Key:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise ConfigError(
            f"voiceprints are encrypted at rest: set {KEY_VARIABLE} (base64 of 32 random "
            f"bytes, e.g. `openssl rand -base64 32`) or {KEY_FILE_VARIABLE}. A key file is "
            "made by itself only beside a SQLite database"
        )
    if url.database in (None, "", ":memory:"):
        return Key.generate()  # a database that ends with the process needs no lasting key
    path = Path(f"{url.database}.key")
    if path.exists():
        return _read_key_file(path, "the quick-start key file")
    key = Key.generate()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return _read_key_file(path, "the quick-start key file")
    except OSError as error:
        raise ConfigError(
            f"cannot make the voiceprint key file {path}: {error.strerror or error}; set "
            f"{KEY_VARIABLE} or {KEY_FILE_VARIABLE}"
        ) from None
    with os.fdopen(descriptor, "w") as file:
        file.write(key.encoded() + "\n")
    logger.warning(
        KEY_FILE_WARNING.format(path=path, variable=KEY_FILE_VARIABLE),
        extra={"path": str(path), "key_id": key.key_id},
    )
    return key
