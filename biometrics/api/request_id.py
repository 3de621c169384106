"""A request id for every request and socket: the caller's ``X-Request-ID`` when it is a
sane one (1-128 printable ASCII characters, no spaces), else a new one; kept in the
scope's state for the audit trail, in the log context of everything the request does (its
log lines carry ``request_id``), and echoed in the response's ``X-Request-ID``."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biometrics.logs import log_context

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[\x21-\x7e]{1,128}$")


def request_id_of(headers: Headers) -> str:
    given = headers.get(HEADER, "")
    return given if _SANE.match(given) else uuid.uuid4().hex


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
