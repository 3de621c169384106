"""Refuse request bodies over the upload limit before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biometrics.api.errors import error_response
from biometrics.errors import PayloadTooLarge


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._detail(received))
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        response = error_response(413, PayloadTooLarge.code, self._detail(size))
        await response({"type": "http"}, _never_receive, send)

    def _detail(self, size: int) -> str:
        return (
            f"the request body ({size} bytes or more) exceeds the limit of {self.max_bytes} "
            "bytes (BIOMETRICS_MAX_UPLOAD_BYTES)"
        )


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}
