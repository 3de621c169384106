"""biometrics.store.lifecycle, on SQLite and PostgreSQL: the sweep expires speakers unused too
long or past their expires_at (voiceprint deleted, row kept, one audit row each), leaves the
others alone, prunes verdicts and audit rows past retention, works in batches, is
idempotent, and with dry_run changes nothing. Times are moved in the database, never slept."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from biometrics.clock import utcnow
from biometrics.statuses import Decision, SpeakerStatus
from biometrics.store import Database, Voiceprint, queries
from biometrics.store.audit import COMMAND_LINE, AuditLog, AuditQuery, Origin
from biometrics.store.lifecycle import Retention, SpeakerExpiry, SweepReport, sweep
from biometrics.store.models import AuditRecord, Speaker, VerdictRecord
from biometrics.store.verdicts import VerdictHistory
from tests.conftest import TEST_CIPHER
from tests.store.verdicts import verdict

EXPIRY = SpeakerExpiry(inactive_days=30)
KEEP = Retention()  # verdicts and audit rows forever


@pytest.fixture
def database(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def add_speaker(database, speaker_id, *, unused_days=0.0, status=SpeakerStatus.ENROLLED, **fields):
    """A speaker with a voiceprint, last used ``unused_days`` ago."""
    with database.session() as session:
        speaker = queries.create_speaker(session, speaker_id, **fields)
        speaker.status = status
        voiceprint = Voiceprint(model_source="m", speech_seconds=30.0, segment_count=3)
        voiceprint.seal(TEST_CIPHER, speaker_id, "0" * 64, np.eye(4, dtype=np.float32)[0])
        speaker.voiceprint = voiceprint
        speaker.last_accessed_at = utcnow() - timedelta(days=unused_days)


def state(database, speaker_id):
    """The speaker's status and whether a voiceprint row is left."""
    with database.session() as session:
        speaker = queries.get_speaker(session, speaker_id)
        return speaker.status, speaker.voiceprint is not None


