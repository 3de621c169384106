"""Enrollment: add an upload's speech to a speaker's voiceprint.

Enrollment accumulates: each upload's embedding is pooled with the voiceprint
so far, weighted by speech. The speaker becomes ENROLLED once the net speech
behind the voiceprint reaches the configured minimum. ``replace`` starts over, and
so does any enrollment of an expired speaker, which revives them (a past
``expires_at`` is cleared). Every enrollment marks the speaker as used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref

from starlette.concurrency import run_in_threadpool

from biometrics.audio import DetectedSpeech
from biometrics.clock import utcnow
from biometrics.embedding import EmbeddingWorker, Urgency
from biometrics.embedding.pooling import SpeechEmbedding, accumulate
from biometrics.errors import InsufficientSpeech, ModelMismatch, SpeakerOptedOut
from biometrics.statuses import SpeakerStatus
from biometrics.store import Database, EnrollmentRecord, Speaker, Voiceprint, queries
from biometrics.store.crypto import Cipher
from biometrics.store.lifecycle import NO_EXPIRY, SpeakerExpiry, last_used_at

# Below this an upload adds noise rather than voice to the voiceprint.
MIN_UPLOAD_SPEECH_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class EnrollmentResult:
    speaker_id: str
    status: SpeakerStatus
    enrolled_speech_seconds: float
    remaining_speech_seconds: float
    speech_seconds: float  # net speech taken from this upload

    def as_dict(self) -> dict[str, object]:
        return {
            "speaker_id": self.speaker_id,
            "status": self.status.value,
            "enrolled_speech_seconds": round(self.enrolled_speech_seconds, 2),
            "remaining_speech_seconds": round(self.remaining_speech_seconds, 2),
            "speech_seconds": round(self.speech_seconds, 2),
        }


def remaining_seconds(speaker: Speaker, minimum: float) -> float:
    if speaker.status is SpeakerStatus.OPTED_OUT:
        return 0.0
    enrolled = speaker.voiceprint.speech_seconds if speaker.voiceprint else 0.0
    return max(0.0, minimum - enrolled)


class Enroller:
    def __init__(
        self,
        database: Database,
        cipher: Cipher,
        worker: EmbeddingWorker,
        min_enroll_speech_seconds: float,
        expiry: SpeakerExpiry = NO_EXPIRY,
    ) -> None:
        self._database = database
        self._cipher = cipher  # voiceprints are read and written encrypted
        self._worker = worker
        self.minimum = min_enroll_speech_seconds
        self._expiry = expiry
        # Serialises read-modify-write of one speaker's voiceprint in this process;
        # row locks (SELECT ... FOR UPDATE) do the same across processes.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def enroll(
        self,
        speaker_id: str,
        speech: DetectedSpeech,
        *,
        replace: bool = False,
        urgency: Urgency = Urgency.REST,
    ) -> EnrollmentResult:
        """Add ``speech`` (already found by a speech detector) to the speaker's voiceprint;
        ``urgency`` BULK lets verifications and single uploads go first."""
        await run_in_threadpool(self._refuse_opted_out, speaker_id)
        if speech.speech_seconds < MIN_UPLOAD_SPEECH_SECONDS:
            raise InsufficientSpeech(
                f"the audio holds {speech.speech_seconds:.2f} s of speech; an enrollment "
                f"upload needs at least {MIN_UPLOAD_SPEECH_SECONDS:.0f} s"
            )
        embedding = await self._worker.embed_speech(speech.samples, urgency=urgency)
        lock = self._locks.setdefault(speaker_id, asyncio.Lock())
        async with lock:
            return await run_in_threadpool(
                self._store, speaker_id, embedding, speech.audio_seconds, replace
            )

    def _refuse_opted_out(self, speaker_id: str) -> None:
        with self._database.session() as session:
            speaker = queries.find_speaker(session, speaker_id)
            if speaker is not None and speaker.status is SpeakerStatus.OPTED_OUT:
                raise SpeakerOptedOut(f"speaker {speaker_id!r} opted out; enrollment is refused")

    def _store(
        self, speaker_id: str, embedding: SpeechEmbedding, audio_seconds: float, replace: bool
    ) -> EnrollmentResult:
        identity = self._worker.identity
        with self._database.session() as session:
            speaker = queries.find_speaker(session, speaker_id, for_update=True)
            if speaker is None:
                speaker = queries.create_speaker(session, speaker_id)
            if speaker.status is SpeakerStatus.OPTED_OUT:
                raise SpeakerOptedOut(f"speaker {speaker_id!r} opted out; enrollment is refused")
            now = utcnow()
            if self._expiry.expired(speaker.status, speaker.expires_at, last_used_at(speaker), now):
                # An expired voiceprint (if the sweep has not deleted it yet) is never
                # pooled into: this speech starts a new one.
                replace = True
                if speaker.expires_at is not None and speaker.expires_at <= now:
                    speaker.expires_at = None
            speaker.last_accessed_at = now
            voiceprint = speaker.voiceprint
            replaced = voiceprint is not None and replace
            if voiceprint is None:
                voiceprint = Voiceprint(speaker_pk=speaker.id)
                speaker.voiceprint = voiceprint
                merged = embedding
            elif replace:
                merged = embedding
            elif not identity.compatible_with(voiceprint.model_sha256):
                raise ModelMismatch(
                    f"speaker {speaker_id!r} was enrolled with model {voiceprint.model_source} "
                    f"(sha256 {voiceprint.model_sha256[:12]}); the service runs {identity.name}. "
                    "Re-enroll with replace=true"
                )
            else:
                previous = SpeechEmbedding(
                    voiceprint.embedding(self._cipher, speaker_id),
                    voiceprint.speech_seconds,
                    voiceprint.segment_count,
                )
                merged = accumulate(previous, embedding)
            voiceprint.seal(self._cipher, speaker_id, identity.checkpoint_sha256, merged.vector)
            voiceprint.speech_seconds = merged.speech_seconds
            voiceprint.segment_count = merged.segment_count
            voiceprint.model_source = identity.source
            speaker.status = (
                SpeakerStatus.ENROLLED
                if merged.speech_seconds >= self.minimum
                else SpeakerStatus.PENDING_ENROLLMENT
            )
            session.add(
                EnrollmentRecord(
                    speaker_pk=speaker.id,
                    model_sha256=identity.checkpoint_sha256,
                    speech_seconds=embedding.speech_seconds,
                    audio_seconds=audio_seconds,
                    segment_count=embedding.segment_count,
                    replaced_previous=replaced,
                )
            )
            return EnrollmentResult(
                speaker_id=speaker_id,
                status=speaker.status,
                enrolled_speech_seconds=merged.speech_seconds,
                remaining_speech_seconds=remaining_seconds(speaker, self.minimum),
                speech_seconds=embedding.speech_seconds,
            )
