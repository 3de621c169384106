"""Stand-ins for the service around a call (model, database, events), so that call state is
tested alone and fast: a detector that hears any non-zero frame as speech, a backend with
the real :class:`Judge` over a fake verifier and worker, and an observer that records."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np

from biometrics.embedding import ModelIdentity
from biometrics.embedding.pooling import SpeechEmbedding
from biometrics.enrollment import EnrollmentResult
from biometrics.errors import SpeakerNotFound
from biometrics.scoring.scorer import Scorer
from biometrics.store import SpeakerStatus
from biometrics.streaming.decisions import DecisionSchedule, SpeakerClaim, SpeechWindow, Verdict
from biometrics.streaming.judge import Judge
from biometrics.streaming.protocol import AudioFrame
from biometrics.streaming.session import CallSession
from biometrics.verification import Claim

START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)
IDENTITY = ModelIdentity("fake-model", "0" * 64)
UNIT = np.eye(4, dtype=np.float32)[0]
SPEECH_FRAME = np.full(320, 3000, dtype="<i2").tobytes()  # 20 ms at 16 kHz
SILENT_FRAME = bytes(640)


class LoudnessDetector:
    """Any frame with sound is speech: tests decide exactly how much speech there is."""

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(np.abs(frame).max() > 0.01)


class FakeVerifier:
    """``load_claim`` of the REST verifier, from a dict; the real :class:`Scorer`."""

    def __init__(self) -> None:
        self.scorer = Scorer()
        self.speakers: dict[str, Claim] = {}

    def enroll(self, speaker_id: str, vector: np.ndarray = UNIT) -> None:
        self.speakers[speaker_id] = Claim(SpeakerStatus.ENROLLED, vector)

    def load_claim(self, speaker_id: str) -> Claim:
        if speaker_id not in self.speakers:
            raise SpeakerNotFound(f"speaker {speaker_id!r} does not exist")
        return self.speakers[speaker_id]


class FakeWorker:
    """Embeds any speech as one vector; ``gate`` (when set) holds every embedding until it
    is set, to stand for a slow model."""

    identity = IDENTITY

    def __init__(self) -> None:
        self.vector = UNIT
        self.gate: asyncio.Event | None = None
        self.embedded: list[int] = []  # samples per call

    async def embed_speech(self, segments: object) -> SpeechEmbedding:
        self.embedded.append(len(segments.samples))  # type: ignore[attr-defined]
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        return SpeechEmbedding(self.vector, 0.0, 1)


class FakeBackend:
    def __init__(self, schedule: DecisionSchedule) -> None:
        self.verifier = FakeVerifier()
        self.worker = FakeWorker()
        self.judge_ = Judge(self.verifier, self.worker, schedule)  # type: ignore[arg-type]
        self.aliases: dict[str, str] = {}
        self.enrolled: list[tuple[str, int]] = []  # speaker, samples
        self.enroll_minimum_seconds = 4.0
        self.fail_judging = False

    async def judge(
        self, call_id: str, raw_id: str, claim: SpeakerClaim | None, window: SpeechWindow
    ) -> Verdict:
        if self.fail_judging:
            raise RuntimeError("the model fell over")
        return await self.judge_.judge(call_id, raw_id, claim, window)

    async def enroll(self, speaker_id: str, speech: np.ndarray) -> EnrollmentResult:
        await asyncio.sleep(0)
        self.enrolled.append((speaker_id, len(speech)))
        total = sum(samples for who, samples in self.enrolled if who == speaker_id) / 16_000
        done = total >= self.enroll_minimum_seconds
        return EnrollmentResult(
            speaker_id=speaker_id,
            status=SpeakerStatus.ENROLLED if done else SpeakerStatus.PENDING_ENROLLMENT,
            enrolled_speech_seconds=total,
            remaining_speech_seconds=max(0.0, self.enroll_minimum_seconds - total),
            speech_seconds=len(speech) / 16_000,
        )

    async def find_alias(self, raw_id: str) -> str | None:
        await asyncio.sleep(0)
        for alias in (raw_id, raw_id.removeprefix("4:")):
            if alias in self.aliases:
                return self.aliases[alias]
        return None


@dataclasses.dataclass
class Notice:
    kind: str
    raw_id: str | None
    verdict: Verdict | None


class RecordingObserver:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notify(self, call, kind, participant=None, verdict=None) -> None:
        self.notices.append(Notice(kind, participant and participant.raw_id, verdict))

    def verdicts(self, raw_id: str) -> list[Verdict]:
        return [n.verdict for n in self.notices if n.verdict is not None and n.raw_id == raw_id]

    def kinds(self) -> list[str]:
        return [notice.kind for notice in self.notices]


def make_call(
    schedule: DecisionSchedule | None = None, max_participants: int = 8, call_id: str = "call-1"
) -> tuple[CallSession, FakeBackend, RecordingObserver]:
    schedule = schedule or DecisionSchedule(min_frames=150, step_frames=100, max_frames=500)
    backend = FakeBackend(schedule)
    observer = RecordingObserver()
    call = CallSession(
        call_id,
        schedule=schedule,
        new_detector=LoudnessDetector,  # type: ignore[arg-type]
        backend=backend,
        observer=observer,
        max_participants=max_participants,
    )
    return call, backend, observer


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


async def settle(call: CallSession, timeout: float = 5.0) -> None:
    """Until no verdict, look-up or enrollment runs for the call."""
    async with asyncio.timeout(timeout):
        while call.busy:
            await asyncio.sleep(0.0005)
