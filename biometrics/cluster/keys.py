"""The names of everything the service keeps in Redis, in one place (docs/scale-out.md
lists them). All start with ``biometrics:`` so that the service can share a server."""

from __future__ import annotations

PREFIX = "biometrics:"
EVENTS_CHANNEL = PREFIX + "events"  # pub/sub: every call event, to every replica
WEBHOOK_STREAM = PREFIX + "webhooks"  # every event once, read by one consumer group a URL


def owner(call_id: str) -> str:
    """The lease: the id of the replica that holds the call, expiring unless renewed."""
    return f"{PREFIX}call:{call_id}:owner"


def call_events(call_id: str) -> str:
    """The call's events, in order (a stream of bounded length, expiring after the last)."""
    return f"{PREFIX}call:{call_id}:events"


def replica_channel(replica_id: str) -> str:
    """Pub/sub: requests to one replica (claims, hand-overs) and its requests' replies."""
    return f"{PREFIX}replica:{replica_id}"


def webhook_group(url_digest: str) -> str:
    return f"webhooks:{url_digest}"
