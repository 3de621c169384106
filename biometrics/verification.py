"""Verification: does this audio's speaker match the voiceprint of the claimed one?"""

from __future__ import annotations

import dataclasses

import numpy as np
from starlette.concurrency import run_in_threadpool

from biometrics.audio import SpeechDetector
from biometrics.audio.quality import Quality, measure
from biometrics.config import Settings
from biometrics.embedding import EmbeddingWorker, ModelIdentity
from biometrics.errors import ModelMismatch
from biometrics.scoring import Decision, decide
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database, SpeakerStatus, VerificationRecord, queries


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    speaker_id: str
    decision: Decision
    score: float | None
    similarity: float | None
    threshold: float
    speech_seconds: float
    model: ModelIdentity
    calibrated: bool
    normalized_score: float | None = None
    quality: Quality | None = None
    quality_issues: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "speaker_id": self.speaker_id,
            "decision": self.decision.value,
            "score": self.score,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "threshold": self.threshold,
            "speech_seconds": round(self.speech_seconds, 2),
            "model": self.model.as_dict(),
            "calibrated": self.calibrated,
            "normalized_score": None
            if self.normalized_score is None
            else round(self.normalized_score, 3),
            "quality": None
            if self.quality is None
            else {**self.quality.as_dict(), "issues": list(self.quality_issues)},
        }


@dataclasses.dataclass(frozen=True)
class Claim:
    """What verification needs from the store about a claimed speaker."""

    status: SpeakerStatus
    voiceprint: np.ndarray | None


class Verifier:
    def __init__(
        self,
        database: Database,
        worker: EmbeddingWorker,
        detector: SpeechDetector,
        settings: Settings,
        scorer: Scorer,
    ) -> None:
        self._database = database
        self._worker = worker
        self._detector = detector
        self._settings = settings
        self.scorer = scorer

    async def verify(
        self, speaker_id: str, samples: np.ndarray, threshold: float | None = None
    ) -> VerificationResult:
        threshold = self.scorer.default_threshold if threshold is None else threshold
        claim = await run_in_threadpool(self.load_claim, speaker_id)
        if claim.status is SpeakerStatus.OPTED_OUT:
            result = self._unscored(speaker_id, Decision.SPEAKER_OPTED_OUT, threshold)
        elif claim.voiceprint is None or claim.status is not SpeakerStatus.ENROLLED:
            result = self._unscored(speaker_id, Decision.SPEAKER_NOT_ENROLLED, threshold)
        else:
            result = await self._judge(speaker_id, claim.voiceprint, samples, threshold)
        await run_in_threadpool(self._record, result)
        return result

    async def _judge(
        self, speaker_id: str, voiceprint: np.ndarray, samples: np.ndarray, threshold: float
    ) -> VerificationResult:
        segments = await run_in_threadpool(self._detector.detect, samples)
        quality = measure(segments)
        issues = tuple(quality.issues(self._settings.min_snr_db, self._settings.max_clipping_ratio))
        if quality.speech_seconds < self._settings.min_verify_speech_seconds:
            decision = Decision.NOT_ENOUGH_SPEECH
        elif issues:
            decision = Decision.POOR_AUDIO_QUALITY
        else:
            embedding = await self._worker.embed_speech(segments)
            trial = self.scorer.score(voiceprint, embedding.vector)
            return VerificationResult(
                speaker_id=speaker_id,
                decision=decide(trial.score, threshold),
                score=trial.score,
                similarity=trial.similarity,
                threshold=threshold,
                speech_seconds=quality.speech_seconds,
                model=self._worker.identity,
                calibrated=trial.calibrated,
                normalized_score=trial.normalized,
                quality=quality,
            )
        unscored = self._unscored(speaker_id, decision, threshold)
        return dataclasses.replace(
            unscored, speech_seconds=quality.speech_seconds, quality=quality, quality_issues=issues
        )

    def _unscored(
        self, speaker_id: str, decision: Decision, threshold: float
    ) -> VerificationResult:
        return VerificationResult(
            speaker_id=speaker_id,
            decision=decision,
            score=None,
            similarity=None,
            threshold=threshold,
            speech_seconds=0.0,
            model=self._worker.identity,
            calibrated=self.scorer.usable_calibration is not None,
        )

    def load_claim(self, speaker_id: str) -> Claim:
        """Blocking: the speaker's status and voiceprint; raises SpeakerNotFound, or
        ModelMismatch when the voiceprint was made by another model."""
        identity = self._worker.identity
        with self._database.session() as session:
            speaker = queries.get_speaker(session, speaker_id)
            voiceprint = speaker.voiceprint
            if voiceprint is not None and not identity.compatible_with(voiceprint.model_sha256):
                raise ModelMismatch(
                    f"speaker {speaker_id!r} was enrolled with model {voiceprint.model_source} "
                    f"(sha256 {voiceprint.model_sha256[:12]}) and the service runs "
                    f"{identity.name}: embeddings of different models are never compared. "
                    "Re-enroll the speaker with this model"
                )
            return Claim(
                status=speaker.status,
                voiceprint=None if voiceprint is None else voiceprint.embedding,
            )

    def _record(self, result: VerificationResult) -> None:
        with self._database.session() as session:
            speaker = queries.get_speaker(session, result.speaker_id)
            queries.touch(speaker)
            session.add(
                VerificationRecord(
                    speaker_pk=speaker.id,
                    model_source=result.model.source,
                    model_sha256=result.model.checkpoint_sha256,
                    decision=result.decision.value,
                    score=result.score,
                    similarity=result.similarity,
                    threshold=result.threshold,
                    speech_seconds=result.speech_seconds,
                )
            )
