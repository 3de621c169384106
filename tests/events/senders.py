"""Webhook senders for the tests, writing dead letters to a real database, and what they
stored."""

from __future__ import annotations

from datetime import UTC, datetime

from biometrics.events import Broker, Event
from biometrics.events.dead_letter_writer import DeadLetterWriter
from biometrics.events.webhooks import RetryPolicy, WebhookSender
from biometrics.store.dead_letters import DeadLetter, DeadLetterQuery, DeadLetters

SECRET = "s3cret"
NOW = datetime(2024, 11, 15, tzinfo=UTC)


def event(number: int | str) -> Event:
    return Event(f"e-{number}", "verdict.changed", "c1", "8:acs:a", NOW, {"n": number})


def sender(
    broker: Broker,
    url: str,
    store: DeadLetters,
    attempts: int = 3,
    backoff: float = 0.01,
    **options: int,
) -> WebhookSender:
    return WebhookSender(
        broker,
        [url],
        SECRET,
        RetryPolicy(attempts, backoff),
        2.0,
        DeadLetterWriter(store, retry_seconds=0.01),
        **options,
    )


def stored(store: DeadLetters) -> list[DeadLetter]:
    return store.query(DeadLetterQuery(limit=10_000))
