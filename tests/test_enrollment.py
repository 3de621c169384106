"""biometrics.enrollment: speech pooled into a voiceprint until ENROLLED, on a real database
(SQLite and PostgreSQL) with a stand-in model whose embedding each test chooses."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from biometrics.audio import DetectedSpeech
from biometrics.audio.quality import Quality
from biometrics.enrollment import Enroller
from biometrics.errors import InsufficientSpeech, ModelMismatch, SpeakerOptedOut
from biometrics.statuses import SpeakerStatus
from biometrics.store import Database, EnrollmentRecord, queries
from tests.conftest import TEST_CIPHER
from tests.streaming.fakes import FakeWorker


def speech(seconds: float) -> DetectedSpeech:
    samples = np.full(round(seconds * 16_000), 0.1, dtype=np.float32)
    return DetectedSpeech(samples, Quality(seconds, 0.0, 30.0), seconds + 2.0)


@pytest.fixture
def parts(database_url):
    database = Database(database_url)
    worker = FakeWorker()
    enroller = Enroller(database, TEST_CIPHER, worker, min_enroll_speech_seconds=10.0)  # type: ignore[arg-type]
    yield enroller, worker, database
    database.dispose()


def test_uploads_accumulate_into_one_voiceprint_until_enrolled(parts):
    enroller, worker, database = parts
    worker.vector = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    first = asyncio.run(enroller.enroll("ada", speech(6.0)))
    worker.vector = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    second = asyncio.run(enroller.enroll("ada", speech(4.0)))
    assert (first.status, first.remaining_speech_seconds) == (SpeakerStatus.PENDING_ENROLLMENT, 4.0)
    assert (second.status, second.enrolled_speech_seconds) == (SpeakerStatus.ENROLLED, 10.0)
    with database.session() as session:
        voiceprint = queries.get_speaker(session, "ada").voiceprint
        records = session.query(EnrollmentRecord).order_by(EnrollmentRecord.id).all()
        assert voiceprint is not None and voiceprint.segment_count == 2
        # Weighted by speech: 6 s of the first direction, 4 s of the second.
        expected = np.array([0.6, 0.4, 0.0, 0.0]) / np.linalg.norm([0.6, 0.4])
        assert np.allclose(voiceprint.embedding(TEST_CIPHER, "ada"), expected, atol=1e-6)
        assert [(r.speech_seconds, r.audio_seconds) for r in records] == [(6.0, 8.0), (4.0, 6.0)]


def test_replace_starts_over(parts):
    enroller, _, _ = parts
    asyncio.run(enroller.enroll("ada", speech(12.0)))
    replaced = asyncio.run(enroller.enroll("ada", speech(3.0), replace=True))
    assert (replaced.status, replaced.enrolled_speech_seconds) == (
        SpeakerStatus.PENDING_ENROLLMENT,
        3.0,
    )


def test_refusals_leave_the_voiceprint_as_it_was(parts):
    enroller, worker, database = parts
    with pytest.raises(InsufficientSpeech):
        asyncio.run(enroller.enroll("ada", speech(0.5)))
    with database.session() as session:
        assert queries.find_speaker(session, "ada") is None
        queries.create_speaker(session, "gone", status=SpeakerStatus.OPTED_OUT)
    with pytest.raises(SpeakerOptedOut):
        asyncio.run(enroller.enroll("gone", speech(5.0)))
    asyncio.run(enroller.enroll("ada", speech(5.0)))
    worker.identity = type(worker.identity)("other-model", "f" * 64)
    with pytest.raises(ModelMismatch, match="replace=true"):
        asyncio.run(enroller.enroll("ada", speech(5.0)))
    with database.session() as session:
        voiceprint = queries.get_speaker(session, "ada").voiceprint
        assert voiceprint is not None and voiceprint.speech_seconds == 5.0


def test_concurrent_uploads_of_one_speaker_all_count(parts):
    enroller, _, database = parts

    async def together():
        await asyncio.gather(*(enroller.enroll("ada", speech(2.0)) for _ in range(5)))

    asyncio.run(together())
    with database.session() as session:
        voiceprint = queries.get_speaker(session, "ada").voiceprint
        assert voiceprint is not None and voiceprint.speech_seconds == 10.0
        assert queries.get_speaker(session, "ada").status is SpeakerStatus.ENROLLED
