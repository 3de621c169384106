"""Webhook dead letters: the events the sender gave up on, kept so that an admin can read
them and send them again. Blocking; call from a worker thread.

The sender writes in batches of :class:`Undelivered` (a new row, or the row of a re-sent
dead letter that failed again) and :class:`Redelivered` (a re-sent one was taken), each
batch in one transaction, so that a backlog kept in memory while the database was down
goes in whole or not at all.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from biometrics.clock import isoformat
from biometrics.store.database import Database
from biometrics.store.models import WebhookDeadLetter

# Why the sender gave up on an event (the ``reason`` column).
OUT_OF_ATTEMPTS = "out_of_attempts"  # every attempt failed in a way worth retrying
REFUSED = "refused"  # an answer that is final: a 4xx other than 408/425/429, a redirect
RETRIES_FULL = "retries_full"  # too many events of its URL were waiting for a retry
QUEUE_OVERFLOW = "queue_overflow"  # its URL's queue was full and dropped its oldest
SHUTDOWN = "shutdown"  # still undelivered when the service stopped

PROBLEM_CHARS = 512


@dataclasses.dataclass(frozen=True)
class Undelivered:
    """An event given up on. With ``dead_letter_id`` it is a re-sent dead letter that failed
    again: its row takes the new attempts and outcome instead of a new row being added."""

    url: str
    event_id: str
    event_type: str
    call_id: str
    body: str  # the CloudEvent JSON text
    attempts: int
    reason: str
    last_status: int | None
    problem: str | None
    at: datetime
    dead_letter_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Redelivered:
    dead_letter_id: int
    at: datetime


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    id: int
    url: str
    event_id: str
    event_type: str
    call_id: str
    body: str
    attempts: int
    reason: str
    last_status: int | None
    problem: str | None
    created_at: datetime
    retried_at: datetime | None
    delivered_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON, the CloudEvent parsed (it was signed when sent; the signature
        and the secret are not kept)."""
        fields = dataclasses.asdict(self)
        del fields["body"]
        return {
            **fields,
            "event": json.loads(self.body),
            "created_at": isoformat(self.created_at),
            "retried_at": isoformat(self.retried_at),
            "delivered_at": isoformat(self.delivered_at),
        }


@dataclasses.dataclass(frozen=True)
class DeadLetterQuery:
    url: str | None = None
    call_id: str | None = None
    delivered: bool | None = None  # only those re-delivered (True) or not (False)
    after: int | None = None  # the cursor: rows after this id
    limit: int = 50


class DeadLetters:
    def __init__(self, database: Database) -> None:
        self._database = database

    def save(self, changes: Sequence[Undelivered | Redelivered]) -> None:
        """Write ``changes`` in one transaction."""
        with self._database.session() as session:
            for change in changes:
                if isinstance(change, Redelivered):
                    session.execute(
                        update(WebhookDeadLetter)
                        .where(WebhookDeadLetter.id == change.dead_letter_id)
                        .values(delivered_at=change.at)
                    )
                elif change.dead_letter_id is not None:
                    session.execute(
                        update(WebhookDeadLetter)
                        .where(WebhookDeadLetter.id == change.dead_letter_id)
                        .values(
                            attempts=change.attempts,
                            reason=change.reason,
                            last_status=change.last_status,
                            problem=_problem(change.problem),
                        )
                    )
                else:
                    session.add(_row(change))

    def get(self, dead_letter_id: int) -> DeadLetter | None:
        with self._database.session() as session:
            row = session.get(WebhookDeadLetter, dead_letter_id)
            return None if row is None else _letter(row)

    def query(self, query: DeadLetterQuery) -> list[DeadLetter]:
        """Rows oldest first."""
        statement = select(WebhookDeadLetter).order_by(WebhookDeadLetter.id).limit(query.limit)
        if query.url is not None:
            statement = statement.where(WebhookDeadLetter.url == query.url)
        if query.call_id is not None:
            statement = statement.where(WebhookDeadLetter.call_id == query.call_id)
        if query.delivered is not None:
            delivered = WebhookDeadLetter.delivered_at
            statement = statement.where(
                delivered.is_not(None) if query.delivered else delivered.is_(None)
            )
        if query.after is not None:
            statement = statement.where(WebhookDeadLetter.id > query.after)
        with self._database.session() as session:
            return [_letter(row) for row in session.scalars(statement)]

    def mark_retried(self, dead_letter_id: int, at: datetime) -> DeadLetter | None:
        """Note that the row is being sent again; the row as it is now."""
        with self._database.session() as session:
            row = session.get(WebhookDeadLetter, dead_letter_id)
            if row is None:
                return None
            row.retried_at = at
            return _letter(row)


def _problem(problem: str | None) -> str | None:
    return None if problem is None else problem[:PROBLEM_CHARS]


def _row(letter: Undelivered) -> WebhookDeadLetter:
    return WebhookDeadLetter(
        url=letter.url,
        event_id=letter.event_id,
        event_type=letter.event_type,
        call_id=letter.call_id,
        body=letter.body,
        attempts=letter.attempts,
        reason=letter.reason,
        last_status=letter.last_status,
        problem=_problem(letter.problem),
        created_at=letter.at,
    )


def _letter(row: WebhookDeadLetter) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        url=row.url,
        event_id=row.event_id,
        event_type=row.event_type,
        call_id=row.call_id,
        body=row.body,
        attempts=row.attempts,
        reason=row.reason,
        last_status=row.last_status,
        problem=row.problem,
        created_at=row.created_at,
        retried_at=row.retried_at,
        delivered_at=row.delivered_at,
    )
