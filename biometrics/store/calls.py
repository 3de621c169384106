"""Live calls in the database: each call's summary and its participants' progress, written
from immutable snapshots by one thread of its own. (Their verdicts are in the verdict
history, :mod:`biometrics.store.verdicts`.)

One writer thread keeps the writes of a call in order and off the event loop: the audio
path hands a snapshot over and goes on. Reads go through the same thread, so a read sees
every write queued before it.

While the database is unreachable, each call's latest snapshot that could not be written
is kept (a snapshot is the whole call, so the latest is all that matters: memory grows
with calls, not with frames) and written again every ``retry_seconds`` until it answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session

from biometrics.snapshots import (
    CallSummary,
    EnrollmentProgress,
    ParticipantSummary,
    SpeakerClaim,
    StreamFormat,
)
from biometrics.store import queries
from biometrics.store.database import Database, is_unavailable
from biometrics.store.models import Call, CallParticipant
from biometrics.store.verdicts import latest_of_call

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class CallStore:
    def __init__(self, database: Database, retry_seconds: float = RETRY_SECONDS) -> None:
        self._database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-store")
        self._retry_seconds = retry_seconds
        self._unsaved: dict[str, CallSummary] = {}  # by call id; the writer thread's own
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._closed = False
        self._away = False  # the database failed a write and has not taken one since

    @property
    def unsaved(self) -> int:
        """Calls whose latest snapshot waits for the database."""
        return len(self._unsaved)

    def save(self, summary: CallSummary) -> None:
        """Queue a write of the call; returns at once."""
        future = self._executor.submit(self._save_or_keep, summary)
        future.add_done_callback(lambda done: _log_failure(done, summary.call_id))

    async def load(self, call_id: str) -> CallSummary | None:
        def read() -> CallSummary | None:
            with self._database.session() as session:
                return _load_call(session, call_id)

        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    async def recent(self, limit: int) -> list[CallSummary]:
        """The ``limit`` calls changed last, the latest first (as stored: a call held in
        memory may be a little further on)."""

        def read() -> list[CallSummary]:
            with self._database.session() as session:
                query = select(Call.call_id).order_by(Call.updated_at.desc()).limit(limit)
                found = (_load_call(session, call_id) for call_id in session.scalars(query))
                return [summary for summary in found if summary is not None]

        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    async def flush(self) -> None:
        """Wait until every write queued so far is done, and try the kept ones once more."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._retry_unsaved)

    async def written(self) -> None:
        """Wait until every write queued so far has been tried: stored, or kept for a retry
        while the database is unreachable (unlike :meth:`flush`, the kept ones are not
        tried again here, so that this stays quick through an outage)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)

    def close(self) -> None:
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        self._executor.shutdown(wait=True)
        if self._unsaved:
            logger.error(
                "the database is still unreachable: the latest progress of these calls is lost",
                extra={"call_ids": sorted(self._unsaved)},
            )

    def _save_or_keep(self, summary: CallSummary) -> bool:
        """The writer thread: write the snapshot, or keep it for a retry; True if written."""
        self._unsaved.pop(summary.call_id, None)  # this one is newer
        try:
            self._save(summary)
        except Exception as error:
            if not is_unavailable(error):
                raise
            if not self._away:
                self._away = True
                logger.warning(
                    "database unreachable: live calls' progress is kept and retried",
                    extra={"call_id": summary.call_id, "error": str(error)},
                )
            self._unsaved[summary.call_id] = summary
            self._retry_later()
            return False
        return True

    def _retry_unsaved(self) -> None:
        kept = len(self._unsaved)
        for summary in list(self._unsaved.values()):
            if not self._save_or_keep(summary):
                return  # still away: the timer tries again
        if self._away:
            self._away = False
            logger.info("live calls' kept progress was stored", extra={"calls": kept})

    def _retry_later(self) -> None:
        def retry() -> None:
            with self._timer_lock:
                self._timer = None
                if not self._closed:
                    self._executor.submit(self._retry_unsaved)

        with self._timer_lock:
            if self._timer is None and not self._closed:
                self._timer = threading.Timer(self._retry_seconds, retry)
                self._timer.daemon = True
                self._timer.start()

    def _save(self, summary: CallSummary) -> None:
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
            call.audio_format = (
                None if summary.audio_format is None else summary.audio_format.as_dict()
            )
            call.started_at = summary.started_at
            call.ended_at = summary.ended_at
            for participant in summary.participants:
                row = queries.find_call_participant(session, call, participant.raw_id)
                if row is None:
                    row = CallParticipant(raw_id=participant.raw_id)
                    call.participants.append(row)
                _fill_participant(row, participant)


def _fill_participant(row: CallParticipant, participant: ParticipantSummary) -> None:
    claim, enrollment = participant.claim, participant.enrollment
    row.mixed = participant.mixed
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


def _load_call(session: Session, call_id: str) -> CallSummary | None:
    call = queries.find_call(session, call_id)
    if call is None:
        return None
    latest = latest_of_call(session, call_id)
    participants = tuple(
        ParticipantSummary(
            raw_id=row.raw_id,
            mixed=row.mixed,
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
            latest_verdict=latest.get(row.raw_id),
            enrollment=None
            if row.enrollment is None
            else EnrollmentProgress.from_dict(row.enrollment),
        )
        for row in call.participants
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
        audio_format=None
        if call.audio_format is None
        else StreamFormat.from_dict(call.audio_format),
        participants=participants,
    )


def _nothing() -> None:
    """A write-thread task that only marks its place in the queue."""


def _log_failure(done: Future[bool], call_id: str) -> None:
    error = done.exception()
    if error is not None:
        logger.error(
            "could not store a live call's progress", exc_info=error, extra={"call_id": call_id}
        )
