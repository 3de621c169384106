"""The bad messages the soak sends on call sockets, and what the service documents for each:
the socket kept, or closed with a code."""

from __future__ import annotations

import asyncio
import contextlib
import json

from websockets.asyncio.client import ClientConnection

from biometrics.config import Settings
from biometrics.streaming.protocol import AudioFrame, encode_audio

MALFORMED_KINDS = ("bad_json", "bad_base64", "wrong_kind", "oversized")
# Throwaway sockets also get bad input before their metadata, where it closes the socket.
THROWAWAY_KINDS = (*MALFORMED_KINDS, "bad_json_first", "binary_first")
KEPT = "kept"
# What the service documents for each (README, "Bad input on the socket").
EXPECTED_OUTCOMES = {
    "bad_json": KEPT,
    "bad_base64": KEPT,
    "wrong_kind": KEPT,
    "oversized": "closed 1009",
    "bad_json_first": "closed 1007",
    "binary_first": "closed 1007",
}
PROBE_SECONDS = 0.5  # after a bad message: does the service close the socket?
MAX_MESSAGE_BYTES = Settings.stream_max_message_bytes  # the service's default


async def drained(websocket: ClientConnection) -> None:
    """Wait until what was sent has left and the service had a moment to read it, before a
    fault that ends the socket: the frames counted as sent then all reached the service.
    (Without the wait, a socket closed 1009 for an oversized message was seen to lose the
    frames sent just before it, 4 of 51,200 in a 2-minute soak: the server closes the
    connection before the application has read everything that arrived.)"""
    while websocket.transport.get_write_buffer_size():
        await asyncio.sleep(0.01)
    await asyncio.sleep(PROBE_SECONDS)


def bad_message(kind: str, frame: AudioFrame) -> str | bytes:
    """A message the service must drop (or close the socket on), shaped after ``frame``."""
    if kind in ("bad_json", "bad_json_first"):
        return encode_audio(frame)[:-7]  # cut off mid-object
    if kind == "binary_first":
        return frame.pcm
    if kind == "wrong_kind":
        return json.dumps({"kind": "SoakNonsense", "soakNonsense": {"data": "x"}})
    message = json.loads(encode_audio(frame))
    if kind == "bad_base64":
        message["audioData"]["data"] = "@@ not base64 @@"
        return json.dumps(message)
    assert kind == "oversized"
    message["audioData"]["data"] = "A" * (MAX_MESSAGE_BYTES + 4)
    return json.dumps(message)


async def probe(websocket: ClientConnection) -> str:
    """``kept`` if the socket is still open a moment later, else ``closed <code>``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(websocket.wait_closed(), PROBE_SECONDS)
    return KEPT if websocket.close_code is None else f"closed {websocket.close_code}"
