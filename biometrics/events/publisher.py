"""A call's typed events onto the broker (one process) or the replicas' shared event log
(:class:`biometrics.cluster.events.SharedEvents`), for server-sent events and webhooks. It
only publishes: storing the call is the store's business. Returns at once."""

from __future__ import annotations

from typing import Protocol

from biometrics.clock import utcnow
from biometrics.events.broker import Event
from biometrics.events.call_events import CallEvent


class EventSink(Protocol):
    def publish(self, event: Event) -> None: ...


class CallPublisher:
    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def publish(self, event: CallEvent) -> None:
        self._sink.publish(
            Event.new(event.type, event.call_id, event.subject, utcnow(), event.data())
        )
