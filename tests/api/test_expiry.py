"""Expiry over the API, on SQLite and PostgreSQL: a speaker with no enrollment or ACCEPT for
BIOMETRICS_SPEAKER_EXPIRY_DAYS gets SPEAKER_EXPIRED from POST /v1/verify until re-enrolled;
a REJECT does not keep them alive, an ACCEPT and an enrollment do. After deletion, opt-out
and the sweep, no vector of those speakers is left in any table. Times are moved in the
database, never slept."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from biometrics.clock import utcnow
from biometrics.store import Database
from biometrics.store.lifecycle import Retention, SpeakerExpiry, sweep
from biometrics.store.models import Base, Speaker
from tests.api.helpers import enroll, verify


def enroll_once(client, speaker_id, seed=1):
    """10 s in one upload: verifying that same audio is an ACCEPT (cosine 1)."""
    assert enroll(client, speaker_id, seconds=10.0, seed=seed).json()["status"] == "ENROLLED"


def accept_check(client, speaker_id, seed=1, **fields):
    return verify(client, speaker_id, seconds=10.0, seed=seed, **fields).json()


def unused_for(settings, speaker_id, days):
    """Move the speaker's last use ``days`` back."""
    database = Database(settings.database_url)
    with database.session() as session:
        session.execute(
            sa.update(Speaker)
            .where(Speaker.speaker_id == speaker_id)
            .values(last_accessed_at=utcnow() - timedelta(days=days))
        )
    database.dispose()


def run_sweep(settings):
    database = Database(settings.database_url)
    report = sweep(database, SpeakerExpiry(settings.speaker_expiry_days), Retention())
    database.dispose()
    return report


def test_a_speaker_unused_too_long_is_expired_until_enrolled_again(client, settings):
    assert settings.speaker_expiry_days == 1095  # the default, Voice ID's three years
    enroll_once(client, "ada")
    unused_for(settings, "ada", 1096)
    expired = accept_check(client, "ada")
    assert (expired["decision"], expired["score"]) == ("SPEAKER_EXPIRED", None)
    assert "enroll them again" in expired["detail"]
    # The expired voiceprint is not pooled into: the new enrollment starts it over.
    again = enroll(client, "ada", seconds=10.0, seed=2).json()
    assert again["status"] == "ENROLLED"
    assert again["enrolled_speech_seconds"] == again["speech_seconds"]
    assert accept_check(client, "ada", seed=2)["decision"] == "ACCEPT"


def test_a_reject_does_not_keep_a_speaker_alive_an_accept_does(client, settings):
    def last_used():
        return client.get("/v1/speakers/ada").json()["last_accessed_at"]

    enroll_once(client, "ada")
    unused_for(settings, "ada", 1000)
    before = last_used()
    rejected = accept_check(client, "ada", seed=4, threshold="100")
    assert rejected["decision"] == "REJECT" and rejected["score"] is not None
    assert last_used() == before
    assert accept_check(client, "ada")["decision"] == "ACCEPT"
    assert last_used() > before
    unused_for(settings, "ada", 1094)
    assert accept_check(client, "ada")["decision"] == "ACCEPT"


def test_the_sweep_deletes_the_voiceprint_keeps_the_speaker_and_enrolling_revives(client, settings):
    enroll_once(client, "ada")
    unused_for(settings, "ada", 1096)
    assert run_sweep(settings).speakers_expired == 1
    swept = client.get("/v1/speakers/ada").json()
    assert (swept["status"], swept["model"], swept["enrolled_speech_seconds"]) == (
        "EXPIRED",
        None,
        0.0,
    )
    assert [row["status"] for row in client.get("/v1/speakers").json()["speakers"]] == ["EXPIRED"]
    assert accept_check(client, "ada")["decision"] == "SPEAKER_EXPIRED"
    assert enroll(client, "ada", seconds=4.0).json()["status"] == "PENDING_ENROLLMENT"
    assert enroll(client, "ada", seconds=6.0, seed=3).json()["status"] == "ENROLLED"
    assert client.get("/v1/speakers/ada").json()["status"] == "ENROLLED"
    audit = client.get("/v1/audit", params={"action": "speaker.expire"}).json()["entries"]
    assert [(row["actor"], row["subject"]) for row in audit] == [("service", "ada")]


def _walk(value):
    """Every list and string inside a JSON value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from _walk(item)
    elif isinstance(value, str):
        yield value


def test_delete_opt_out_and_expiry_leave_no_vector_of_the_speaker_in_any_table(client, settings):
    """Every table of the schema (a table the models do not know fails the test), every
    row: no sealed vector of a deleted, opted-out or expired speaker in any binary column,
    no vector-like list of numbers in any JSON column, no row that points at a speaker
    deleted, and the deleted speaker's id nowhere but the audit trail. The running service
    keeps nothing of them in memory either: its verdicts say so at once."""
    for speaker_id, seed in (("ada", 1), ("bob", 3), ("cy", 5), ("dee", 7)):
        enroll_once(client, speaker_id, seed)
        accept_check(client, speaker_id, seed)
    engine = Database(settings.database_url).engine
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT s.speaker_id, s.id, v.vector FROM speakers s "
                "JOIN voiceprints v ON v.speaker_pk = s.id"
            )
        ).all()
    pks = {speaker_id: pk for speaker_id, pk, _ in rows}
    sealed = {speaker_id: bytes(vector) for speaker_id, _, vector in rows}

    assert client.delete("/v1/speakers/ada").status_code == 204
    assert client.post("/v1/speakers/bob/opt-out").status_code == 200
    unused_for(settings, "cy", 1096)
    assert run_sweep(settings).speakers_expired == 1

    gone = ("ada", "bob", "cy")
    left: list[bytes] = []
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        assert tables == {table.name for table in Base.metadata.sorted_tables} | {"alembic_version"}
        for table in Base.metadata.sorted_tables:
            speaker_keys = [
                column
                for column in table.columns
                for key in column.foreign_keys
                if key.column.table.name == "speakers"
            ]
            for row in connection.execute(sa.select(table)).mappings():
                for column in speaker_keys:
                    assert row[column.name] != pks["ada"], f"{table.name} keeps ada's row"
                for name, value in row.items():
                    column = table.columns[name]
                    if isinstance(column.type, sa.LargeBinary) and value:
                        left.append(bytes(value))
                        for speaker_id in gone:
                            assert sealed[speaker_id] not in bytes(value), (
                                f"{table.name}.{name} holds {speaker_id}'s voiceprint"
                            )
                    elif isinstance(column.type, sa.JSON) and value is not None:
                        for item in _walk(value):
                            assert not isinstance(item, list) or len(item) < 16, (
                                f"{table.name}.{name} holds a vector"
                            )
                            if table.name != "audit_log" and isinstance(item, str):
                                assert item != "ada", f"{table.name}.{name} names ada"
                    elif isinstance(value, str) and table.name != "audit_log":
                        assert value != "ada", f"{table.name}.{name} names ada"
    assert sealed["dee"] in left  # the check sees what is there
    # Verdicts come from what is stored now, never a copy kept in memory.
    decisions = {
        name: accept_check(client, name, seed)["decision"]
        for name, seed in (("ada", 1), ("bob", 3), ("cy", 5), ("dee", 7))
    }
    assert decisions == {
        "ada": "SPEAKER_NOT_ENROLLED",
        "bob": "SPEAKER_OPTED_OUT",
        "cy": "SPEAKER_EXPIRED",
        "dee": "ACCEPT",
    }
