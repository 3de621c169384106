"""A call's typed events onto the broker, for server-sent events and webhooks. It only
publishes: storing the call is the store's business. Returns at once."""

from __future__ import annotations

from biometrics.clock import utcnow
from biometrics.events.broker import Broker, Event
from biometrics.events.call_events import CallEvent


class CallPublisher:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def publish(self, event: CallEvent) -> None:
        self._broker.publish(
            Event.new(event.type, event.call_id, event.subject, utcnow(), event.data())
        )
