"""biometrics.store.crypto: sealing with associated data, the configured keys, and the
quick-start key file beside a SQLite database."""

from __future__ import annotations

import logging
import stat

import numpy as np
import pytest

from biometrics.errors import ConfigError, VoiceprintUnreadable
from biometrics.store.crypto import (
    OVERHEAD,
    Cipher,
    Key,
    KeyRing,
    cohort_aad,
    load_keyring,
    voiceprint_aad,
)

POSTGRES = "postgresql+psycopg://u:p@db/biometrics"


def test_a_sealed_vector_is_nonce_ciphertext_and_tag_and_never_the_floats():
    cipher = Cipher(KeyRing(Key.generate()))
    vector = np.linspace(-1, 1, 192, dtype="<f4").tobytes()
    aad = voiceprint_aad("alice", "a" * 64)
    key_id, first = cipher.seal(vector, aad)
    _, second = cipher.seal(vector, aad)
    assert key_id == cipher.key_id and len(first) == len(vector) + OVERHEAD
    assert vector not in first and first[:12] != second[:12]  # a fresh nonce every time
    assert cipher.open(key_id, first, aad, "it") == vector


@pytest.mark.parametrize(
    "elsewhere",
    [voiceprint_aad("bob", "a" * 64), voiceprint_aad("alice", "b" * 64), cohort_aad("a" * 64)],
    ids=["another speaker", "another model", "a cohort"],
)
def test_a_vector_does_not_open_for_another_row_or_model(elsewhere):
    cipher = Cipher(KeyRing(Key.generate()))
    key_id, sealed = cipher.seal(b"\0" * 16, voiceprint_aad("alice", "a" * 64))
    with pytest.raises(
        VoiceprintUnreadable, match=f"the vector does not decrypt under key {key_id}"
    ):
        cipher.open(key_id, sealed, elsewhere, "the vector")


def test_older_keys_open_what_they_sealed_and_the_current_key_seals():
    old, new = Key.generate(), Key.generate()
    key_id, sealed = Cipher(KeyRing(old)).seal(b"voice", b"aad")
    rotated = Cipher(KeyRing(new, (old,)))
    assert rotated.open(key_id, sealed, b"aad", "it") == b"voice"
    assert rotated.seal(b"voice", b"aad")[0] == new.key_id != old.key_id
    with pytest.raises(VoiceprintUnreadable, match=f"key {old.key_id}, which is not configured"):
        Cipher(KeyRing(new)).open(key_id, sealed, b"aad", "it")


def test_a_check_value_tells_the_key_that_sealed_it():
    key = Key.generate()
    cipher = Cipher(KeyRing(key))
    check = cipher.check_value()
    assert cipher.checks(key.key_id, check)
    impostor = Cipher(KeyRing(Key(key.key_id, Key.generate().secret)))
    assert not impostor.checks(key.key_id, check)


def test_keys_come_from_the_variable_or_a_file(tmp_path):
    key = Key.generate()
    assert load_keyring(key.encoded(), None, [], POSTGRES).current == key
    path = tmp_path / "voiceprints.key"
    path.write_text(key.encoded() + "\n")
    path.chmod(0o600)
    old = Key.generate()
    ring = load_keyring(None, path, [old.encoded()], POSTGRES)
    assert ring.current == key and ring.older == (old,)
    assert "secret" not in repr(ring) and key.encoded() not in repr(ring)


@pytest.mark.parametrize(
    ("key", "old", "message"),
    [
        ("not base64!", [], "BIOMETRICS_ENCRYPTION_KEY is not an encryption key"),
        ("c2hvcnQ=", [], "base64 of 32 random bytes"),
        (Key.generate().encoded(), ["c2hvcnQ="], r"OLD_KEYS \(entry 1\) is not an encryption"),
    ],
)
def test_a_malformed_key_refuses_to_start(key, old, message):
    with pytest.raises(ConfigError, match=message):
        load_keyring(key, None, old, POSTGRES)


def test_a_missing_key_file_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="BIOMETRICS_ENCRYPTION_KEY_FILE: cannot read"):
        load_keyring(None, tmp_path / "absent.key", [], POSTGRES)


def test_postgresql_without_a_key_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="set BIOMETRICS_ENCRYPTION_KEY") as refused:
        load_keyring(None, None, [], POSTGRES)
    assert "only beside a SQLite database" in refused.value.detail
    assert not list(tmp_path.iterdir())


def test_the_quick_start_key_file_is_made_beside_sqlite_once_with_mode_0600(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'biometrics.db'}"
    with caplog.at_level(logging.WARNING, logger="biometrics.store.crypto"):
        made = load_keyring(None, None, [], url).current
    path = tmp_path / "biometrics.db.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == made.encoded()
    [warning] = caplog.records
    assert str(path) in warning.getMessage() and "back it up" in warning.getMessage()
    assert "Losing it loses every voiceprint" in warning.getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="biometrics.store.crypto"):
        assert load_keyring(None, None, [], url).current == made  # the same key, quietly
    assert not caplog.records


def test_a_truncated_value_is_unreadable_not_a_crash():
    cipher = Cipher(KeyRing(Key.generate()))
    with pytest.raises(VoiceprintUnreadable, match="too short to be sealed"):
        cipher.open(cipher.key_id, b"\0" * 8, b"aad", "it")
