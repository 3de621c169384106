"""The audit trail's store (biometrics.store.audit), on SQLite and PostgreSQL: rows go in and
come out in order, filtered; nothing changes or removes them, deleting a speaker included."""

from __future__ import annotations

from datetime import timedelta

from biometrics.clock import utcnow
from biometrics.store import Database, queries
from biometrics.store.audit import COMMAND_LINE, AuditLog, AuditQuery, Origin


def test_rows_are_kept_in_order_and_filtered(database_url):
    database = Database(database_url)
    log = AuditLog(database)
    before = utcnow()
    web = Origin("k1", "req-1", "10.0.0.7")
    log.record(web, "speaker.enroll", "ada", "ENROLLED")
    log.record(web, "call.verdict", "ada", "ACCEPT", call_id="c1", participant_raw_id="4:+1")
    log.record(COMMAND_LINE, "key.create", "k2", "ok")

    every = log.query(AuditQuery())
    assert [(row.actor, row.action, row.subject, row.outcome) for row in every] == [
        ("k1", "speaker.enroll", "ada", "ENROLLED"),
        ("k1", "call.verdict", "ada", "ACCEPT"),
        ("cli", "key.create", "k2", "ok"),
    ]
    assert (every[1].call_id, every[1].participant_raw_id) == ("c1", "4:+1")
    assert (every[0].request_id, every[0].source) == ("req-1", "10.0.0.7")
    assert every[2].request_id is None and every[0].at >= before
    assert every[0].as_dict()["at"].endswith("Z")
    assert [row.id for row in log.query(AuditQuery(subject="ada"))] == [r.id for r in every[:2]]
    assert [row.subject for row in log.query(AuditQuery(action="key.create"))] == ["k2"]
    assert log.query(AuditQuery(since=utcnow() + timedelta(seconds=1))) == []
    assert log.query(AuditQuery(until=before)) == []
    assert [row.id for row in log.query(AuditQuery(after=every[0].id, limit=1))] == [every[1].id]
    database.dispose()


def test_the_log_only_adds_and_reads(database_url):
    public = {name for name in vars(AuditLog) if not name.startswith("_")}
    assert public == {"record", "query"}


def test_deleting_a_speaker_keeps_their_rows(database_url):
    database = Database(database_url)
    log = AuditLog(database)
    with database.session() as session:
        queries.create_speaker(session, "ada")
    log.record(Origin("k1"), "speaker.create", "ada", "ok")
    with database.session() as session:
        queries.delete_speaker(session, "ada")
    assert [row.action for row in log.query(AuditQuery(subject="ada"))] == ["speaker.create"]
    database.dispose()
