"""An in-process publish/subscribe broker for call events.

Publishing never waits and never grows memory without bound: every subscriber has a
queue of fixed length, and when a slow one (a stalled SSE client, an unreachable webhook
receiver) lets it fill, its oldest events are dropped and counted. The audio path that
publishes a verdict is therefore never slowed by who listens.

A subscriber that must not lose events silently (webhooks) passes ``on_drop``: each event
its full queue drops is handed to it (to be stored as a dead letter) instead.

Each call keeps its last events, so that a subscriber who comes late (or reconnects with
``Last-Event-ID``) first receives what it missed.

Everything runs on the event loop thread; nothing here is thread-safe, nor needs to be.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256
HISTORY_SIZE = 256


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    type: str  # e.g. "verdict.changed"
    call_id: str
    subject: str  # the participant raw id, or the call id for call-wide events
    time: datetime
    data: dict[str, Any]
    # Where the event lies in its call's shared stream (a Redis stream id, "ms-seq"), when
    # replicas share events; None in one process.
    position: str | None = None

    @classmethod
    def new(
        cls, type: str, call_id: str, subject: str, time: datetime, data: dict[str, Any]
    ) -> Event:
        return cls(str(uuid.uuid4()), type, call_id, subject, time, data)


class Subscription:
    """Events of one call (or of every call, ``call_id`` None), in order, until closed."""

    def __init__(
        self, call_id: str | None, size: int, on_drop: Callable[[Event], None] | None = None
    ) -> None:
        self.call_id = call_id
        self.dropped = 0
        self._on_drop = on_drop
        self._queue: collections.deque[Event] = collections.deque(maxlen=size)
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning(
                    "a slow event subscriber is losing its oldest events",
                    extra={"call_id": self.call_id, "dropped": self.dropped},
                )
            if self._on_drop is not None:
                self._on_drop(self._queue[0])  # the one append is about to push out
        self._queue.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; None once closed and drained, or after ``timeout`` seconds."""
        while not self._queue:
            if self._closed:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._queue.popleft()

    @property
    def capacity(self) -> int:
        return self._queue.maxlen or 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed and not self._queue

    def replay(self, earlier: list[Event]) -> None:
        """Put ``earlier`` events (read from the call's shared stream) before those queued,
        dropping the queued ones that are among them: each event once, in order."""
        last = _position(earlier[-1]) if earlier else None
        queued = [event for event in self._queue if last is None or _position(event) > last]
        self._queue.clear()
        for event in [*earlier, *queued]:
            self.offer(event)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self.next()) is not None:
            yield event


def _position(event: Event) -> tuple[int, int]:
    milliseconds, _, sequence = (event.position or "0-0").partition("-")
    return int(milliseconds), int(sequence or 0)


class Broker:
    def __init__(self, queue_size: int = QUEUE_SIZE, history_size: int = HISTORY_SIZE) -> None:
        self._queue_size = queue_size
        self._history_size = history_size
        self._by_call: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._everything: set[Subscription] = set()
        self._history: dict[str, collections.deque[Event]] = {}

    def subscribe(
        self,
        call_id: str | None,
        *,
        after: str | None = None,
        size: int | None = None,
        on_drop: Callable[[Event], None] | None = None,
    ) -> Subscription:
        """A call's subscription starts with the call's retained events (those after the
        event id ``after`` when it is among them); an all-calls one with new events only."""
        subscription = Subscription(call_id, size or self._queue_size, on_drop)
        if call_id is None:
            self._everything.add(subscription)
            return subscription
        history = list(self._history.get(call_id, ()))
        ids = [event.id for event in history]
        if after is not None and after in ids:
            history = history[ids.index(after) + 1 :]
        for event in history:
            subscription.offer(event)
        self._by_call[call_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        self._everything.discard(subscription)
        if subscription.call_id is not None:
            listeners = self._by_call.get(subscription.call_id)
            if listeners is not None:
                listeners.discard(subscription)
                if not listeners:
                    del self._by_call[subscription.call_id]

    def publish(self, event: Event) -> None:
        history = self._history.get(event.call_id)
        if history is None and self._history_size:  # 0: the shared stream keeps them
            history = self._history[event.call_id] = collections.deque(maxlen=self._history_size)
        if history is not None:
            history.append(event)
        for subscription in (*self._by_call.get(event.call_id, ()), *self._everything):
            subscription.offer(event)

    def forget(self, call_id: str) -> None:
        """The call left memory: drop its history and end its subscriptions."""
        self._history.pop(call_id, None)
        for subscription in list(self._by_call.pop(call_id, ())):
            subscription.close()

    def close(self) -> None:
        for listeners in [self._everything, *self._by_call.values()]:
            for subscription in listeners:
                subscription.close()
        self._everything.clear()
        self._by_call.clear()
