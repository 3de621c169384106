"""Webhook delivery under a failing receiver: how long an event waits behind one that
always fails (the shipped retry policy: 6 attempts, 1 s doubling), and what stop() does
with 20 events queued for a receiver that is down (delivered, dead-lettered, lost).

    .venv/bin/python scripts/benchmark_webhooks.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from biometrics.clock import utcnow
from biometrics.events import Broker, Event
from biometrics.events.dead_letter_writer import DeadLetterWriter
from biometrics.events.webhooks import RetryPolicy, WebhookSender
from biometrics.store import Database
from biometrics.store.dead_letters import DeadLetterQuery, DeadLetters

FAILING = "E"
DOWN = "http://127.0.0.1:9/hooks"  # the discard port: nothing listens
QUEUED = 20


def receiver(taken: dict[str, float]) -> ThreadingHTTPServer:
    """Answers 500 to the failing event, 204 to the others (noting when)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            event_id = json.loads(self.rfile.read(int(self.headers["content-length"])))["id"]
            status = 500 if event_id == FAILING else 204
            if status == 204:
                taken.setdefault(event_id, time.monotonic())
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sender(broker: Broker, url: str, store: DeadLetters) -> WebhookSender:
    return WebhookSender(broker, [url], "secret", RetryPolicy(6, 1.0), 5.0, DeadLetterWriter(store))


def event(event_id: str) -> Event:
    return Event(event_id, "verdict.changed", "c1", "8:acs:a", utcnow(), {})


async def latency_behind_a_failing_event(store: DeadLetters) -> float:
    taken: dict[str, float] = {}
    server = receiver(taken)
    broker = Broker()
    webhooks = sender(broker, f"http://127.0.0.1:{server.server_address[1]}/hooks", store)
    webhooks.start()
    started = time.monotonic()
    broker.publish(event(FAILING))
    broker.publish(event("F"))
    while "F" not in taken:
        await asyncio.sleep(0.001)
    await webhooks.stop(drain_seconds=0)
    server.shutdown()
    return taken["F"] - started


async def stop_with_the_receiver_down(store: DeadLetters) -> float:
    broker = Broker()
    webhooks = sender(broker, DOWN, store)
    webhooks.start()
    for number in range(QUEUED):
        broker.publish(event(f"s{number}"))
    await asyncio.sleep(0)
    started = time.monotonic()
    await webhooks.stop(drain_seconds=2.0)
    return time.monotonic() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        database.upgrade()
        store = DeadLetters(database)
        latency = asyncio.run(latency_behind_a_failing_event(store))
        print(f"an event behind one that always fails: delivered after {latency * 1000:.1f} ms")
        seconds = asyncio.run(stop_with_the_receiver_down(store))
        stored = store.query(DeadLetterQuery(url=DOWN, limit=10 * QUEUED))
        print(
            f"stop(2 s) with {QUEUED} events queued and the receiver down: returned after "
            f"{seconds:.2f} s, {len(stored)} dead letters, {QUEUED - len(stored)} lost"
        )
        database.dispose()


if __name__ == "__main__":
    main()
