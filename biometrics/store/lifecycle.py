"""The data lifecycle: when a speaker expires, and the sweep that deletes what has outlived
its use. Blocking: the service runs :func:`sweep` in a thread of its own, ``biometrics
expire`` runs it in the foreground.

**Expiry.** A speaker is used when they enroll (an upload, or speech from a call) or are
ACCEPTed; ``Speaker.last_accessed_at`` holds that moment, as Amazon Connect Voice ID's
``LastAccessedAt`` does ("enrollment, re-enrollment or a successful authentication"). A
REJECT does not count: a fraudster's failed attempts must not keep a voiceprint alive.
Unused for longer than :attr:`SpeakerExpiry.inactive_days`, or past its own ``expires_at``,
a speaker is expired at once: verdicts say SPEAKER_EXPIRED, and an enrollment starts the
voiceprint over, which revives them. A speaker that was never used since this rule
existed counts from their voiceprint's last change, else from their creation.

**The sweep** makes that permanent: it marks expired speakers EXPIRED and deletes their
voiceprint (the only table holding a speaker's vectors; a pending enrollment's partial
voiceprint is the same row), keeping the speaker row so that verdicts stay SPEAKER_EXPIRED
until re-enrollment, and writes one ``speaker.expire`` audit row for each. It then deletes
verdicts and audit rows older than their :class:`Retention`. Every step works in batches,
each its own short transaction, so that no table is locked for long while the service runs;
the steps are idempotent, and two sweeps at once (two replicas, or the command line beside
the service) never expire a speaker twice. Speakers come first, so that a database role
without DELETE on ``audit_log`` still has voiceprints expired and verdicts pruned.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from biometrics.clock import utcnow
from biometrics.statuses import SpeakerStatus
from biometrics.store.audit import SERVICE, Origin, audit_row
from biometrics.store.database import Database
from biometrics.store.models import (
    AuditRecord,
    CallRecording,
    CallRecordingSetting,
    Speaker,
    VerdictRecord,
    Voiceprint,
)
from biometrics.store.recordings import RecordingFiles

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # rows per transaction
EXPIRE_ACTION = "speaker.expire"
# Opted-out speakers keep their status (it refuses enrollment); expired ones are done.
_NEVER_SWEPT = (SpeakerStatus.OPTED_OUT, SpeakerStatus.EXPIRED)
SWEEPER = Origin(SERVICE)  # the service's periodic sweep; the command line acts as cli


@dataclasses.dataclass(frozen=True)
class SpeakerExpiry:
    """When a speaker's voiceprint may no longer be used."""

    inactive_days: int = 0  # unused this long: expired; 0: never by inactivity

    def inactive_before(self, now: datetime) -> datetime | None:
        """Speakers last used before this moment are expired; None when nobody is."""
        return None if self.inactive_days == 0 else now - timedelta(days=self.inactive_days)

    def expired(
        self,
        status: SpeakerStatus,
        expires_at: datetime | None,
        last_used_at: datetime,
        now: datetime,
    ) -> bool:
        if status is SpeakerStatus.EXPIRED or (expires_at is not None and expires_at <= now):
            return True
        cutoff = self.inactive_before(now)
        return cutoff is not None and last_used_at < cutoff


NO_EXPIRY = SpeakerExpiry()  # by expires_at only


def last_used_at(speaker: Speaker) -> datetime:
    """When the speaker was last used (see the module's docstring); as :func:`_last_used`
    says it in SQL."""
    voiceprint = speaker.voiceprint
    return (
        speaker.last_accessed_at
        or (voiceprint.updated_at if voiceprint is not None else None)
        or speaker.created_at
    )


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long the history is kept, in days; 0 keeps it forever."""

    verdict_days: int = 0
    audit_days: int = 0
    recording_days: int = 0  # call recordings (their rows and files)


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What a sweep did, or with ``dry_run`` what it would have done."""

    speakers_expired: int
    verdicts_deleted: int
    audit_rows_deleted: int
    recordings_deleted: int = 0
    dry_run: bool = False
    interrupted: bool = False  # stopped between two batches; the next sweep goes on

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sweep(
    database: Database,
    expiry: SpeakerExpiry,
    retention: Retention,
    *,
    origin: Origin = SWEEPER,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    stop: threading.Event | None = None,
    on_expired: Callable[[str], None] | None = None,
    recordings: RecordingFiles | None = None,
) -> SweepReport:
    """Expire the speakers due, then delete the verdicts, audit rows and (given their
    folder, ``recordings``) call recordings past retention; one summary log line. ``stop``,
    once set, ends the sweep after the current batch; ``on_expired`` hears each speaker id
    expired, once its transaction is committed (the service drops what it remembers of
    them)."""
    now = utcnow()
    stop = stop or threading.Event()
    verdicts_before = _days_before(now, retention.verdict_days)
    audit_before = _days_before(now, retention.audit_days)
    recordings_before = None if recordings is None else _days_before(now, retention.recording_days)
    if dry_run:
        with database.session() as session:
            report = SweepReport(
                speakers_expired=_count(session, Speaker.id, _due(expiry, now)),
                verdicts_deleted=_count_older(session, VerdictRecord.created_at, verdicts_before),
                audit_rows_deleted=_count_older(session, AuditRecord.at, audit_before),
                recordings_deleted=_count_older(
                    session, CallRecording.started_at, recordings_before
                ),
                dry_run=True,
            )
    else:
        expired = _expire(database, expiry, now, origin, batch_size, stop, on_expired)
        verdicts = _delete_older(
            database, VerdictRecord, VerdictRecord.created_at, verdicts_before, batch_size, stop
        )
        audit = _delete_older(database, AuditRecord, AuditRecord.at, audit_before, batch_size, stop)
        removed = 0
        if recordings is not None:
            removed = _delete_recordings(database, recordings, recordings_before, batch_size, stop)
        report = SweepReport(expired, verdicts, audit, removed, interrupted=stop.is_set())
    logger.info("lifecycle sweep", extra=report.as_dict())
    return report


