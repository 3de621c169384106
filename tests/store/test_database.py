import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from biometrics.errors import SpeakerExists
from biometrics.statuses import SpeakerStatus
from biometrics.store import Database, EnrollmentRecord, Voiceprint, queries
from biometrics.store.database import alembic_config
from biometrics.store.models import Base, VerdictRecord
from tests.conftest import TEST_CIPHER


def test_migrations_build_exactly_the_models_schema(database_url):
    database = Database(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0011"


def test_migrations_downgrade_and_upgrade_again(database_url):
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    assert "speakers" not in sa.inspect(Database(database_url).engine).get_table_names()
    command.upgrade(config, "head")
    assert "speakers" in sa.inspect(Database(database_url).engine).get_table_names()


def test_the_dead_letter_migration_downgrades_to_0008_and_back(database_url):
    config = alembic_config(database_url)
    command.downgrade(config, "0008")
    tables = sa.inspect(Database(database_url).engine).get_table_names()
    assert "webhook_dead_letters" not in tables and "audit_log" in tables
    command.upgrade(config, "head")
    assert "webhook_dead_letters" in sa.inspect(Database(database_url).engine).get_table_names()


def verdict_row(verdict_id: str, speaker_id: str, call_id: str | None = None) -> VerdictRecord:
    return VerdictRecord(
        verdict_id=verdict_id,
        speaker_id=speaker_id,
        call_id=call_id,
        participant_raw_id=None if call_id is None else "4:+1555",
        decision="ACCEPT",
        score=80.0,
        similarity=0.8,
        threshold=30.0,
        calibrated=True,
        speech_seconds=5.0,
        final=True,
        model_source="m",
        model_sha256="0" * 64,
    )


def enrolled_speaker(database: Database, speaker_id: str = "alice") -> None:
    with database.session() as session:
        speaker = queries.create_speaker(session, speaker_id, "Alice", ["+14255550123"])
        speaker.status = SpeakerStatus.ENROLLED
        voiceprint = Voiceprint(model_source="m", speech_seconds=25.0, segment_count=3)
        voiceprint.seal(
            TEST_CIPHER, speaker_id, "0" * 64, np.linspace(-1, 1, 192, dtype=np.float32)
        )
        speaker.voiceprint = voiceprint
        session.flush()
        session.add(
            EnrollmentRecord(
                speaker_pk=speaker.id,
                model_sha256="0" * 64,
                speech_seconds=25.0,
                audio_seconds=30.0,
                segment_count=3,
            )
        )
        session.add(verdict_row("v-alice", speaker_id))


def test_voiceprint_vectors_round_trip_exactly(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        voiceprint = queries.get_speaker(session, "alice").voiceprint
        assert voiceprint.dimension == 192
        assert np.array_equal(
            voiceprint.embedding(TEST_CIPHER, "alice"), np.linspace(-1, 1, 192, dtype=np.float32)
        )


def test_deleting_a_speaker_deletes_everything_of_theirs(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        queries.delete_speaker(session, "alice")
    with database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            count = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            assert count == 0, table.name


def test_rows_deleted_in_sql_cascade_too(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM speakers"))
    with database.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM voiceprints")).scalar() == 0
        assert connection.execute(sa.text("SELECT count(*) FROM speaker_aliases")).scalar() == 0


def test_speaker_ids_and_aliases_are_unique(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with pytest.raises(SpeakerExists, match="already exists"), database.session() as session:
        queries.create_speaker(session, "alice")
    with pytest.raises(SpeakerExists, match=r"\+14255550123"), database.session() as session:
        queries.create_speaker(session, "carol", aliases=["+14255550123"])
    with database.session() as session:
        assert [s.speaker_id for s in queries.list_speakers(session, after=None, limit=10)] == [
            "alice"
        ]


def test_timestamps_read_back_in_utc_on_every_backend(database_url):
    from datetime import UTC, datetime, timedelta, timezone

    database = Database(database_url)
    enrolled_speaker(database)
    # Written with an offset of +05:30: it must come back as the same instant, in UTC.
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with database.session() as session:
        queries.get_speaker(session, "alice").expires_at = moment
    with database.session() as session:
        speaker = queries.get_speaker(session, "alice")
        assert speaker.created_at.utcoffset() == timedelta(0)
        assert speaker.expires_at == moment
        assert speaker.expires_at.utcoffset() == timedelta(0)
        assert speaker.expires_at == datetime(2030, 1, 1, 21, 34, 5, tzinfo=UTC)


def save_calibration(session: Session, calibration: queries.StoredCalibration) -> None:
    queries.save_calibration(
        session,
        "a" * 64,
        calibration,
        description="dev folder",
        eer=0.01,
        target_trials=300,
        nontarget_trials=3000,
    )


def test_cohort_and_calibration_round_trip_through_the_store(database_url):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calibration = queries.StoredCalibration(42.5, -12.25, True, {0.01: 71.5, 0.001: 93.0})
    database = Database(database_url)
    with database.session() as session:
        queries.save_cohort(session, TEST_CIPHER, "a" * 64, vectors, 7, "cohort folder")
        save_calibration(session, calibration)
    with database.session() as session:  # saving again replaces, never duplicates
        queries.save_cohort(session, TEST_CIPHER, "a" * 64, vectors[:10], 5, "cohort folder")
    with database.session() as session:
        cohort = queries.load_cohort(session, TEST_CIPHER, "a" * 64)
        loaded = queries.load_calibration(session, "a" * 64)
        assert queries.load_cohort(session, TEST_CIPHER, "b" * 64) is None
        assert queries.load_calibration(session, "b" * 64) is None
        assert session.scalar(sa.text("SELECT count(*) FROM score_cohorts")) == 1
    assert cohort is not None and np.array_equal(cohort.embeddings, vectors[:10])
    assert cohort.top_n == 5
    assert loaded == calibration


def test_deleting_a_speaker_deletes_every_verdict_on_them(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        session.add(verdict_row("v-call", "alice", call_id="c1"))
        session.add(verdict_row("v-other", "someone-else", call_id="c1"))
    with database.session() as session:
        queries.delete_speaker(session, "alice")
    with database.engine.connect() as connection:
        remaining = connection.execute(sa.text("SELECT verdict_id FROM verdicts")).all()
    assert [row.verdict_id for row in remaining] == ["v-other"]


def test_the_verdict_history_migration_keeps_both_old_histories(tmp_path):
    """A database at revision 0003, with a REST verification and a live-call verdict,
    upgrades to one history holding both."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0003")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO speakers (id, speaker_id, status, created_at, updated_at) "
                "VALUES (1, 'alice', 'ENROLLED', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO verification_records (speaker_pk, model_source, model_sha256, "
                "decision, score, similarity, threshold, speech_seconds, created_at) "
                "VALUES (1, 'm', :sha, 'ACCEPT', 91.0, 0.61, 42.0, 6.5, '2026-01-02')"
            ),
            {"sha": "0" * 64},
        )
        connection.execute(
            sa.text(
                "INSERT INTO calls (id, call_id, status, sockets, counters, created_at, "
                "updated_at) VALUES (1, 'c1', 'ENDED', 1, '{}', '2026-01-03', '2026-01-03')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO call_participants (id, call_pk, raw_id, frames, speech_seconds, "
                "updated_at) VALUES (1, 1, 'mixed', 10, 3.0, '2026-01-03')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO call_verdicts (verdict_id, participant_pk, speaker_id, decision, "
                "calibrated, speech_seconds, final, model_source, model_sha256, created_at) "
                "VALUES ('v-live', 1, 'alice', 'REJECT', 1, 3.0, 1, 'm', :sha, '2026-01-03')"
            ),
            {"sha": "0" * 64},
        )
    engine.dispose()
    command.upgrade(config, "head")
    database = Database(url)
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT speaker_id, call_id, participant_raw_id, decision, score, threshold "
                "FROM verdicts ORDER BY created_at"
            )
        ).all()
        mixed = connection.execute(sa.text("SELECT mixed FROM call_participants")).scalar()
    database.dispose()
    assert [tuple(row) for row in rows] == [
        ("alice", None, None, "ACCEPT", 91.0, 42.0),
        ("alice", "c1", "mixed", "REJECT", None, None),
    ]
    assert mixed


def test_a_duration_aware_calibration_round_trips_through_the_store(database_url):
    duration = {
        "reference_seconds": 3.0,
        "mean": [0.2, 0.05],
        "log_spread": [-2.5, -0.1],
        "seconds_range": [2.0, None],
    }
    calibration = queries.StoredCalibration(
        1.8, -4.0, False, {0.01: 71.5}, format=2, duration=duration
    )
    database = Database(database_url)
    with database.session() as session:
        save_calibration(session, calibration)
    with database.session() as session:
        assert queries.load_calibration(session, "a" * 64) == calibration


def test_calibrations_stored_before_0011_load_as_format_1(database_url):
    """A row written at 0010, before calibrations had a format, reads after the upgrade as
    the duration-blind map it was fitted as."""
    config = alembic_config(database_url)
    command.downgrade(config, "0010")
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO score_calibrations (model_sha256, slope, intercept, normalized, "
                "thresholds, description, eer, target_trials, nontarget_trials, created_at) "
                "VALUES (:sha, 42.0, -15.0, false, :thresholds, 'old', 0.02, 10, 30, "
                "'2026-01-01')"
            ),
            {"sha": "c" * 64, "thresholds": '{"0.01": 40.0}'},
        )
    database.dispose()
    command.upgrade(config, "head")
    database = Database(database_url)
    with database.session() as session:
        loaded = queries.load_calibration(session, "c" * 64)
    database.dispose()
    assert loaded == queries.StoredCalibration(42.0, -15.0, False, {0.01: 40.0})
    assert loaded.format == 1 and loaded.duration is None
