"""Webhook deliveries never wait for each other, and nothing is lost without a trace: what
the sender gives up on, what overflows, and what is undelivered at shutdown become dead
letters in the real database (SQLite and PostgreSQL); a database that refuses them does not
stop the sender."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

import pytest

from biometrics.clock import utcnow
from biometrics.events import Broker
from biometrics.events.dead_letter_writer import DeadLetterWriter
from biometrics.store import Database
from biometrics.store.dead_letters import DeadLetters, Undelivered
from tests.events.receiver import WebhookReceiver
from tests.events.senders import event, sender, stored

DOWN = "http://127.0.0.1:9/hooks"  # the discard port: nothing listens


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def arrival(receiver: WebhookReceiver, event_id: str) -> float:
    """Seconds until ``event_id`` was taken (204) by the receiver."""
    start = time.monotonic()
    await until(lambda: event_id in [e["id"] for e in receiver.events()])
    return time.monotonic() - start


def stop_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    [line] = [r for r in caplog.records if r.getMessage().startswith("webhooks stopped")]
    return line


def test_a_failing_event_does_not_delay_the_next(
    receiver: WebhookReceiver, dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.failing = {"e-E"}
    caplog.set_level(logging.INFO)

    async def scenario() -> float:
        broker = Broker()
        # The shipped policy: 6 attempts, 1 s doubling (E would hold a queue for 31 s).
        webhooks = sender(broker, receiver.url, dead_letters, attempts=6, backoff=1.0)
        webhooks.start()
        broker.publish(event("E"))
        broker.publish(event("F"))
        latency = await arrival(receiver, "e-F")
        await until(lambda: receiver.posted_ids().count("e-E") == 2)  # its retry, after 1 s
        # The drain reads that second 500; E's next retry is due after it ends.
        await webhooks.stop(drain_seconds=0.5)
        return latency

    latency = asyncio.run(scenario())
    assert latency < 0.5
    assert receiver.posted_ids().count("e-E") == 2
    [letter] = stored(dead_letters)  # E, waiting for its third attempt when stopped
    assert (letter.event_id, letter.reason, letter.attempts) == ("e-E", "shutdown", 2)
    assert stop_line(caplog).__dict__["undelivered_at_stop"] == 1


def test_stop_with_the_receiver_down_dead_letters_every_event(
    dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        broker = Broker()
        webhooks = sender(broker, DOWN, dead_letters, attempts=3, backoff=0.05)
        webhooks.start()
        for number in range(20):
            broker.publish(event(number))
        await asyncio.sleep(0)
        await webhooks.stop(drain_seconds=0.3)

    asyncio.run(scenario())
    letters = stored(dead_letters)
    assert sorted(letter.event_id for letter in letters) == sorted(f"e-{n}" for n in range(20))
    assert {letter.reason for letter in letters} <= {"out_of_attempts", "shutdown"}
    line = stop_line(caplog)
    assert (line.__dict__["delivered"], line.__dict__["dead_lettered"]) == (0, 20)
    assert line.__dict__["not_stored"] == 0


def test_stop_delivers_what_is_queued_first(
    receiver: WebhookReceiver, dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        broker = Broker()
        webhooks = sender(broker, receiver.url, dead_letters)
        webhooks.start()
        for number in range(12):
            broker.publish(event(number))
        await webhooks.stop(drain_seconds=10)

    asyncio.run(scenario())
    assert sorted(receiver.posted_ids()) == sorted(f"e-{n}" for n in range(12))
    assert stored(dead_letters) == []
    assert stop_line(caplog).__dict__["delivered"] == 12


def test_an_overflowing_queue_dead_letters_what_it_pushes_out(
    receiver: WebhookReceiver, dead_letters: DeadLetters
) -> None:
    async def scenario() -> None:
        broker = Broker()
        webhooks = sender(broker, receiver.url, dead_letters, queue_size=2)
        webhooks.start()
        for number in range(10):  # all at once: the queue holds 2
            broker.publish(event(number))
        await webhooks.stop(drain_seconds=10)

    asyncio.run(scenario())
    overflowed = [letter.event_id for letter in stored(dead_letters)]
    assert overflowed == [f"e-{n}" for n in range(8)]
    assert {letter.reason for letter in stored(dead_letters)} == {"queue_overflow"}
    assert sorted(receiver.posted_ids()) == ["e-8", "e-9"]


def test_beyond_the_waiting_retries_an_event_goes_straight_to_dead_letters(
    receiver: WebhookReceiver, dead_letters: DeadLetters
) -> None:
    receiver.failing = {"e-1", "e-2", "e-3"}

    async def scenario() -> None:
        broker = Broker()
        webhooks = sender(broker, receiver.url, dead_letters, backoff=30.0, max_retries=1)
        webhooks.start()
        for number in (1, 2, 3):
            broker.publish(event(number))
        await until(lambda: len(stored(dead_letters)) == 2)  # the two beyond the one
        await webhooks.stop(drain_seconds=0)

    asyncio.run(scenario())
    reasons = collections.Counter(letter.reason for letter in stored(dead_letters))
    assert reasons == {"retries_full": 2, "shutdown": 1}


def letter(number: int) -> Undelivered:
    return Undelivered(
        DOWN, f"e-{number}", "verdict.changed", "c1", "{}", 1, "refused", 400, None, utcnow()
    )


def test_a_database_that_refuses_dead_letters_keeps_them_in_memory_until_it_takes_them(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'later.db'}")  # no tables yet: writes fail
    store = DeadLetters(database)

    async def scenario() -> None:
        writer = DeadLetterWriter(store, backlog=2, retry_seconds=0.01)
        writer.start()
        for number in range(3):
            writer.add(letter(number))
        await asyncio.sleep(0.1)
        assert (writer.pending, writer.lost) == (2, 1)  # the oldest made room
        await asyncio.to_thread(database.upgrade)
        deadline = time.monotonic() + 10
        while writer.pending:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await writer.close() == 0

    asyncio.run(scenario())
    assert [row.event_id for row in stored(store)] == ["e-1", "e-2"]
    assert "not stored yet; kept in memory" in caplog.text
    assert "webhook dead letters lost" in caplog.text
    database.dispose()


def test_closing_while_the_database_refuses_says_how_many_were_not_stored(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'never.db'}")

    async def scenario() -> int:
        writer = DeadLetterWriter(DeadLetters(database), retry_seconds=30.0)
        writer.start()
        writer.add(letter(1))
        await asyncio.sleep(0.05)
        return await writer.close()  # does not wait out the 30 s

    started = time.monotonic()
    assert asyncio.run(scenario()) == 1
    assert time.monotonic() - started < 5
    database.dispose()
