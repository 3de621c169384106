"""biometrics.events.broker: bounded subscriber queues, replay of a call's recent events."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from biometrics.events import Broker, Event, Subscription

NOW = datetime(2024, 11, 15, tzinfo=UTC)


def event(call_id: str, number: int, kind: str = "verdict.changed") -> Event:
    return Event(f"{call_id}-{number}", kind, call_id, "8:acs:a", NOW, {"n": number})


def drain(subscription: Subscription) -> list[str]:
    async def read() -> list[str]:
        ids = []
        while (item := await subscription.next(timeout=0.01)) is not None:
            ids.append(item.id)
        return ids

    return asyncio.run(read())


def test_a_slow_subscriber_loses_its_oldest_events_not_memory() -> None:
    broker = Broker(queue_size=3)
    slow = broker.subscribe("c1")
    for number in range(10):
        broker.publish(event("c1", number))
    assert drain(slow) == ["c1-7", "c1-8", "c1-9"]
    assert slow.dropped == 7


def test_subscribers_see_their_call_and_all_call_subscribers_see_every_call() -> None:
    broker = Broker()
    one, everything = broker.subscribe("c1"), broker.subscribe(None)
    broker.publish(event("c1", 1))
    broker.publish(event("c2", 1))
    assert drain(one) == ["c1-1"]
    assert drain(everything) == ["c1-1", "c2-1"]


def test_a_late_subscriber_gets_the_calls_history_or_what_followed_its_last_event() -> None:
    broker = Broker(history_size=4)
    for number in range(6):
        broker.publish(event("c1", number))
    assert drain(broker.subscribe("c1")) == ["c1-2", "c1-3", "c1-4", "c1-5"]
    assert drain(broker.subscribe("c1", after="c1-3")) == ["c1-4", "c1-5"]
    assert drain(broker.subscribe("c1", after="gone")) == ["c1-2", "c1-3", "c1-4", "c1-5"]
    assert drain(broker.subscribe(None)) == []  # all-calls subscribers start from now


def test_forgetting_a_call_ends_its_subscriptions() -> None:
    broker = Broker()
    subscription = broker.subscribe("c1")
    broker.publish(event("c1", 1))
    broker.forget("c1")
    assert drain(subscription) == ["c1-1"]  # what was queued is still delivered
    assert subscription.closed
    assert drain(broker.subscribe("c1")) == []


def test_a_replay_from_the_shared_stream_goes_first_and_each_event_comes_once() -> None:
    """Events that reached the subscriber while its call's stream was read are dropped by
    their stream position; later ones stay, after the replay."""
    broker = Broker(history_size=0)  # with replicas, the shared stream keeps the history
    subscription = broker.subscribe("c1")
    positioned = [
        dataclasses.replace(event("c1", n), position=f"1700000000{n:03d}-{n % 2}") for n in range(5)
    ]
    broker.publish(positioned[2])  # arrived live while the stream was read...
    broker.publish(positioned[3])  # ...and this one after the read
    subscription.replay(positioned[:3])  # the stream held 0, 1 and 2
    assert drain(subscription) == ["c1-0", "c1-1", "c1-2", "c1-3"]
    broker.publish(event("c1", 9))
    assert broker.subscribe("c1").pending == 0  # nothing kept in memory
