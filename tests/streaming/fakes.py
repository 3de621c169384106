"""A live call with the real verification service around it, and stand-ins only where a test
must decide what happens: a detector that hears any loud frame as speech, a model that
embeds every speech as one chosen vector (and can be held, or made to fail), an enroller
that counts what it is given, and an event sink that records. Speakers and verdicts live in
a real SQLite database, so the decision ladder, the history and ``last_accessed_at`` are
the service's own."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from biometrics.audio import DetectedSpeech, SpeechDetector
from biometrics.embedding import ModelIdentity, Urgency
from biometrics.embedding.pooling import SpeechEmbedding
from biometrics.enrollment import EnrollmentResult
from biometrics.events.call_events import CallEvent, VerdictChanged
from biometrics.scoring.scorer import Scorer
from biometrics.statuses import SpeakerStatus
from biometrics.store import Database, Voiceprint, queries
from biometrics.store.models import Base
from biometrics.store.verdicts import VerdictHistory
from biometrics.streaming.call import CallSession
from biometrics.streaming.participant import CallServices
from biometrics.streaming.protocol import AudioFrame
from biometrics.streaming.schedule import DecisionSchedule
from biometrics.verdicts import Verdict
from biometrics.verification import VerificationPolicy, VerificationService
from tests.conftest import TEST_CIPHER

START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)
IDENTITY = ModelIdentity("fake-model", "0" * 64)
UNIT = np.eye(4, dtype=np.float32)[0]
SPEECH_FRAME = np.full(320, 3000, dtype="<i2").tobytes()  # 20 ms at 16 kHz
SILENT_FRAME = bytes(640)


class LoudnessDetector(SpeechDetector):
    """Any frame with sound is speech: tests decide exactly how much speech there is."""

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(np.abs(frame).max() > 0.01)


class FakeWorker:
    """Embeds any speech as one vector; ``gate`` (when set) holds every embedding until it
    is set, to stand for a slow model; ``fail`` makes it raise."""

    identity = IDENTITY

    def __init__(self) -> None:
        self.vector = UNIT
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.embedded: list[int] = []  # samples per call
        self.urgencies: list[Urgency] = []
        self.delay: str | None = None  # what a late model would say

    async def embed_speech(
        self, speech: np.ndarray, *, urgency: Urgency = Urgency.REST
    ) -> SpeechEmbedding:
        self.embedded.append(len(speech))
        self.urgencies.append(urgency)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the model fell over")
        return SpeechEmbedding(self.vector, len(speech) / 16_000, 1, self.delay)


class CountingEnroller:
    """Records each chunk enrolled; ENROLLED once ``minimum_seconds`` came in."""

    def __init__(self) -> None:
        self.enrolled: list[tuple[str, int]] = []  # speaker, samples
        self.minimum_seconds = 4.0

    async def enroll(
        self, speaker_id: str, speech: DetectedSpeech, *, replace: bool = False
    ) -> EnrollmentResult:
        await asyncio.sleep(0)
        self.enrolled.append((speaker_id, len(speech.samples)))
        total = sum(samples for who, samples in self.enrolled if who == speaker_id) / 16_000
        done = total >= self.minimum_seconds
        return EnrollmentResult(
            speaker_id=speaker_id,
            status=SpeakerStatus.ENROLLED if done else SpeakerStatus.PENDING_ENROLLMENT,
            enrolled_speech_seconds=total,
            remaining_speech_seconds=max(0.0, self.minimum_seconds - total),
            speech_seconds=speech.speech_seconds,
        )


class Backend:
    """The service around a call: a real database and verification service."""

    def __init__(
        self,
        schedule: DecisionSchedule,
        database: Database | None = None,
        *,
        incremental: bool = False,
    ) -> None:
        if database is None:
            folder = Path(tempfile.mkdtemp(prefix="call-test-"))
            database = Database(f"sqlite:///{folder / 'calls.db'}")
            Base.metadata.create_all(database.engine)
        self.database = database
        self.worker = FakeWorker()
        self.enroller = CountingEnroller()
        self.aliases: dict[str, str] = {}
        self.history = VerdictHistory(self.database)
        self.verifier = VerificationService(
            self.database,
            TEST_CIPHER,
            self.worker,  # type: ignore[arg-type]
            Scorer(),
            VerificationPolicy(
                min_speech_seconds=schedule.min_frames * 0.02,
                min_snr_db=-1000.0,  # synthetic frames have no noise floor to speak of
                max_clipping_ratio=1.0,
            ),
            self.history,
        )
        self.services = CallServices(
            verifier=self.verifier,
            enroller=self.enroller,
            find_alias=self.find_alias,
            schedule=schedule,
            new_detector=LoudnessDetector,
            incremental_embedding=incremental,
        )

    def add_speaker(
        self,
        speaker_id: str,
        status: SpeakerStatus = SpeakerStatus.ENROLLED,
        vector: np.ndarray | None = UNIT,
    ) -> None:
        with self.database.session() as session:
            speaker = queries.find_speaker(session, speaker_id) or queries.create_speaker(
                session, speaker_id
            )
            speaker.status = status
            if vector is None:
                speaker.voiceprint = None
                return
            voiceprint = Voiceprint(
                model_source=IDENTITY.source, speech_seconds=20.0, segment_count=2
            )
            voiceprint.seal(TEST_CIPHER, speaker_id, IDENTITY.checkpoint_sha256, vector)
            speaker.voiceprint = voiceprint

    async def find_alias(self, raw_id: str) -> str | None:
        await asyncio.sleep(0)
        for alias in (raw_id, raw_id.removeprefix("4:")):
            if alias in self.aliases:
                return self.aliases[alias]
        return None


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.saved = 0

    def publish(self, event: CallEvent) -> None:
        self.events.append(event)

    def save(self, summary: object) -> None:
        self.saved += 1

    def verdicts(self, raw_id: str) -> list[Verdict]:
        return [
            event.verdict
            for event in self.events
            if isinstance(event, VerdictChanged) and event.participant_raw_id == raw_id
        ]

    def kinds(self) -> list[str]:
        return [event.type for event in self.events]


def make_call(
    schedule: DecisionSchedule | None = None,
    max_participants: int = 8,
    call_id: str = "call-1",
    *,
    incremental: bool = False,
) -> tuple[CallSession, Backend, RecordingEvents]:
    schedule = schedule or DecisionSchedule(min_frames=150, step_frames=100, max_frames=500)
    backend = Backend(schedule, incremental=incremental)
    events = RecordingEvents()
    call = CallSession(
        call_id,
        services=backend.services,
        save=events.save,
        publish=events.publish,
        max_participants=max_participants,
    )
    return call, backend, events


def frame(raw_id: str | None, index: int, *, speech: bool = True) -> AudioFrame:
    timestamp = START + timedelta(milliseconds=20 * index)
    return AudioFrame(timestamp, raw_id, SPEECH_FRAME if speech else SILENT_FRAME, not speech)


async def speak(
    call: CallSession,
    raw_id: str | None,
    seconds: float,
    *,
    start: int = 0,
    speech: bool = True,
    wait: bool = True,
) -> int:
    """Feed ``seconds`` of frames; with ``wait``, let the call's work finish after each (an
    instant model). Returns the index of the next frame."""
    count = round(seconds / 0.02)
    for index in range(start, start + count):
        call.feed(frame(raw_id, index, speech=speech), 16_000)
        await asyncio.sleep(0)
        if wait:
            await settle(call)
    return start + count


async def settle(call: CallSession, timeout: float = 10.0) -> None:
    """Until no verdict, look-up or enrollment runs for the call."""
    async with asyncio.timeout(timeout):
        while call.busy:
            await asyncio.sleep(0.0005)
