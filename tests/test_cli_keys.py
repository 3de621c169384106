"""biometrics keys: make (the key alone on the last line), list (never a secret) and revoke
API keys; the first start's admin key is made once."""

from __future__ import annotations

import pytest

from biometrics import cli
from biometrics.cli.service import first_admin_key
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.audit import AuditLog, AuditQuery
from biometrics.store.crypto import Cipher, Key, KeyRing
from biometrics.store.keys import KeyInfo, KeyStore


@pytest.fixture
def fresh_database(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"  # not migrated: keys create does that
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", url)
    monkeypatch.setenv("BIOMETRICS_LOG_FORMAT", "console")
    return url


def test_keys_are_made_listed_and_revoked(fresh_database, capsys):
    assert (
        cli.main(["keys", "create", "--role", "stream", "--name", "acs", "--expires-in", "30"]) == 0
    )
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("bmk_")
    keys = KeyStore(Database(fresh_database))
    found = keys.authenticate(key)
    assert isinstance(found, KeyInfo) and found.role is Role.STREAM and found.expires_at

    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert found.key_id in listing and "stream" in listing and "acs" in listing
    assert key.split("_", 2)[2] not in listing and "usable" in listing

    assert cli.main(["keys", "revoke", found.key_id]) == 0
    assert "revoked" in capsys.readouterr().out
    assert not isinstance(keys.authenticate(key), KeyInfo)
    assert cli.main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["keys", "revoke", "nosuchkey"]) == 3  # not found
    assert "no API key 'nosuchkey'" in capsys.readouterr().err

    trail = AuditLog(Database(fresh_database)).query(AuditQuery(limit=100))
    assert [(row.actor, row.action, row.subject, row.outcome) for row in trail] == [
        ("cli", "key.create", found.key_id, "ok"),
        ("cli", "key.revoke", found.key_id, "ok"),
        ("cli", "key.revoke", "nosuchkey", "key_not_found"),
    ]
    assert key.split("_", 2)[2] not in repr(trail)


def test_a_role_is_required_and_checked(fresh_database, capsys):
    with pytest.raises(SystemExit):
        cli.main(["keys", "create", "--role", "root"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_first_admin_key_is_made_once(fresh_database, capsys):
    database = Database(fresh_database)
    database.upgrade()
    keys = KeyStore(database)
    first_admin_key(keys, "127.0.0.1", 8000, AuditLog(database))
    printed = capsys.readouterr().out
    key = printed.strip().splitlines()[-1]
    assert f"Authorization: Bearer {key}" in printed
    assert isinstance(keys.authenticate(key), KeyInfo)
    keys.revoke(keys.list()[0].key_id)
    # never again, even with none usable
    first_admin_key(keys, "127.0.0.1", 8000, AuditLog(database))
    assert capsys.readouterr().out == ""
    assert len(keys.list()) == 1
    trail = AuditLog(database).query(AuditQuery())
    assert [(row.actor, row.action, row.subject) for row in trail] == [
        ("cli", "key.create", keys.list()[0].key_id)
    ]


def test_rotate_voiceprints_moves_every_row_to_the_new_key(fresh_database, monkeypatch, capsys):
    from tests.store.test_vault import enroll_all, raw

    old, new = Key.generate(), Key.generate()
    database = Database(fresh_database)
    database.upgrade()
    enroll_all(database, Cipher(KeyRing(old)))

    monkeypatch.setenv("BIOMETRICS_ENCRYPTION_KEY", new.encoded())
    assert cli.main(["keys", "rotate-voiceprints"]) == 2  # the old key is needed to read
    assert f"voiceprints are encrypted under key {old.key_id}" in capsys.readouterr().err

    monkeypatch.setenv(
        "BIOMETRICS_ENCRYPTION_OLD_KEYS", f"{Key.generate().encoded()},{old.encoded()}"
    )
    assert cli.main(["keys", "rotate-voiceprints", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "voiceprints: 2/5 re-encrypted",
        "voiceprints: 4/5 re-encrypted",
        "voiceprints: 5/5 re-encrypted",
        "cohorts: 1/1 re-encrypted",
        f"5 voiceprints and 1 cohort re-encrypted under key {new.key_id}; every voiceprint "
        "and cohort is now under it",
    ]
    for table in ("voiceprints", "score_cohorts"):
        assert {row.key_id for row in raw(database, f"SELECT key_id FROM {table}")} == {new.key_id}
    assert cli.main(["keys", "rotate-voiceprints"]) == 0  # again: nothing left to do
    assert capsys.readouterr().out.startswith("0 voiceprints and 0 cohorts re-encrypted")
    trail = AuditLog(database).query(AuditQuery(action="key.rotate"))
    assert [(row.actor, row.subject, row.outcome) for row in trail] == [
        ("cli", new.key_id, "ok")
    ] * 2
    database.dispose()
