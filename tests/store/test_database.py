import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from biometrics.errors import SpeakerExists
from biometrics.store import (
    Database,
    EnrollmentRecord,
    SpeakerStatus,
    VerificationRecord,
    Voiceprint,
    queries,
)
from biometrics.store.database import alembic_config
from biometrics.store.models import Base


def test_migrations_build_exactly_the_models_schema(database_url):
    database = Database(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0003"


def test_migrations_downgrade_and_upgrade_again(database_url):
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    assert "speakers" not in sa.inspect(Database(database_url).engine).get_table_names()
    command.upgrade(config, "head")
    assert "speakers" in sa.inspect(Database(database_url).engine).get_table_names()


def enrolled_speaker(database: Database, speaker_id: str = "alice") -> None:
    with database.session() as session:
        speaker = queries.create_speaker(session, speaker_id, "Alice", ["+14255550123"])
        speaker.status = SpeakerStatus.ENROLLED
        voiceprint = Voiceprint(
            model_source="m", model_sha256="0" * 64, speech_seconds=25.0, segment_count=3
        )
        voiceprint.embedding = np.linspace(-1, 1, 192, dtype=np.float32)
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
        session.add(
            VerificationRecord(
                speaker_pk=speaker.id,
                model_source="m",
                model_sha256="0" * 64,
                decision="ACCEPT",
                score=80.0,
                similarity=0.8,
                threshold=30.0,
                speech_seconds=5.0,
            )
        )


def test_voiceprint_vectors_round_trip_exactly(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        voiceprint = queries.get_speaker(session, "alice").voiceprint
        assert voiceprint.dimension == 192
        assert np.array_equal(voiceprint.embedding, np.linspace(-1, 1, 192, dtype=np.float32))


def test_deleting_a_speaker_deletes_everything_of_theirs(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        session.delete(queries.get_speaker(session, "alice"))
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


def test_timestamps_are_timezone_aware(database_url):
    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        speaker = queries.get_speaker(session, "alice")
        assert speaker.created_at.utcoffset() is not None


def test_cohort_and_calibration_round_trip_through_the_store(database_url):
    from biometrics.scoring.calibration import fit
    from biometrics.scoring.normalization import Cohort

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    cohort = Cohort(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), top_n=7)
    calibration = fit(rng.normal(0.6, 0.1, 300), rng.normal(0.1, 0.1, 3000), normalized=True)
    database = Database(database_url)
    with database.session() as session:
        queries.save_cohort(session, "a" * 64, cohort, "cohort folder")
        queries.save_calibration(
            session,
            "a" * 64,
            calibration,
            description="dev folder",
            eer=0.01,
            target_trials=300,
            nontarget_trials=3000,
        )
    with database.session() as session:  # saving again replaces, never duplicates
        queries.save_cohort(session, "a" * 64, cohort, "cohort folder")
    with database.session() as session:
        scorer = queries.load_scorer(session, "a" * 64, target_far=0.01, fixed_threshold=None)
        other = queries.load_scorer(session, "b" * 64, target_far=0.01, fixed_threshold=None)
    assert np.array_equal(scorer.cohort.embeddings, cohort.embeddings)
    assert scorer.cohort.top_n == 7
    assert scorer.calibration == calibration
    assert scorer.normalizing
    assert other.cohort is None and other.calibration is None


def test_deleting_a_speaker_deletes_the_live_call_verdicts_on_them(database_url):
    from biometrics.store.models import Call, CallParticipant, CallStatus, CallVerdict

    database = Database(database_url)
    enrolled_speaker(database)
    with database.session() as session:
        call = Call(call_id="c1", status=CallStatus.ENDED, sockets=1, counters={})
        participant = CallParticipant(raw_id="4:+1555", frames=10, speech_seconds=3.0)
        call.participants.append(participant)
        for index, speaker_id in enumerate(("alice", "someone-else")):
            participant.verdicts.append(
                CallVerdict(
                    verdict_id=f"v{index}",
                    speaker_id=speaker_id,
                    decision="ACCEPT",
                    calibrated=True,
                    speech_seconds=3.0,
                    final=True,
                    model_source="m",
                    model_sha256="0" * 64,
                )
            )
        session.add(call)
    with database.session() as session:
        queries.delete_speaker(session, "alice")
    with database.engine.connect() as connection:
        remaining = connection.execute(sa.text("SELECT speaker_id FROM call_verdicts")).all()
    assert [row.speaker_id for row in remaining] == ["someone-else"]
