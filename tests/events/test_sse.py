"""biometrics.events.sse: events written as text/event-stream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from biometrics.events import Broker, Event
from biometrics.events.sse import KEEPALIVE, frame, stream

NOW = datetime(2024, 11, 15, tzinfo=UTC)


def test_an_event_is_an_id_a_type_and_one_line_of_json() -> None:
    event = Event("e-1", "verdict.changed", "c1", "a", NOW, {"text": "two\nlines"})
    assert frame(event) == (b'id: e-1\nevent: verdict.changed\ndata: {"text":"two\\nlines"}\n\n')


def test_the_stream_keeps_alive_and_ends_after_call_ended() -> None:
    async def scenario() -> list[bytes]:
        broker = Broker()
        subscription = broker.subscribe("c1")
        chunks: list[bytes] = []

        async def read() -> None:
            async for chunk in stream(subscription, keepalive_seconds=0.02):
                chunks.append(chunk)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        broker.publish(Event("e-1", "verdict.changed", "c1", "a", NOW, {}))
        broker.publish(Event("e-2", "call.ended", "c1", "c1", NOW, {}))
        await asyncio.wait_for(reader, 1)
        return chunks

    chunks = asyncio.run(scenario())
    assert chunks[0].startswith(b"retry: ")
    assert KEEPALIVE in chunks
    assert [c.split(b"\n")[0] for c in chunks if c.startswith(b"id:")] == [b"id: e-1", b"id: e-2"]
