"""A webhook receiver on loopback: records every POST, answers with the statuses it is told
(in arrival order, or for one event id), else 204, and checks signatures as a real receiver
would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from biometrics.events.webhooks import SIGNATURE_HEADER, verify_signature


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order, then 204
        self.by_event: dict[str, list[int]] = {}  # an event id's answers, in order
        self.failing: set[str] = set()  # event ids always answered 500
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}/hooks"

    def events(self) -> list[dict[str, Any]]:
        """The bodies of the POSTs whose signature is valid, in arrival order."""
        with self._lock:
            posts = list(self.posts)
        return [
            json.loads(body)
            for headers, body in posts
            if verify_signature(self.secret, body, headers.get(SIGNATURE_HEADER.lower()))
        ]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.02)
        raise AssertionError(f"the webhook receiver never saw that; it has {self.events()}")

    def answer(self, event_id: str) -> int:
        """The status for a POST of ``event_id`` (called under the lock)."""
        if event_id in self.failing:
            return 500
        if self.by_event.get(event_id):
            return self.by_event[event_id].pop(0)
        return self.statuses.pop(0) if self.statuses else 204

    def posted_ids(self) -> list[str]:
        with self._lock:
            return [json.loads(body)["id"] for _, body in self.posts]

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.answer(json.loads(body)["id"])
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