def test_speakers_unused_too_long_or_past_expires_at_are_expired(database):
    add_speaker(database, "idle", unused_days=31)
    add_speaker(database, "recent", unused_days=29)
    add_speaker(database, "ended", expires_at=utcnow() + timedelta(milliseconds=1))
    add_speaker(database, "withdrawn", unused_days=400, status=SpeakerStatus.OPTED_OUT)
    add_speaker(database, "partial", unused_days=31, status=SpeakerStatus.PENDING_ENROLLMENT)
    with database.session() as session:
        session.execute(
            sa.update(Speaker)
            .where(Speaker.speaker_id == "ended")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    heard: list[str] = []  # the service drops these from its remembered claims
    report = sweep(database, EXPIRY, KEEP, on_expired=heard.append)

    assert report == SweepReport(speakers_expired=3, verdicts_deleted=0, audit_rows_deleted=0)
    assert sorted(heard) == ["ended", "idle", "partial"]
    assert state(database, "idle") == (SpeakerStatus.EXPIRED, False)
    assert state(database, "ended") == (SpeakerStatus.EXPIRED, False)
    assert state(database, "partial") == (SpeakerStatus.EXPIRED, False)
    assert state(database, "recent") == (SpeakerStatus.ENROLLED, True)
    # An opt-out is kept as it is: it is what refuses a later enrollment.
    assert state(database, "withdrawn") == (SpeakerStatus.OPTED_OUT, True)
    rows = AuditLog(database).query(AuditQuery(action="speaker.expire"))
    assert sorted((row.actor, row.subject, row.outcome) for row in rows) == [
        ("service", name, "EXPIRED") for name in ("ended", "idle", "partial")
    ]
    # Idempotent: nothing is left to do, and nothing is audited twice.
    assert sweep(database, EXPIRY, KEEP).speakers_expired == 0
    assert len(AuditLog(database).query(AuditQuery(action="speaker.expire"))) == 3


def test_without_inactivity_expiry_only_expires_at_counts(database):
    add_speaker(database, "idle", unused_days=5000)
    assert sweep(database, SpeakerExpiry(0), KEEP).speakers_expired == 0
    assert state(database, "idle") == (SpeakerStatus.ENROLLED, True)


def test_a_speaker_never_used_counts_from_their_voiceprint_then_their_creation(database):
    """Rows written before enrollment marked speakers as used have no last_accessed_at."""
    add_speaker(database, "enrolled-long-ago")
    add_speaker(database, "enrolled-lately")
    with database.session() as session:
        queries.create_speaker(session, "created-long-ago")
        session.execute(sa.update(Speaker).values(last_accessed_at=None))
        long_ago = utcnow() - timedelta(days=31)
        session.execute(
            sa.update(Speaker)
            .where(Speaker.speaker_id.in_(["enrolled-long-ago", "created-long-ago"]))
            .values(created_at=long_ago)
        )
        session.execute(
            sa.update(Voiceprint)
            .where(
                Voiceprint.speaker_pk
                == sa.select(Speaker.id)
                .where(Speaker.speaker_id == "enrolled-long-ago")
                .scalar_subquery()
            )
            .values(updated_at=long_ago)
        )
        session.execute(
            sa.update(Speaker)
            .where(Speaker.speaker_id == "enrolled-lately")
            .values(created_at=long_ago)
        )
    assert sweep(database, EXPIRY, KEEP).speakers_expired == 2
    assert state(database, "enrolled-long-ago")[0] is SpeakerStatus.EXPIRED
    assert state(database, "created-long-ago")[0] is SpeakerStatus.EXPIRED
    assert state(database, "enrolled-lately") == (SpeakerStatus.ENROLLED, True)


def test_the_sweep_works_in_batches(database):
    for number in range(7):
        add_speaker(database, f"idle-{number}", unused_days=40)
    add_speaker(database, "active")
    assert sweep(database, EXPIRY, KEEP, batch_size=3).speakers_expired == 7
    assert all(
        state(database, f"idle-{number}") == (SpeakerStatus.EXPIRED, False) for number in range(7)
    )
    assert state(database, "active") == (SpeakerStatus.ENROLLED, True)


def test_verdicts_and_audit_rows_past_retention_are_deleted(database):
    history, log = VerdictHistory(database), AuditLog(database)
    now = utcnow()
    ages = {"old": 400, "recent": 10}
    for number, (name, days) in enumerate(ages.items()):
        history.record(
            dataclasses.replace(
                verdict(number, Decision.REJECT, speaker_id=name),
                created_at=now - timedelta(days=days),
            )
        )
        log.record(Origin("k1"), "speaker.verify", name, "REJECT")
    with database.session() as session:
        session.execute(
            sa.update(AuditRecord)
            .where(AuditRecord.subject == "old")
            .values(at=now - timedelta(days=3000))
        )

    counted = sweep(database, EXPIRY, Retention(365, 2555), dry_run=True)
    assert counted == SweepReport(0, 1, 1, dry_run=True)
    report = sweep(database, EXPIRY, Retention(365, 2555), batch_size=1)

    assert (report.verdicts_deleted, report.audit_rows_deleted) == (1, 1)
    with database.session() as session:
        assert session.scalars(sa.select(VerdictRecord.speaker_id)).all() == ["recent"]
        assert session.scalars(sa.select(AuditRecord.subject)).all() == ["recent"]
    # 0 keeps them forever.
    assert sweep(database, EXPIRY, Retention(0, 0)) == SweepReport(0, 0, 0)


def test_a_dry_run_counts_and_changes_nothing(database):
    add_speaker(database, "idle", unused_days=31)
    report = sweep(database, EXPIRY, KEEP, dry_run=True, origin=COMMAND_LINE)
    assert report == SweepReport(1, 0, 0, dry_run=True)
    assert state(database, "idle") == (SpeakerStatus.ENROLLED, True)
    assert AuditLog(database).query(AuditQuery(action="speaker.expire")) == []
