"""biometrics.store.vault on a real database (SQLite and PostgreSQL): nothing of a vector
in the raw rows, a wrong key refused at start, plain rows of an older database encrypted,
and rotation to a new key, resumable and score-preserving."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from biometrics.app import create_app
from biometrics.enrollment import Enroller
from biometrics.errors import ConfigError, VoiceprintUnreadable
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database, queries
from biometrics.store.crypto import OVERHEAD, Cipher, Key, KeyRing, load_keyring
from biometrics.store.database import alembic_config
from biometrics.store.vault import Progress, open_vault, reencrypt
from biometrics.store.verdicts import VerdictHistory
from biometrics.verification import VerificationPolicy, VerificationService
from tests.conftest import TEST_CIPHER
from tests.streaming.fakes import IDENTITY, FakeWorker
from tests.test_verification import speech

VECTORS = {
    f"speaker-{index}": np.array(direction, dtype=np.float32) / np.linalg.norm(direction)
    for index, direction in enumerate(
        [(1, 0, 0, 0), (1, 1, 0, 0), (0, 1, 1, 0), (1, 2, 3, 4), (4, 3, 2, 1)]
    )
}
COHORT = (np.eye(4)[[0, 1, 2, 3, 0, 1]] * 0.5 + 0.25).astype(np.float32)


@pytest.fixture
def database(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def enroll_all(database: Database, cipher: Cipher) -> None:
    worker = FakeWorker()
    enroller = Enroller(database, cipher, worker, min_enroll_speech_seconds=3.0)  # type: ignore[arg-type]
    for speaker_id, vector in VECTORS.items():
        worker.vector = vector
        asyncio.run(enroller.enroll(speaker_id, speech(4.0)))
    with database.session() as session:
        queries.save_cohort(session, cipher, IDENTITY.checkpoint_sha256, COHORT, 3, "cohort")


def raw(database: Database, sql: str) -> list[sa.Row]:
    with database.engine.connect() as connection:
        return list(connection.execute(sa.text(sql)))


def score(database: Database, cipher: Cipher, speaker_id: str, vector: np.ndarray) -> float:
    worker = FakeWorker()
    worker.vector = vector
    verifier = VerificationService(
        database,
        cipher,
        worker,  # type: ignore[arg-type]
        Scorer(fixed_threshold=40.0),
        VerificationPolicy(min_speech_seconds=3.0, min_snr_db=3.0, max_clipping_ratio=0.01),
        VerdictHistory(database),
    )
    verdict = asyncio.run(verifier.verify(speaker_id, speech(4.0)))
    assert verdict.score is not None
    return verdict.score


def test_the_raw_rows_hold_no_vector_only_nonce_ciphertext_and_tag(database):
    enroll_all(database, TEST_CIPHER)
    voiceprints = raw(database, "SELECT vector, key_id, dimension FROM voiceprints")
    assert len(voiceprints) == len(VECTORS)
    for row in voiceprints:
        assert row.key_id == TEST_CIPHER.key_id and row.dimension == 4
        assert len(row.vector) == 4 * 4 + OVERHEAD
        for vector in VECTORS.values():
            assert vector.astype("<f4").tobytes() not in bytes(row.vector)
    [cohort] = raw(database, "SELECT vectors, key_id FROM score_cohorts")
    assert cohort.key_id == TEST_CIPHER.key_id and len(cohort.vectors) == COHORT.nbytes + OVERHEAD
    assert COHORT[0].astype("<f4").tobytes() not in bytes(cohort.vectors)
    with database.session() as session:
        claim = queries.load_claim(session, TEST_CIPHER, "speaker-3")
        stored = queries.load_cohort(session, TEST_CIPHER, IDENTITY.checkpoint_sha256)
    assert claim is not None and np.allclose(claim.voiceprint, VECTORS["speaker-3"], atol=1e-6)
    assert stored is not None and np.array_equal(stored.embeddings, COHORT)


def test_the_real_embedding_of_an_api_enrollment_is_not_in_its_row(client, settings):
    from tests.api.helpers import enroll

    assert enroll(client, "alice", seconds=10.0).status_code == 201
    database = Database(settings.database_url)
    [row] = raw(database, "SELECT vector, dimension FROM voiceprints")
    with database.session() as session:
        claim = queries.load_claim(session, TEST_CIPHER, "alice")
    database.dispose()
    assert claim is not None and claim.voiceprint is not None
    embedding = claim.voiceprint.astype("<f4").tobytes()
    assert len(row.vector) == len(embedding) + OVERHEAD == 4 * row.dimension + OVERHEAD
    assert embedding not in bytes(row.vector)
    assert embedding[:16] not in bytes(row.vector)  # not even its first four floats


def test_a_vector_copied_to_another_speaker_or_model_does_not_decrypt(database):
    enroll_all(database, TEST_CIPHER)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE voiceprints SET vector = (SELECT v.vector FROM voiceprints v "
                "JOIN speakers s ON s.id = v.speaker_pk WHERE s.speaker_id = 'speaker-0') "
                "WHERE speaker_pk = (SELECT id FROM speakers WHERE speaker_id = 'speaker-1')"
            )
        )
        connection.execute(
            sa.text(
                "UPDATE voiceprints SET model_sha256 = :other "
                "WHERE speaker_pk = (SELECT id FROM speakers WHERE speaker_id = 'speaker-2')"
            ),
            {"other": "f" * 64},
        )
    with database.session() as session:
        assert queries.load_claim(session, TEST_CIPHER, "speaker-0") is not None
        for speaker_id in ("speaker-1", "speaker-2"):
            with pytest.raises(VoiceprintUnreadable) as refused:
                queries.load_claim(session, TEST_CIPHER, speaker_id)
            assert refused.value.detail == (
                f"the voiceprint of speaker {speaker_id!r} does not decrypt under key "
                f"{TEST_CIPHER.key_id}: it was sealed for another speaker or model, or altered"
            )


def test_a_wrong_key_stops_the_start_naming_the_key(database, settings, encoder):
    enroll_all(database, TEST_CIPHER)
    open_vault(database, TEST_CIPHER)
    wrong = Key.generate()
    with pytest.raises(ConfigError) as refused:
        open_vault(database, Cipher(KeyRing(wrong)))
    message = refused.value.detail
    assert f"voiceprints are encrypted under key {TEST_CIPHER.key_id}, which is not" in message
    assert f"the configured keys are {wrong.key_id}" in message
    assert "BIOMETRICS_ENCRYPTION_OLD_KEYS" in message
    with pytest.raises(ConfigError, match=TEST_CIPHER.key_id):
        create_app(dataclasses.replace(settings, encryption_key=wrong.encoded()), encoder=encoder)
    open_vault(database, TEST_CIPHER)  # the right key still starts


def test_a_key_that_does_not_open_its_check_value_stops_the_start(database):
    open_vault(database, TEST_CIPHER)  # registers the key's check value
    impostor = Cipher(KeyRing(Key(TEST_CIPHER.key_id, Key.generate().secret)))
    with pytest.raises(ConfigError, match=f"encryption key {TEST_CIPHER.key_id} does not open"):
        open_vault(database, impostor)
    [row] = raw(database, "SELECT key_id, check_value FROM encryption_keys")
    assert row.key_id == TEST_CIPHER.key_id and TEST_CIPHER.checks(row.key_id, row.check_value)


def test_rotation_is_resumable_and_keeps_every_score(database):
    enroll_all(database, TEST_CIPHER)
    before = {sid: score(database, TEST_CIPHER, sid, VECTORS["speaker-3"]) for sid in VECTORS}
    stamped = raw(database, "SELECT speaker_pk, updated_at FROM voiceprints ORDER BY speaker_pk")
    new = Key.generate()
    rotated = open_vault(database, Cipher(KeyRing(new, (TEST_CIPHER.keyring.current,))))

    seen: list[Progress] = []

    def interrupt(progress: Progress) -> None:
        seen.append(progress)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reencrypt(database, rotated, batch_size=2, report=interrupt)
    assert seen == [Progress("voiceprints", 2, 5)]
    keys = [row.key_id for row in raw(database, "SELECT key_id FROM voiceprints")]
    assert sorted(keys) == sorted([new.key_id] * 2 + [TEST_CIPHER.key_id] * 3)

    seen.clear()
    done = reencrypt(database, rotated, batch_size=2, report=seen.append)
    assert (done.voiceprints, done.cohorts) == (3, 1)
    assert seen == [
        Progress("voiceprints", 2, 3),
        Progress("voiceprints", 3, 3),
        Progress("cohorts", 1, 1),
    ]
    for table in ("voiceprints", "score_cohorts"):
        assert {row.key_id for row in raw(database, f"SELECT key_id FROM {table}")} == {new.key_id}
    assert reencrypt(database, rotated).voiceprints == 0  # nothing left to do

    alone = open_vault(database, Cipher(KeyRing(new)))  # the old key is no longer needed
    after = {sid: score(database, alone, sid, VECTORS["speaker-3"]) for sid in VECTORS}
    assert after == before
    with database.session() as session:
        cohort = queries.load_cohort(session, alone, IDENTITY.checkpoint_sha256)
    assert cohort is not None and np.array_equal(cohort.embeddings, COHORT)
    assert raw(database, "SELECT speaker_pk, updated_at FROM voiceprints ORDER BY speaker_pk") == (
        stamped
    )


def test_plain_vectors_of_an_older_database_are_encrypted_at_start(database_url):
    config = alembic_config(database_url)
    command.downgrade(config, "0005")
    database = Database(database_url)
    vector = np.array([0.6, 0.8, 0.0, 0.0], dtype="<f4")
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO speakers (id, speaker_id, status, created_at, updated_at) "
                "VALUES (1, 'old', 'ENROLLED', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO voiceprints (speaker_pk, model_source, model_sha256, dimension, "
                "vector, speech_seconds, segment_count, created_at, updated_at) VALUES "
                "(1, 'm', :sha, 4, :vector, 30, 3, '2026-01-01', '2026-01-01')"
            ),
            {"sha": IDENTITY.checkpoint_sha256, "vector": vector.tobytes()},
        )
        connection.execute(
            sa.text(
                "INSERT INTO score_cohorts (model_sha256, description, size, dimension, "
                "vectors, top_n, created_at) VALUES (:sha, 'c', 6, 4, :vectors, 3, '2026-01-01')"
            ),
            {"sha": IDENTITY.checkpoint_sha256, "vectors": COHORT.astype("<f4").tobytes()},
        )
    command.upgrade(config, "head")
    assert [row.key_id for row in raw(database, "SELECT key_id FROM voiceprints")] == [None]

    open_vault(database, TEST_CIPHER)
    [row] = raw(database, "SELECT vector, key_id FROM voiceprints")
    [cohort_row] = raw(database, "SELECT vectors, key_id FROM score_cohorts")
    assert row.key_id == cohort_row.key_id == TEST_CIPHER.key_id
    assert vector.tobytes() not in bytes(row.vector) and len(row.vector) == 16 + OVERHEAD
    with database.session() as session:
        claim = queries.load_claim(session, TEST_CIPHER, "old")
        cohort = queries.load_cohort(session, TEST_CIPHER, IDENTITY.checkpoint_sha256)
    database.dispose()
    assert claim is not None and np.array_equal(claim.voiceprint, vector)
    assert cohort is not None and np.array_equal(cohort.embeddings, COHORT)


def test_the_quick_start_makes_a_key_file_beside_sqlite_and_postgresql_needs_a_key(
    settings, encoder, tmp_path
):
    quick = dataclasses.replace(settings, encryption_key=None)
    if not settings.database_url.startswith("sqlite"):
        with pytest.raises(ConfigError, match="set BIOMETRICS_ENCRYPTION_KEY"):
            create_app(quick, encoder=encoder)
        return
    create_app(quick, encoder=encoder)
    path = tmp_path / "biometrics.db.key"
    assert path.stat().st_mode & 0o777 == 0o600
    create_app(quick, encoder=encoder)  # the next start reads the same key
    made = load_keyring(None, None, [], settings.database_url).current
    database = Database(settings.database_url)
    assert [row.key_id for row in raw(database, "SELECT key_id FROM encryption_keys")] == [
        made.key_id
    ]
    database.dispose()


def test_verifying_against_a_copied_voiceprint_is_a_clear_error_not_a_score(client, settings):
    from tests.api.helpers import enroll, verify

    for speaker_id in ("alice", "bob"):
        assert enroll(client, speaker_id, seconds=10.0).status_code == 201
    database = Database(settings.database_url)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE voiceprints SET vector = (SELECT v.vector FROM voiceprints v "
                "JOIN speakers s ON s.id = v.speaker_pk WHERE s.speaker_id = 'alice') "
                "WHERE speaker_pk = (SELECT id FROM speakers WHERE speaker_id = 'bob')"
            )
        )
    database.dispose()
    assert verify(client, "alice").status_code == 200
    refused = verify(client, "bob")
    assert refused.status_code == 500
    assert refused.json()["error"] == "voiceprint_unreadable"
    assert "the voiceprint of speaker 'bob' does not decrypt" in refused.json()["detail"]
