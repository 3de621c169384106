"""Call events shared by replicas: each event is appended to its call's Redis stream (and,
with webhooks, to the one webhook stream) and published to every replica in the same
server-side script, by one writer task per replica, so that a call's events (all from the
replica that holds it) keep their order. Each replica's listener hands them to its own
broker, whose SSE subscribers therefore see every call's events wherever it streams; a
subscriber starts with the call's stream (replay from ``Last-Event-ID``), and the events
that reached it meanwhile are dropped by their stream position, so each comes once.

A call's stream keeps its last ``STREAM_MAXLEN`` events (trimmed approximately, which is
cheap) and expires ``ttl_seconds`` after its last event. While Redis is unreachable the
events go to this replica's own subscribers only (logged); webhooks then miss them.

Webhooks read the webhook stream through one consumer group per URL
(:class:`WebhookFeed`): each event goes to one replica's sender, which acknowledges it once
delivered or dead-lettered; an event left unacknowledged longer than every retry could take
(its replica died) is claimed by another replica and sent again (a receiver drops ids it has
seen, as for any retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from biometrics.cluster import keys
from biometrics.cluster.bus import Bus
from biometrics.events.broker import Broker, Event, Subscription

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 1000  # events kept per call: a call makes a few dozen
WEBHOOK_MAXLEN = 100_000  # events kept for the webhook groups (minutes of a busy cluster)
READ_BATCH = 100
BLOCK_MS = 1000
ERROR_PAUSE_SECONDS = 1.0

# KEYS: the call's stream, the webhook stream. ARGV: the event's JSON, the call stream's
# length and TTL, whether webhooks want it, the webhook stream's length, the channel.
_APPEND = """
local position = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[1])
end
redis.call('PUBLISH', ARGV[6], position .. ' ' .. ARGV[1])
return position
"""


def encode(event: Event) -> str:
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "call_id": event.call_id,
            "subject": event.subject,
            "time": event.time.isoformat(),
            "data": event.data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode(text: str, position: str | None) -> Event:
    value = json.loads(text)
    return Event(
        value["id"],
        value["type"],
        value["call_id"],
        value["subject"],
        datetime.fromisoformat(value["time"]),
        value["data"],
        position,
    )


class SharedEvents:
    """The cluster's event log: ``publish`` (never waits), ``subscribe`` (with replay)."""

    def __init__(
        self, redis: Redis, bus: Bus, broker: Broker, ttl_seconds: int, webhooks: bool
    ) -> None:
        self._redis = redis
        self._broker = broker
        self._ttl = ttl_seconds
        self._webhooks = webhooks
        self._append = redis.register_script(_APPEND)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._failing = False
        self.round_trips = 0  # the writer's, one per batch of events
        bus.on(keys.EVENTS_CHANNEL, self._on_event)

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    def publish(self, event: Event) -> None:
        self._queue.put_nowait(event)

    async def close(self) -> None:
        """Write what is queued (the last calls' ends), then stop."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=5.0)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def subscribe(self, call_id: str, after: str | None) -> tuple[Subscription, bool]:
        """The call's events from its stream (after the event id ``after`` when it is
        there), then each as it comes; and whether Redis holds any event of the call."""
        subscription = self._broker.subscribe(call_id)
        try:
            entries = await cast(
                Awaitable[list[tuple[str, dict[str, str]]]],
                self._redis.xrange(keys.call_events(call_id)),
            )
        except BaseException:
            self._broker.unsubscribe(subscription)
            raise
        earlier = [decode(fields["e"], position) for position, fields in entries]
        ids = [event.id for event in earlier]
        if after is not None and after in ids:
            earlier = earlier[ids.index(after) + 1 :]
        subscription.replay(earlier)
        return subscription, bool(entries)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._broker.unsubscribe(subscription)

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except (RedisError, OSError) as error:
                if not self._failing:
                    logger.error(
                        "Redis unreachable: call events reach this replica's subscribers only "
                        "(not other replicas' nor webhooks) until it is back",
                        extra={"error": str(error), "events": len(batch)},
                    )
                self._failing = True
                for event in batch:
                    self._broker.publish(event)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[Event]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in batch:
                await self._append(
                    keys=[keys.call_events(event.call_id), keys.WEBHOOK_STREAM],
                    args=[
                        encode(event),
                        STREAM_MAXLEN,
                        self._ttl,
                        "1" if self._webhooks else "0",
                        WEBHOOK_MAXLEN,
                        keys.EVENTS_CHANNEL,
                    ],
                    client=pipe,
                )
            await pipe.execute()
        self.round_trips += 1
        if self._failing:
            self._failing = False
            logger.info("Redis answers again: call events are shared")

    def _on_event(self, data: str) -> None:
        position, _, text = data.partition(" ")
        self._broker.publish(decode(text, position))


class WebhookFeed:
    """Webhook events for one replica's senders, from the webhook stream: each URL's lane
    reads through its own consumer group, acknowledges each event settled, and takes over
    events another replica left unacknowledged for ``claim_idle_seconds``."""

    def __init__(self, redis: Redis, consumer: str, claim_idle_seconds: float) -> None:
        self._redis = redis
        self._consumer = consumer
        self._claim_idle_ms = int(claim_idle_seconds * 1000)
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._entries: dict[tuple[str, str], str] = {}  # (group, event id) -> stream id
        self._groups: dict[int, str] = {}
        self._acknowledging: set[asyncio.Task[None]] = set()

    def subscribe(
        self, url: str, size: int, on_drop: Callable[[Event], None] | None
    ) -> Subscription:
        subscription = Subscription(None, size, on_drop)
        group = keys.webhook_group(hashlib.sha256(url.encode()).hexdigest()[:16])
        self._groups[id(subscription)] = group
        self._readers[id(subscription)] = asyncio.get_running_loop().create_task(
            self._read_forever(group, subscription)
        )
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        reader = self._readers.pop(id(subscription), None)
        if reader is not None:
            reader.cancel()
        subscription.close()

    def settled(self, subscription: Subscription, event_id: str) -> None:
        group = self._groups.get(id(subscription))
        position = None if group is None else self._entries.pop((group, event_id), None)
        if group is not None and position is not None:
            task = asyncio.get_running_loop().create_task(self._acknowledge(group, position))
            self._acknowledging.add(task)  # referenced until done
            task.add_done_callback(self._acknowledging.discard)

    async def _acknowledge(self, group: str, position: str) -> None:
        try:
            await self._redis.xack(keys.WEBHOOK_STREAM, group, position)
        except (RedisError, OSError) as error:
            logger.error(
                "Redis unreachable: a delivered webhook was not acknowledged; another "
                "replica may send it again",
                extra={"error": str(error), "position": position},
            )

    async def _read_forever(self, group: str, subscription: Subscription) -> None:
        await self._create_group(group)
        loop = asyncio.get_running_loop()
        next_claim = loop.time()
        while True:
            room = subscription.capacity - subscription.pending
            if room <= 0:
                await asyncio.sleep(0.05)
                continue
            try:
                if loop.time() >= next_claim:
                    next_claim = loop.time() + max(1.0, self._claim_idle_ms / 4000)
                    claimed = await self._redis.xautoclaim(
                        keys.WEBHOOK_STREAM,
                        group,
                        self._consumer,
                        self._claim_idle_ms,
                        count=min(room, READ_BATCH),
                    )
                    self._offer(group, subscription, claimed[1])
                    continue
                read = await cast(
                    Awaitable[list[Any]],
                    self._redis.xreadgroup(
                        group,
                        self._consumer,
                        {keys.WEBHOOK_STREAM: ">"},
                        count=min(room, READ_BATCH),
                        block=BLOCK_MS,
                    ),
                )
                for _, entries in read or ():
                    self._offer(group, subscription, entries)
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                await self._create_group(group)  # the stream was deleted (Redis flushed)
            except (RedisError, OSError) as error:
                logger.error(
                    "Redis unreachable: webhooks wait for it",
                    extra={"group": group, "error": str(error)},
                )
                await asyncio.sleep(ERROR_PAUSE_SECONDS)

    def _offer(
        self, group: str, subscription: Subscription, entries: list[tuple[str, dict[str, str]]]
    ) -> None:
        for position, fields in entries:
            if fields is None or "e" not in fields:  # trimmed away while pending
                continue
            event = decode(fields["e"], position)
            self._entries[(group, event.id)] = position
            subscription.offer(event)

    async def _create_group(self, group: str) -> None:
        while True:
            try:
                await self._redis.xgroup_create(keys.WEBHOOK_STREAM, group, id="$", mkstream=True)
                return
            except ResponseError as error:
                if "BUSYGROUP" in str(error):
                    return  # another replica made it
                raise
            except (RedisError, OSError) as error:
                logger.error(
                    "Redis unreachable: webhooks wait for it",
                    extra={"group": group, "error": str(error)},
                )
                await asyncio.sleep(ERROR_PAUSE_SECONDS)
