"""Server-sent events: a subscription written as ``text/event-stream``.

Each event is ``id:`` (for ``Last-Event-ID`` on reconnect), ``event:`` (its type, e.g.
``verdict.changed``) and one ``data:`` line of JSON. A comment line every
``keepalive_seconds`` keeps proxies from closing a quiet stream. The stream ends after
``call.ended`` (a client that reconnects with ``Last-Event-ID`` resumes a resumed call).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from biometrics.events.broker import Event, Subscription

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = b": keep-alive\n\n"
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
END_TYPES = frozenset({"call.ended"})


def frame(event: Event) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def stream(
    subscription: Subscription, keepalive_seconds: float = KEEPALIVE_SECONDS
) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    while not subscription.closed:
        event = await subscription.next(timeout=keepalive_seconds)
        if event is None:
            if not subscription.closed:
                yield KEEPALIVE
            continue
        yield frame(event)
        if event.type in END_TYPES and not subscription.pending:
            return  # (an older call.ended replayed before a resumed call's events is passed)
