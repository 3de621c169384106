"""One verdict for one participant: the claim loaded and scored exactly as the REST verifier
does (:meth:`Verifier.load_claim`, its :class:`Scorer`), on the speech a live call gathered.

Model work runs in the embedding worker's thread and database reads in the thread pool;
the caller runs :meth:`Judge.judge` as a task, never inline in a socket's receive loop.
"""

from __future__ import annotations

import dataclasses

from starlette.concurrency import run_in_threadpool

from biometrics.embedding import EmbeddingWorker
from biometrics.errors import ModelMismatch, SpeakerNotFound
from biometrics.scoring import Decision, decide
from biometrics.store import SpeakerStatus
from biometrics.streaming.clock import utcnow
from biometrics.streaming.decisions import (
    DecisionSchedule,
    SpeakerClaim,
    SpeechWindow,
    Verdict,
    new_verdict_id,
)
from biometrics.streaming.strategy import EmbedStrategy, reembed_speech_so_far
from biometrics.verification import Verifier


class Judge:
    def __init__(
        self,
        verifier: Verifier,
        worker: EmbeddingWorker,
        schedule: DecisionSchedule,
        embed: EmbedStrategy = reembed_speech_so_far,
    ) -> None:
        self._verifier = verifier
        self._worker = worker
        self._schedule = schedule
        self._embed = embed

    async def judge(
        self, call_id: str, raw_id: str, claim: SpeakerClaim | None, window: SpeechWindow
    ) -> Verdict:
        scorer = self._verifier.scorer
        verdict = Verdict(
            verdict_id=new_verdict_id(),
            call_id=call_id,
            participant_raw_id=raw_id,
            speaker_id=None if claim is None else claim.speaker_id,
            decision=Decision.SPEAKER_ID_NOT_PROVIDED,
            score=None,
            similarity=None,
            normalized_score=None,
            threshold=None,
            calibrated=scorer.usable_calibration is not None,
            speech_seconds=window.speech_seconds,
            first_audio_at=window.first_audio_at,
            last_audio_at=window.last_audio_at,
            final=False,
            model=self._worker.identity,
            detail=None,
            created_at=utcnow(),
        )
        if claim is None:
            return verdict
        threshold = scorer.default_threshold if claim.threshold is None else claim.threshold
        verdict = dataclasses.replace(verdict, threshold=threshold)
        try:
            stored = await run_in_threadpool(self._verifier.load_claim, claim.speaker_id)
        except (SpeakerNotFound, ModelMismatch) as error:
            return dataclasses.replace(
                verdict, decision=Decision.SPEAKER_NOT_ENROLLED, detail=error.detail
            )
        if stored.status is SpeakerStatus.OPTED_OUT:
            return dataclasses.replace(verdict, decision=Decision.SPEAKER_OPTED_OUT)
        if stored.voiceprint is None or stored.status is not SpeakerStatus.ENROLLED:
            return dataclasses.replace(verdict, decision=Decision.SPEAKER_NOT_ENROLLED)
        if not self._schedule.enough(window.frames):
            return dataclasses.replace(verdict, decision=Decision.NOT_ENOUGH_SPEECH)

        embedding = await self._embed(self._worker, window.samples)
        trial = scorer.score(stored.voiceprint, embedding.vector)
        return dataclasses.replace(
            verdict,
            decision=decide(trial.score, threshold),
            score=trial.score,
            similarity=trial.similarity,
            normalized_score=trial.normalized,
            calibrated=trial.calibrated,
            final=self._schedule.is_final(window.frames),
            created_at=utcnow(),
        )
