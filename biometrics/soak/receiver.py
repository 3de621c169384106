"""Webhook receivers on loopback: ``PostServer`` answers each POST as it is told, and
``WebhookSink``, the soak's, checks signatures, keeps the unique event ids and can be switched
down."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from biometrics.events.webhooks import SIGNATURE_HEADER, verify_signature

# A POST's headers and body -> the status to answer with; None: close without an answer.
Answer = Callable[[Message, bytes], int | None]


class PostServer:
    """An HTTP server on 127.0.0.1 (a free port) that hands every POST to ``answer``, from
    a thread of its own; serving from ``start`` (or the start of its ``with`` block) on."""

    def __init__(self, answer: Answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = answer(self.headers, body)
                if status is None:  # a receiver that drops the delivery: no answer at all
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PostServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebhookSink:
    """A receiver on loopback that checks each signature, keeps the unique event ids (by
    call), and can be switched down: answering 503, or closing without an answer."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.mode: Literal["up", "refuse", "close"] = "up"
        self.posts = 0
        self.refused = 0
        self.bad_signatures = 0
        self.repeats = 0  # retries of an event already taken
        self.ids: dict[str, str] = {}  # event id -> call id
        self._lock = threading.Lock()
        self._server = PostServer(
            lambda headers, body: self.take(body, headers.get(SIGNATURE_HEADER))
        )

    @property
    def url(self) -> str:
        return self._server.url

    def take(self, body: bytes, signature: str | None) -> int | None:
        """The status to answer a delivery with; None to close without one."""
        with self._lock:
            self.posts += 1
            if self.mode != "up":
                self.refused += 1
                return 503 if self.mode == "refuse" else None
            if not verify_signature(self.secret, body, signature):
                self.bad_signatures += 1
                return 401  # final for the service: the event counts as not delivered
            event = json.loads(body)
            event_id = str(event.get("id"))
            if event_id in self.ids:
                self.repeats += 1
            source = str(event.get("source", ""))
            self.ids[event_id] = urllib.parse.unquote(source.removeprefix("/v1/calls/"))
            return 204

    def received(self, calls: set[str] | None = None) -> set[str]:
        """Unique event ids taken (of ``calls`` only, if given)."""
        with self._lock:
            return {e for e, call in self.ids.items() if calls is None or call in calls}

    def __enter__(self) -> WebhookSink:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
