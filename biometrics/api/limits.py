"""Limits on a request body, before and while it is read: over ``max_bytes`` it is refused
with 413 (at once when its Content-Length says so), and one that has not all arrived
``timeout_seconds`` after the request's headers is answered 408, however slowly it trickles.

A total rather than a timeout per read: a slow-loris client sends a byte now and then, and a
per-read timeout would let it hold the connection for ever; the total bounds how long any
client holds it. Either answer carries ``Connection: close``, so that the server closes the
connection instead of waiting for the rest of the body.

Any other answer that comes before the body was read (a wrong key, the database away) waits
for the rest of the body, within the same limits, and keeps the connection: a server that
closes a connection with data unread resets it, and the client can lose the answer it was
sent. Headers that trickle are not seen here: uvicorn has no timeout for them, a reverse
proxy must set one (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biometrics.api.errors import error_response
from biometrics.errors import PayloadTooLarge, RequestTimeout

CLOSE = (b"connection", b"close")


class BodyLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _LimitedBody(self, scope, receive, send)
        if body.refused:
            detail = self.size_detail(body.declared_size or 0)
            response = error_response(413, PayloadTooLarge.code, detail)
            await response(scope, _never_receive, body.send)
            return
        await self.app(scope, body.receive, body.send)

    def size_detail(self, size: int) -> str:
        return (
            f"the request body ({size} bytes or more) exceeds the limit of {self.max_bytes} "
            "bytes (BIOMETRICS_MAX_UPLOAD_BYTES)"
        )


class _LimitedBody:
    """One request's body as the application reads it, counted and timed."""

    def __init__(self, limits: BodyLimits, scope: Scope, receive: Receive, send: Send) -> None:
        self._limits = limits
        self._receive = receive
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + limits.timeout_seconds
        self._received = 0
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        self.declared_size = int(length) if length is not None and length.isdigit() else None
        # Without a length or a chunked encoding a request has no body (RFC 9112 6.3).
        self._complete = self.declared_size == 0 or (
            self.declared_size is None and b"transfer-encoding" not in headers
        )
        # Over a limit (its declared length now, its bytes or its time later): the rest of
        # the body is not read.
        self.refused = self.declared_size is not None and self.declared_size > limits.max_bytes

    async def receive(self) -> Message:
        if self._complete:  # what follows the body, e.g. a disconnect during a stream
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._deadline - self._loop.time())
        except TimeoutError:
            self.refused = True
            raise RequestTimeout(
                f"the request body did not arrive within {self._limits.timeout_seconds:g} s "
                "(BIOMETRICS_UPLOAD_TIMEOUT_SECONDS); send it without pauses"
            ) from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limits.max_bytes:
                self.refused = True
                raise PayloadTooLarge(self._limits.size_detail(self._received))
            self._complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self._complete:
            if not self.refused:
                await self._read_the_rest()
            if not self._complete:
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
        await self._send(message)

    async def _read_the_rest(self) -> None:
        """Read, and drop, what is left of a body answered without it; over a limit, or
        with the client gone, the connection closes instead."""
        with contextlib.suppress(PayloadTooLarge, RequestTimeout):
            while not self._complete:
                if (await self.receive())["type"] == "http.disconnect":
                    return


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}
