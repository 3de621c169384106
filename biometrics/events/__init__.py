"""Call events for the outside world: an in-process broker, server-sent events for the
agent desktop, and signed CloudEvents webhooks for the contact-center backend."""

from biometrics.events.broker import Broker, Event, Subscription

__all__ = ["Broker", "Event", "Subscription"]
