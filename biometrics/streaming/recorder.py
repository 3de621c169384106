"""Live calls in the database: each call's summary, its participants' progress and every
verdict, written from immutable snapshots by one thread of its own.

One writer thread keeps the writes of a call in order (a verdict never arrives before its
participant) and off the event loop: the audio path hands a snapshot over and goes on.
Reads go through the same thread, so a read sees every write queued before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy.orm import Session

from biometrics.embedding import ModelIdentity
from biometrics.scoring import Decision
from biometrics.store import Database, queries
from biometrics.store.models import Call, CallParticipant, CallVerdict
from biometrics.streaming.decisions import SpeakerClaim, Verdict
from biometrics.streaming.summaries import CallSummary, EnrollmentProgress, ParticipantSummary

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CallRecorder:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-recorder")

    def save(self, summary: CallSummary, verdict: Verdict | None = None) -> None:
        """Queue a write of the call (and a new verdict); returns at once."""
        future = self._executor.submit(self._save, summary, verdict)
        future.add_done_callback(lambda done: _log_failure(done, summary.call_id))

    async def load(self, call_id: str) -> CallSummary | None:
        return await self._run(lambda session: _load_call(session, call_id))

    async def verdicts(self, call_id: str, raw_id: str, limit: int) -> list[Verdict] | None:
        """The participant's most recent verdicts, oldest first; None if it is unknown."""
        return await self._run(lambda session: _load_verdicts(session, call_id, raw_id, limit))

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""
        await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def _run(self, read: Callable[[Session], T]) -> T:
        def in_session() -> T:
            with self._database.session() as session:
                return read(session)

        return await asyncio.get_running_loop().run_in_executor(self._executor, in_session)

    def _save(self, summary: CallSummary, verdict: Verdict | None) -> None:
        with self._database.session() as session:
            call = queries.find_call(session, summary.call_id)
            if call is None:
                call = Call(call_id=summary.call_id, created_at=summary.created_at)
                session.add(call)
            call.correlation_id = summary.correlation_id
            call.subscription_id = summary.subscription_id
            call.status = summary.status
            call.sockets = summary.sockets
            call.counters = dict(summary.counters)
            call.started_at = summary.started_at
            call.ended_at = summary.ended_at
            for participant in summary.participants:
                row = queries.find_call_participant(session, call, participant.raw_id)
                if row is None:
                    row = CallParticipant(raw_id=participant.raw_id)
                    call.participants.append(row)
                _fill_participant(row, participant)
            if verdict is not None:
                session.flush()  # the participant's primary key
                row = queries.find_call_participant(session, call, verdict.participant_raw_id)
                assert row is not None, "a verdict's participant is in its call's summary"
                session.add(_verdict_row(verdict, row.id))


def _fill_participant(row: CallParticipant, participant: ParticipantSummary) -> None:
    claim, enrollment = participant.claim, participant.enrollment
    row.joined_at = participant.joined_at
    row.first_frame_at = participant.first_frame_at
    row.last_frame_at = participant.last_frame_at
    row.frames = participant.frames
    row.speech_seconds = participant.speech_seconds
    row.claimed_speaker_id = None if claim is None else claim.speaker_id
    row.claim_threshold = None if claim is None else claim.threshold
    row.claim_source = None if claim is None else claim.source
    row.enrollment = None if enrollment is None else enrollment.as_dict()
    latest = participant.latest_verdict
    row.latest_decision = None if latest is None else latest.decision.value


def _verdict_row(verdict: Verdict, participant_pk: int) -> CallVerdict:
    return CallVerdict(
        verdict_id=verdict.verdict_id,
        participant_pk=participant_pk,
        speaker_id=verdict.speaker_id,
        decision=verdict.decision.value,
        score=verdict.score,
        similarity=verdict.similarity,
        normalized_score=verdict.normalized_score,
        threshold=verdict.threshold,
        calibrated=verdict.calibrated,
        speech_seconds=verdict.speech_seconds,
        first_audio_at=verdict.first_audio_at,
        last_audio_at=verdict.last_audio_at,
        final=verdict.final,
        model_source=verdict.model.source,
        model_sha256=verdict.model.checkpoint_sha256,
        detail=verdict.detail,
        created_at=verdict.created_at,
    )


def _verdict(row: CallVerdict, call_id: str, raw_id: str) -> Verdict:
    return Verdict(
        verdict_id=row.verdict_id,
        call_id=call_id,
        participant_raw_id=raw_id,
        speaker_id=row.speaker_id,
        decision=Decision(row.decision),
        score=row.score,
        similarity=row.similarity,
        normalized_score=row.normalized_score,
        threshold=row.threshold,
        calibrated=row.calibrated,
        speech_seconds=row.speech_seconds,
        first_audio_at=row.first_audio_at,
        last_audio_at=row.last_audio_at,
        final=row.final,
        model=ModelIdentity(row.model_source, row.model_sha256),
        detail=row.detail,
        created_at=row.created_at,
    )


def _load_call(session: Session, call_id: str) -> CallSummary | None:
    call = queries.find_call(session, call_id)
    if call is None:
        return None
    latest = queries.latest_call_verdicts(session, [p.id for p in call.participants])
    participants = []
    for row in call.participants:
        verdict = latest.get(row.id)
        participants.append(
            ParticipantSummary(
                raw_id=row.raw_id,
                joined_at=row.joined_at,
                first_frame_at=row.first_frame_at,
                last_frame_at=row.last_frame_at,
                frames=row.frames,
                speech_seconds=row.speech_seconds,
                claim=None
                if row.claimed_speaker_id is None
                else SpeakerClaim(
                    row.claimed_speaker_id, row.claim_threshold, row.claim_source or "api"
                ),
                latest_verdict=None if verdict is None else _verdict(verdict, call_id, row.raw_id),
                enrollment=None
                if row.enrollment is None
                else EnrollmentProgress.from_dict(row.enrollment),
            )
        )
    return CallSummary(
        call_id=call.call_id,
        correlation_id=call.correlation_id,
        subscription_id=call.subscription_id,
        status=call.status,
        created_at=call.created_at,
        started_at=call.started_at,
        ended_at=call.ended_at,
        sockets=call.sockets,
        counters=dict(call.counters),
        participants=tuple(participants),
    )


def _load_verdicts(session: Session, call_id: str, raw_id: str, limit: int) -> list[Verdict] | None:
    call = queries.find_call(session, call_id)
    row = None if call is None else queries.find_call_participant(session, call, raw_id)
    if row is None:
        return None
    return [
        _verdict(verdict, call_id, raw_id)
        for verdict in queries.list_call_verdicts(session, row.id, limit=limit)
    ]


def _log_failure(done: object, call_id: str) -> None:
    error = done.exception()  # type: ignore[attr-defined]
    if error is not None:
        logger.error(
            "could not store a live call's progress",
            exc_info=error,
            extra={"call_id": call_id},
        )
