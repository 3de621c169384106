"""A webhook receiver on loopback: records every POST, answers with the statuses it is told
(in arrival order, or for one event id), else 204, and checks signatures as a real receiver
would (served by the soak's PostServer)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from biometrics.events.webhooks import SIGNATURE_HEADER, verify_signature
from biometrics.soak.receiver import PostServer


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order, then 204
        self.by_event: dict[str, list[int]] = {}  # an event id's answers, in order
        self.failing: set[str] = set()  # event ids always answered 500
        self._lock = threading.Lock()
        self._server: PostServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

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
        with PostServer(self._take) as server:
            self._server = server
            yield self

    def _take(self, headers: Message, body: bytes) -> int:
        with self._lock:
            self.posts.append(({k.lower(): v for k, v in headers.items()}, body))
            return self.answer(json.loads(body)["id"])