def _last_used() -> ColumnElement[datetime]:
    """:func:`last_used_at` in SQL; a correlated subquery, so that it fits an UPDATE too."""
    voiceprint_changed = (
        select(Voiceprint.updated_at).where(Voiceprint.speaker_pk == Speaker.id).scalar_subquery()
    )
    return func.coalesce(Speaker.last_accessed_at, voiceprint_changed, Speaker.created_at)


def _due(expiry: SpeakerExpiry, now: datetime) -> ColumnElement[bool]:
    """Speakers the sweep expires: :meth:`SpeakerExpiry.expired` but not yet EXPIRED (nor
    opted out)."""
    due: ColumnElement[bool] = Speaker.expires_at <= now
    cutoff = expiry.inactive_before(now)
    if cutoff is not None:
        due = or_(due, _last_used() < cutoff)
    return and_(Speaker.status.not_in(_NEVER_SWEPT), due)


def _expire(
    database: Database,
    expiry: SpeakerExpiry,
    now: datetime,
    origin: Origin,
    batch_size: int,
    stop: threading.Event,
    on_expired: Callable[[str], None] | None,
) -> int:
    expired = 0
    while not stop.is_set():
        with database.session() as session:
            # PostgreSQL: lock the batch, skipping speakers another transaction holds (an
            # enrollment, another sweep). SQLite has one writer at a time: the UPDATE below
            # asks again whether each is due, under the write lock, and says which it took.
            batch = session.scalars(
                select(Speaker.id)
                .where(_due(expiry, now))
                .order_by(Speaker.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not batch:
                break
            taken = session.execute(
                update(Speaker)
                .where(Speaker.id.in_(batch), _due(expiry, now))
                .values(status=SpeakerStatus.EXPIRED)
                .returning(Speaker.id, Speaker.speaker_id)
                .execution_options(synchronize_session=False)
            ).all()
            session.execute(
                delete(Voiceprint).where(Voiceprint.speaker_pk.in_([pk for pk, _ in taken]))
            )
            session.add_all(
                audit_row(origin, EXPIRE_ACTION, speaker_id, SpeakerStatus.EXPIRED.value)
                for _, speaker_id in taken
            )
        expired += len(taken)
        if on_expired is not None:
            for _, speaker_id in taken:
                on_expired(speaker_id)
        if len(batch) < batch_size:
            break
    return expired


def _delete_older(
    database: Database,
    table: type[VerdictRecord | AuditRecord],
    time: InstrumentedAttribute[datetime],
    before: datetime | None,
    batch_size: int,
    stop: threading.Event,
) -> int:
    """Delete the rows of ``table`` whose ``time`` is before ``before``, a batch per
    transaction, oldest first; their count."""
    if before is None:
        return 0
    key = table.id
    deleted = 0
    while not stop.is_set():
        with database.session() as session:
            batch = session.scalars(
                select(key).where(time < before).order_by(key).limit(batch_size)
            ).all()
            if batch:
                result = session.execute(
                    delete(table).where(key.in_(batch)).execution_options(synchronize_session=False)
                )
                # Another sweep may have deleted some of them meanwhile.
                deleted += int(getattr(result, "rowcount", 0))
        if len(batch) < batch_size:
            break
    return deleted


def _delete_recordings(
    database: Database,
    files: RecordingFiles,
    before: datetime | None,
    batch_size: int,
    stop: threading.Event,
) -> int:
    """Delete the call recordings started before ``before``, rows then files, a batch per
    transaction, then the calls' recording settings made before it; the recordings' count.
    A row deleted takes its data key with it, so a file left by a failed unlink cannot be
    opened."""
    if before is None:
        return 0
    deleted = 0
    while not stop.is_set():
        with database.session() as session:
            batch = session.scalars(
                select(CallRecording.recording_id)
                .where(CallRecording.started_at < before)
                .order_by(CallRecording.id)
                .limit(batch_size)
            ).all()
            if batch:
                session.execute(
                    delete(CallRecording)
                    .where(CallRecording.recording_id.in_(batch))
                    .execution_options(synchronize_session=False)
                )
        files.remove(batch)
        deleted += len(batch)
        if len(batch) < batch_size:
            break
    if not stop.is_set():  # admins' choices for calls that old go with their recordings
        with database.session() as session:
            session.execute(
                delete(CallRecordingSetting).where(CallRecordingSetting.set_at < before)
            )
    return deleted


def _days_before(now: datetime, days: int) -> datetime | None:
    return None if days == 0 else now - timedelta(days=days)


def _count(session: Session, column: InstrumentedAttribute[Any], where: ColumnElement[bool]) -> int:
    return session.scalar(select(func.count(column)).where(where)) or 0


def _count_older(
    session: Session, time: InstrumentedAttribute[datetime], before: datetime | None
) -> int:
    return 0 if before is None else _count(session, time, time < before)
