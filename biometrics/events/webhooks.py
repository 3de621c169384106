"""Webhooks: every call event POSTed to each configured URL as a signed CloudEvent.

Delivery never slows the audio path: each URL has its own broker subscription (a bounded
queue that drops its oldest events when a receiver falls behind) and its own task, which
posts one event at a time, in order. Outbound HTTP uses the standard library in a small
thread pool of its own (httpx is only a test dependency here).

The body is the CloudEvent JSON; ``X-Biometrics-Signature: sha256=<hex>`` is the
HMAC-SHA256 of exactly those bytes under ``BIOMETRICS_WEBHOOK_SECRET``. A receiver
recomputes it over the raw body before parsing, compares in constant time, and drops
event ids it has seen (a retry repeats the id). Redirects are not followed.

Retries: on a connection error, a timeout, 408, 425, 429 or any 5xx, after
``backoff``, 2 x ``backoff``, 4 x ... (at most a minute), up to ``max_attempts`` in all;
any other status is final (2xx delivered, 4xx refused).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from biometrics.events.broker import Broker, Event, Subscription
from biometrics.events.cloudevents import CONTENT_TYPE, encode

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Biometrics-Signature"
USER_AGENT = "biometrics-webhooks/1"
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_BACKOFF_SECONDS = 60.0
QUEUE_SIZE = 1000
DRAIN_SECONDS = 2.0


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver checks (the service's tests use it too)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_seconds: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        return min(self.backoff_seconds * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx stays an answer (and a failed delivery), never a new request


class WebhookSender:
    def __init__(
        self,
        broker: Broker,
        urls: Sequence[str],
        secret: str,
        policy: RetryPolicy,
        timeout_seconds: float,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._broker = broker
        self._urls = list(urls)
        self._secret = secret
        self._policy = policy
        self._timeout = timeout_seconds
        self._queue_size = queue_size
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._executor = ThreadPoolExecutor(
            max_workers=min(4, max(1, len(self._urls))), thread_name_prefix="webhook"
        )
        self._workers: list[tuple[Subscription, asyncio.Task[None]]] = []

    def start(self) -> None:
        for url in self._urls:
            subscription = self._broker.subscribe(None, size=self._queue_size)
            task = asyncio.get_running_loop().create_task(self._deliver_all(url, subscription))
            self._workers.append((subscription, task))

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Deliver what is queued for up to ``drain_seconds``, then give up on the rest."""
        for subscription, _ in self._workers:
            self._broker.unsubscribe(subscription)  # ends each loop once its queue is empty
        tasks = [task for _, task in self._workers]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=drain_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._workers.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _deliver_all(self, url: str, subscription: Subscription) -> None:
        async for event in subscription:
            await self.deliver(url, event)

    async def deliver(self, url: str, event: Event) -> bool:
        """POST one event until it is taken, refused, or out of attempts."""
        body = encode(event)
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: sign(self._secret, body),
            "User-Agent": USER_AGENT,
        }
        loop = asyncio.get_running_loop()
        for attempt in range(1, self._policy.max_attempts + 1):
            status, problem = await loop.run_in_executor(
                self._executor, self._post, url, body, headers
            )
            if status is not None and 200 <= status < 300:
                return True
            retry = status is None or status >= 500 or status in RETRY_STATUSES
            extra = {
                "url": url,
                "event_id": event.id,
                "event_type": event.type,
                "call_id": event.call_id,
                "attempt": attempt,
                "status": status,
                "problem": problem,
            }
            if not retry or attempt == self._policy.max_attempts:
                logger.error("webhook not delivered", extra=extra)
                return False
            delay = self._policy.delay(attempt)
            logger.warning("webhook delivery failed; retrying", extra={**extra, "delay": delay})
            await asyncio.sleep(delay)
        return False

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        """Blocking: the HTTP status, or None and why there was none."""
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, ""
        except urllib.error.HTTPError as error:
            error.close()
            return error.code, error.reason if isinstance(error.reason, str) else ""
        except (OSError, ValueError) as error:  # refused, reset, timed out, bad URL
            return None, str(error)
