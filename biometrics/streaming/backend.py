"""The service's side of a live call: verdicts from the :class:`Judge`, enrollment by the
REST path's :class:`Enroller`, and speaker aliases from the database. Each runs off the
event loop (the embedding worker's thread, the thread pool)."""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from biometrics.enrollment import Enroller, EnrollmentResult
from biometrics.store import Database, queries
from biometrics.streaming.decisions import SpeakerClaim, SpeechWindow, Verdict
from biometrics.streaming.identity import alias_candidates
from biometrics.streaming.judge import Judge


class ServiceBackend:
    def __init__(self, judge: Judge, enroller: Enroller, database: Database) -> None:
        self._judge = judge
        self._enroller = enroller
        self._database = database

    async def judge(
        self, call_id: str, raw_id: str, claim: SpeakerClaim | None, window: SpeechWindow
    ) -> Verdict:
        return await self._judge.judge(call_id, raw_id, claim, window)

    async def enroll(self, speaker_id: str, speech: np.ndarray) -> EnrollmentResult:
        return await self._enroller.enroll(speaker_id, speech)

    async def find_alias(self, raw_id: str) -> str | None:
        return await run_in_threadpool(self._find_alias, raw_id)

    def _find_alias(self, raw_id: str) -> str | None:
        with self._database.session() as session:
            for alias in alias_candidates(raw_id):
                speaker = queries.find_speaker_by_alias(session, alias)
                if speaker is not None:
                    return speaker.speaker_id
        return None
