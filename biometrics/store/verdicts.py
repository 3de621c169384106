"""The verdict history: every verdict the service gave, uploaded or live, in one table.

Writing an ACCEPT also marks its speaker as used (``last_accessed_at``), in the same
transaction, so the two never disagree; no other decision does, so that failed attempts
never keep an unused voiceprint from expiring. With a :class:`~biometrics.store.spool.Spool`,
a verdict that cannot be written while the database is unreachable waits there and is
written when it answers (once: a verdict id already in the table is not written again).
Blocking: call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from biometrics.audio.quality import Quality
from biometrics.embedding.identity import ModelIdentity
from biometrics.statuses import Decision
from biometrics.store import queries
from biometrics.store.database import Database
from biometrics.store.models import VerdictRecord
from biometrics.store.spool import Spool
from biometrics.verdicts import CallParticipantRef, Verdict


class VerdictHistory:
    def __init__(self, database: Database, spool: Spool | None = None) -> None:
        self._database = database
        self._spool = spool

    def record(self, verdict: Verdict) -> None:
        """Write the verdict now, or (with a spool, the database unreachable) later."""

        def write(session: Session) -> None:
            _add(session, verdict)

        if self._spool is not None:
            self._spool.submit("verdict", write)
            return
        with self._database.session() as session:
            write(session)

    def of_participant(self, call_id: str, raw_id: str, limit: int) -> list[Verdict]:
        """The participant's most recent ``limit`` verdicts, oldest first."""
        with self._database.session() as session:
            query = (
                select(VerdictRecord)
                .where(VerdictRecord.call_id == call_id, VerdictRecord.participant_raw_id == raw_id)
                .order_by(VerdictRecord.id.desc())
                .limit(limit)
            )
            return [_verdict(row) for row in reversed(session.scalars(query).all())]

    def of_speaker(self, speaker_id: str, limit: int) -> list[Verdict]:
        """The speaker's most recent ``limit`` verdicts, newest first."""
        with self._database.session() as session:
            query = (
                select(VerdictRecord)
                .where(VerdictRecord.speaker_id == speaker_id)
                .order_by(VerdictRecord.id.desc())
                .limit(limit)
            )
            return [_verdict(row) for row in session.scalars(query)]


def failures_since(session: Session, speaker_id: str, since: datetime) -> list[datetime]:
    """The speaker's failed attempts after ``since`` (and after their latest ACCEPT), newest
    first: an upload's scored REJECT is one attempt, and so are all the scored REJECTs of
    one participant of one call (a live verdict is re-made as speech grows)."""
    accepted = session.scalar(
        select(func.max(VerdictRecord.created_at)).where(
            VerdictRecord.speaker_id == speaker_id, VerdictRecord.decision == "ACCEPT"
        )
    )
    start = since if accepted is None else max(since, accepted)
    query = (
        select(
            VerdictRecord.verdict_id,
            VerdictRecord.call_id,
            VerdictRecord.participant_raw_id,
            VerdictRecord.created_at,
        )
        .where(
            VerdictRecord.speaker_id == speaker_id,
            VerdictRecord.decision == "REJECT",
            VerdictRecord.score.is_not(None),
            VerdictRecord.created_at > start,
        )
        .order_by(VerdictRecord.created_at.desc())
    )
    attempts: dict[tuple[str, str | None], datetime] = {}
    for verdict_id, call_id, raw_id, created_at in session.execute(query):
        attempt = (call_id, raw_id) if call_id else (verdict_id, None)
        attempts.setdefault(attempt, created_at)  # newest first: keep its latest
    return sorted(attempts.values(), reverse=True)


def latest_of_call(session: Session, call_id: str) -> dict[str, Verdict]:
    """Each participant's most recent verdict in a call, by raw id."""
    newest = (
        select(func.max(VerdictRecord.id))
        .where(VerdictRecord.call_id == call_id)
        .group_by(VerdictRecord.participant_raw_id)
    )
    rows: Sequence[VerdictRecord] = session.scalars(
        select(VerdictRecord).where(VerdictRecord.id.in_(newest))
    ).all()
    return {row.participant_raw_id: _verdict(row) for row in rows if row.participant_raw_id}


def _add(session: Session, verdict: Verdict) -> None:
    """Add the verdict unless its id is in the table already (a retried write)."""
    known = select(VerdictRecord.id).where(VerdictRecord.verdict_id == verdict.verdict_id)
    if session.scalar(known) is not None:
        return
    session.add(_row(verdict))
    if verdict.speaker_id is not None and verdict.decision is Decision.ACCEPT:
        queries.touch_speaker(session, verdict.speaker_id)


def _row(verdict: Verdict) -> VerdictRecord:
    participant = verdict.participant
    return VerdictRecord(
        verdict_id=verdict.verdict_id,
        speaker_id=verdict.speaker_id,
        call_id=None if participant is None else participant.call_id,
        participant_raw_id=None if participant is None else participant.participant_raw_id,
        decision=verdict.decision.value,
        score=verdict.score,
        similarity=verdict.similarity,
        normalized_score=verdict.normalized_score,
        threshold=verdict.threshold,
        calibrated=verdict.calibrated,
        speech_seconds=verdict.speech_seconds,
        quality=None if verdict.quality is None else verdict.quality.as_dict(),
        first_audio_at=verdict.first_audio_at,
        last_audio_at=verdict.last_audio_at,
        final=verdict.final,
        model_source=verdict.model.source,
        model_sha256=verdict.model.checkpoint_sha256,
        detail=None if verdict.detail is None else verdict.detail[:512],
        created_at=verdict.created_at,
    )


def _verdict(row: VerdictRecord) -> Verdict:
    participant = None
    if row.call_id is not None and row.participant_raw_id is not None:
        participant = CallParticipantRef(row.call_id, row.participant_raw_id)
    return Verdict(
        verdict_id=row.verdict_id,
        speaker_id=row.speaker_id,
        decision=Decision(row.decision),
        score=row.score,
        similarity=row.similarity,
        normalized_score=row.normalized_score,
        threshold=row.threshold,
        calibrated=row.calibrated,
        speech_seconds=row.speech_seconds,
        quality=None if row.quality is None else Quality.from_dict(row.quality),
        model=ModelIdentity(row.model_source, row.model_sha256),
        detail=row.detail,
        created_at=row.created_at,
        participant=participant,
        first_audio_at=row.first_audio_at,
        last_audio_at=row.last_audio_at,
        final=row.final,
    )
