"""biometrics.verification: the one verification service, on a real database (SQLite and
PostgreSQL) with a stand-in model whose embedding each test chooses."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import biometrics
from biometrics.audio import DetectedSpeech
from biometrics.audio.quality import Quality
from biometrics.clock import utcnow
from biometrics.embedding import Urgency
from biometrics.scoring.calibration import FOLDER_FILE, read_json
from biometrics.scoring.scorer import Scorer
from biometrics.statuses import Decision, SpeakerStatus
from biometrics.store import Database, Voiceprint, queries
from biometrics.store.verdicts import VerdictHistory
from biometrics.verdicts import CallParticipantRef, Verdict
from biometrics.verification import LiveSpeech, VerificationPolicy, VerificationService
from tests.conftest import TEST_CIPHER
from tests.streaming.fakes import IDENTITY, UNIT, FakeWorker

BUNDLED_CALIBRATION = Path(biometrics.__file__).parent / "models" / "ecapa-distilled" / FOLDER_FILE


def speech(seconds: float, snr_db: float = 30.0, clipping: float = 0.0) -> DetectedSpeech:
    samples = np.full(round(seconds * 16_000), 0.1, dtype=np.float32)
    return DetectedSpeech(samples, Quality(seconds, clipping, snr_db), seconds + 1.0)


@dataclasses.dataclass
class Service:
    verifier: VerificationService
    worker: FakeWorker
    database: Database
    history: VerdictHistory
    audited: list[Verdict]

    def add(self, speaker_id: str, sha256: str = IDENTITY.checkpoint_sha256, **fields) -> None:
        with self.database.session() as session:
            speaker = queries.create_speaker(session, speaker_id, **fields)
            speaker.status = SpeakerStatus.ENROLLED
            voiceprint = Voiceprint(model_source="m", speech_seconds=30.0, segment_count=3)
            voiceprint.seal(TEST_CIPHER, speaker_id, sha256, UNIT)
            speaker.voiceprint = voiceprint

    def verify(self, speaker_id: str | None, heard: DetectedSpeech, **options) -> Verdict:
        return asyncio.run(self.verifier.verify(speaker_id, heard, **options))


@pytest.fixture
def service(database_url):
    database = Database(database_url)
    worker = FakeWorker()
    history = VerdictHistory(database)
    audited: list[Verdict] = []
    verifier = VerificationService(
        database,
        TEST_CIPHER,
        worker,  # type: ignore[arg-type]
        Scorer(fixed_threshold=40.0),
        VerificationPolicy(
            min_speech_seconds=3.0,
            min_snr_db=3.0,
            max_clipping_ratio=0.01,
            lockout_failures=3,
            lockout_window_seconds=900.0,
        ),
        history,
        audit=lambda verdict, origin: audited.append(verdict),
    )
    yield Service(verifier, worker, database, history, audited)
    database.dispose()


def test_a_match_is_accepted_recorded_audited_and_touches_the_speaker(service):
    service.add("alice")
    verdict = service.verify("alice", speech(4.0))
    assert (verdict.decision, verdict.score, verdict.threshold) == (Decision.ACCEPT, 100.0, 40.0)
    assert verdict.similarity == pytest.approx(1.0) and verdict.final
    assert verdict.participant is None and verdict.speech_seconds == 4.0
    assert service.worker.embedded == [64_000]
    assert service.worker.urgencies == [Urgency.REST]
    assert verdict.detail is None
    assert service.audited == [verdict]
    assert service.history.of_speaker("alice", 10) == [verdict]
    with service.database.session() as session:
        assert queries.get_speaker(session, "alice").last_accessed_at is not None


def test_a_poor_match_is_rejected_and_the_request_threshold_wins(service):
    service.add("alice")
    service.worker.vector = np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32)
    assert service.verify("alice", speech(4.0)).decision is Decision.ACCEPT  # 60 >= 40
    lenient = service.verify("alice", speech(4.0), threshold=60.0)
    strict = service.verify("alice", speech(4.0), threshold=60.01)
    assert (lenient.decision, lenient.score) == (Decision.ACCEPT, 60.0)
    assert (strict.decision, strict.score) == (Decision.REJECT, 60.0)


@pytest.mark.parametrize(
    ("heard", "decision", "issues"),
    [
        (speech(2.0), Decision.NOT_ENOUGH_SPEECH, ()),
        (speech(5.0, snr_db=1.0), Decision.POOR_AUDIO_QUALITY, ("LOW_SNR",)),
        (speech(5.0, clipping=0.2), Decision.POOR_AUDIO_QUALITY, ("CLIPPING",)),
    ],
)
def test_speech_that_cannot_be_judged_is_never_embedded(service, heard, decision, issues):
    service.add("alice")
    verdict = service.verify("alice", heard)
    assert (verdict.decision, verdict.score, verdict.similarity) == (decision, None, None)
    assert verdict.quality is not None and verdict.quality.issues == issues
    assert service.worker.embedded == []
    assert service.history.of_speaker("alice", 10) == [verdict]


def test_claims_that_cannot_be_judged(service):
    service.add("expired", expires_at=utcnow() + timedelta(milliseconds=1))
    service.add("old-model", sha256="f" * 64)
    with service.database.session() as session:
        queries.create_speaker(session, "pending")
        queries.create_speaker(session, "gone", status=SpeakerStatus.OPTED_OUT)
    asyncio.run(asyncio.sleep(0.01))
    decisions = {
        speaker_id: service.verify(speaker_id, speech(5.0)).decision
        for speaker_id in ("nobody", "pending", "gone", "expired", "old-model")
    }
    assert decisions == {
        "nobody": Decision.SPEAKER_NOT_ENROLLED,
        "pending": Decision.SPEAKER_NOT_ENROLLED,
        "gone": Decision.SPEAKER_OPTED_OUT,
        "expired": Decision.SPEAKER_EXPIRED,
        "old-model": Decision.SPEAKER_NOT_ENROLLED,
    }
    assert service.worker.embedded == []
    unclaimed = service.verify(None, speech(5.0))
    assert (unclaimed.decision, unclaimed.threshold) == (Decision.SPEAKER_ID_NOT_PROVIDED, None)


def test_a_live_verdict_says_whose_speech_it_judged(service):
    service.add("alice")
    participant = CallParticipantRef("call-1", "4:+14255550123")
    now = utcnow()
    live = LiveSpeech(participant, now - timedelta(seconds=5), now, final=False)
    verdict = service.verify("alice", speech(4.0), live=live)
    assert verdict.participant == participant and verdict.final is False
    assert (verdict.first_audio_at, verdict.last_audio_at) == (live.first_audio_at, now)
    assert service.history.of_participant("call-1", "4:+14255550123", 10) == [verdict]
    assert service.worker.urgencies == [Urgency.LIVE]  # ahead of REST and bulk work


def test_a_live_verdict_the_model_served_late_says_so_and_is_still_scored(service):
    service.add("alice")
    service.worker.delay = "delayed 850 ms: inference busy"
    live = LiveSpeech(CallParticipantRef("call-1", "4:+1"), None, None, final=False)
    verdict = service.verify("alice", speech(4.0), live=live)
    assert (verdict.decision, verdict.detail) == (Decision.ACCEPT, "delayed 850 ms: inference busy")
    assert verdict.as_dict()["detail"] == "delayed 850 ms: inference busy"


def test_repeated_failures_lock_a_speaker_out_until_a_success_or_the_window(service):
    service.add("alice")
    service.worker.vector = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)  # an impostor
    failures = [service.verify("alice", speech(4.0)) for _ in range(3)]
    assert [(v.decision, v.locked_until) for v in failures] == [(Decision.REJECT, None)] * 3
    locked = service.verify("alice", speech(4.0))
    assert (locked.decision, locked.score) == (Decision.REJECT, None)
    assert locked.locked_until is not None and "locked out" in (locked.detail or "")
    assert abs(locked.locked_until - (failures[0].created_at + timedelta(minutes=15))) < timedelta(
        seconds=1
    )
    service.worker.vector = UNIT  # even the genuine voice waits: nothing is scored meanwhile
    assert service.verify("alice", speech(4.0)).score is None
    assert len(service.worker.embedded) == 3
    with service.database.session() as session:  # an admin clears it
        queries.get_speaker(session, "alice").lockout_cleared_at = utcnow()
    assert service.verify("alice", speech(4.0)).decision is Decision.ACCEPT


def test_a_live_participant_counts_as_one_attempt_however_many_verdicts(service):
    service.add("alice")
    service.worker.vector = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    for raw_id in ("4:+1", "4:+2"):
        for step in range(5):  # verdicts at each step of one caller's speech
            live = LiveSpeech(CallParticipantRef("call-1", raw_id), None, None, final=step == 4)
            verdict = service.verify("alice", speech(4.0), live=live)
            assert verdict.locked_until is None and verdict.score is not None
    # Two attempts so far (one per caller); one upload more makes three, then locked.
    assert service.verify("alice", speech(4.0)).locked_until is None
    assert service.verify("alice", speech(4.0)).locked_until is not None


def test_the_shipped_calibration_reads_a_score_by_the_speech_it_came_from(service):
    """The same cosine is stronger evidence from 3 s than from 10 s (impostors score
    higher on long tests), so one threshold can accept the first and reject the second."""
    shipped = read_json(BUNDLED_CALIBRATION)
    threshold = shipped.threshold_for_far(0.01)
    grid = np.linspace(0.0, 1.0, 10_001)
    at_3 = grid[np.argmax(shipped.score(grid, 3.0) >= threshold)]
    at_10 = grid[np.argmax(shipped.score(grid, 10.0) >= threshold)]
    assert at_3 < at_10
    cosine = (at_3 + at_10) / 2
    service.verifier.scorer = Scorer(calibration=shipped)
    service.add("alice")
    service.worker.vector = np.array([cosine, np.sqrt(1 - cosine**2), 0, 0], dtype=np.float32)
    short, long = service.verify("alice", speech(3.0)), service.verify("alice", speech(10.0))
    assert short.threshold == long.threshold == round(threshold, 2)
    assert short.score == pytest.approx(float(shipped.score(cosine, 3.0)), abs=0.01)
    assert long.score == pytest.approx(float(shipped.score(cosine, 10.0)), abs=0.01)
    assert (short.decision, long.decision) == (Decision.ACCEPT, Decision.REJECT)
