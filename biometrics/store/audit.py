"""The audit trail: rows are added and read, never changed or removed here (only the
retention sweep, :mod:`biometrics.store.lifecycle`, deletes rows past
``BIOMETRICS_AUDIT_RETENTION_DAYS``). Blocking; call from a worker thread.

A row says who acted (:class:`Origin`), what they did (``speaker.enroll``, ``key.revoke``,
``auth.refused``, ...), to whom (a speaker id, a key id, a call's participant) and how it
ended (a decision, ``ok``, an error code). It holds no secret, no vector, no score and no
audio, so it may outlive the speaker it names: deleting a speaker keeps its rows.

With a :class:`~biometrics.store.spool.Spool`, a row that cannot be written while the
database is unreachable waits there, in order, and is written when it answers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from biometrics.clock import isoformat, utcnow
from biometrics.store.database import Database
from biometrics.store.models import AuditRecord
from biometrics.store.spool import Spool

ANONYMOUS = "anonymous"  # authentication off, or no key given
CLI = "cli"  # the command line, run by whoever holds the database
SERVICE = "service"  # the service itself: a live call's verdicts


@dataclasses.dataclass(frozen=True)
class Origin:
    """Who acts, in which request, from which address."""

    actor: str
    request_id: str | None = None
    source: str | None = None


COMMAND_LINE = Origin(CLI)


class RefusalThrottle:
    """Which of an actor's repeated refusals get a row: the first in each ``window_seconds``.
    A key over its rate, or over its sockets, would otherwise write a row per refused
    attempt, and the trail itself would become the cheapest way to load the database. The
    refusals it skips are still logged. Actors are genuine key ids (a refusal of this kind
    comes after authentication), so what it remembers is bounded by the number of keys."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_seconds
        self._clock = clock
        self._written: dict[str, float] = {}  # actor -> when its last row was written

    def first(self, actor: str) -> bool:
        """True (and the window starts again) when ``actor``'s refusal is to be written."""
        now = self._clock()
        last = self._written.get(actor)
        if last is not None and now - last < self._window:
            return False
        self._written[actor] = now
        return True


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    call_id: str | None
    participant_raw_id: str | None
    outcome: str
    request_id: str | None
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "at": isoformat(self.at)}


@dataclasses.dataclass(frozen=True)
class AuditQuery:
    subject: str | None = None
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after: int | None = None  # the cursor: rows after this id
    limit: int = 50


class AuditLog:
    def __init__(self, database: Database, spool: Spool | None = None) -> None:
        self._database = database
        self._spool = spool

    def record(
        self,
        origin: Origin,
        action: str,
        subject: str | None,
        outcome: str,
        *,
        call_id: str | None = None,
        participant_raw_id: str | None = None,
    ) -> None:
        at = utcnow()  # when it happened, however late it is written

        def write(session: Session) -> None:  # a new row each try
            row = audit_row(
                origin,
                action,
                subject,
                outcome,
                at=at,
                call_id=call_id,
                participant_raw_id=participant_raw_id,
            )
            session.add(row)

        if self._spool is not None:
            self._spool.submit("audit", write)
            return
        with self._database.session() as session:
            write(session)

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        """Rows in the order they were written, oldest first."""
        statement = select(AuditRecord).order_by(AuditRecord.id).limit(query.limit)
        if query.subject is not None:
            statement = statement.where(AuditRecord.subject == query.subject)
        if query.action is not None:
            statement = statement.where(AuditRecord.action == query.action)
        if query.since is not None:
            statement = statement.where(AuditRecord.at >= query.since)
        if query.until is not None:
            statement = statement.where(AuditRecord.at < query.until)
        if query.after is not None:
            statement = statement.where(AuditRecord.id > query.after)
        with self._database.session() as session:
            return [_entry(row) for row in session.scalars(statement)]


def audit_row(
    origin: Origin,
    action: str,
    subject: str | None,
    outcome: str,
    *,
    at: datetime | None = None,
    call_id: str | None = None,
    participant_raw_id: str | None = None,
) -> AuditRecord:
    """One row of the trail (made ``at``, default now), for :meth:`AuditLog.record` and for
    a caller that writes it in a transaction of its own (the lifecycle sweep, beside the
    change it records)."""
    return AuditRecord(
        at=at or utcnow(),
        actor=_text(origin.actor, 64),
        action=action,
        subject=_text(subject, 256),
        call_id=_text(call_id, 256),
        participant_raw_id=_text(participant_raw_id, 256),
        outcome=_text(outcome, 64),
        request_id=_text(origin.request_id, 128),
        source=_text(origin.source, 64),
    )


@overload
def _text(value: str, limit: int) -> str: ...
@overload
def _text(value: str | None, limit: int) -> str | None: ...
def _text(value: str | None, limit: int) -> str | None:
    """``value`` as a column takes it: cut to ``limit``, anything unprintable (a NUL from a
    decoded path, say) as ``?``, so that a hostile id cannot keep its row from being
    written."""
    if value is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def _entry(row: AuditRecord) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        call_id=row.call_id,
        participant_raw_id=row.participant_raw_id,
        outcome=row.outcome,
        request_id=row.request_id,
        source=row.source,
    )
