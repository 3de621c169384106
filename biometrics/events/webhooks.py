"""Webhooks: every call event POSTed to each configured URL as a signed CloudEvent.

Delivery never slows the audio path, and one event never holds up another. Each URL has
its own subscription (a bounded queue: from this process's broker, or with several
replicas from their shared webhook stream, each event to one replica) and a dispatcher
that keeps up to ``POSTS_IN_FLIGHT`` posts going at once. A failed post does not wait in
line: it goes to the URL's retry schedule (a heap by due time) and the dispatcher moves
straight on to the next event; the retry is posted when it falls due. So a retried event
may arrive after newer ones: a receiver orders by the CloudEvent's ``time`` and drops ids
it has seen (a retry repeats the id). Outbound HTTP uses the standard library in a small
thread pool of its own (httpx is only a test dependency here).

The body is the CloudEvent JSON; ``X-Biometrics-Signature: sha256=<hex>`` is the
HMAC-SHA256 of exactly those bytes under ``BIOMETRICS_WEBHOOK_SECRET``. A receiver
recomputes it over the raw body before parsing and compares in constant time. Redirects
are not followed.

Retries: on a connection error, a timeout, 408, 425, 429 or any 5xx, after
``backoff``, 2 x ``backoff``, 4 x ... (at most a minute), up to ``max_attempts`` in all;
any other status is final (2xx delivered, 4xx refused).

Nothing is dropped silently. An event out of attempts, refused, pushed out of a full
queue, beyond ``MAX_WAITING_RETRIES`` of its URL, or still undelivered when the service
stops becomes a row in ``webhook_dead_letters`` (written off the event loop by
:class:`~biometrics.events.dead_letter_writer.DeadLetterWriter`), which an admin can read
and send again (:meth:`WebhookSender.resend`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import heapq
import hmac
import itertools
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from biometrics.clock import utcnow
from biometrics.errors import DeadLetterNotRetryable, WebhooksBusy
from biometrics.events.broker import Broker, Event, Subscription
from biometrics.events.cloudevents import CONTENT_TYPE, encode
from biometrics.events.dead_letter_writer import DeadLetterWriter
from biometrics.store.dead_letters import (
    OUT_OF_ATTEMPTS,
    QUEUE_OVERFLOW,
    REFUSED,
    RETRIES_FULL,
    SHUTDOWN,
    DeadLetter,
    Redelivered,
    Undelivered,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Biometrics-Signature"
USER_AGENT = "biometrics-webhooks/1"
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_BACKOFF_SECONDS = 60.0
QUEUE_SIZE = 1000
# A few posts at once per URL: a slow or failing event does not hold the others, and a
# struggling receiver is not flooded.
POSTS_IN_FLIGHT = 4
# Events of one URL waiting for a retry; a further failure goes straight to dead letters.
MAX_WAITING_RETRIES = 1000
MAX_THREADS = 32
DRAIN_SECONDS = 10.0

Post = Callable[[str, bytes], Awaitable[tuple[int | None, str]]]


class EventFeed(Protocol):
    """Where a URL's events come from: this process's broker, or the replicas' shared
    webhook stream (:class:`biometrics.cluster.events.WebhookFeed`), told when each event is
    settled (delivered or dead-lettered) so that no other replica sends it."""

    def subscribe(
        self, url: str, size: int, on_drop: Callable[[Event], None] | None
    ) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...

    def settled(self, subscription: Subscription, event_id: str) -> None: ...


class BrokerFeed:
    """Every event published in this process: the embedded default."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def subscribe(
        self, url: str, size: int, on_drop: Callable[[Event], None] | None
    ) -> Subscription:
        return self._broker.subscribe(None, size=size, on_drop=on_drop)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._broker.unsubscribe(subscription)

    def settled(self, subscription: Subscription, event_id: str) -> None:
        return None


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

    def longest_seconds(self, timeout_seconds: float) -> float:
        """The longest an event can take from its first attempt to its last, with a
        margin: past it, an event still unsettled was lost with its sender."""
        waits = sum(self.delay(attempt) for attempt in range(1, self.max_attempts))
        return waits + self.max_attempts * timeout_seconds + 30.0


@dataclasses.dataclass
class _Delivery:
    """One event on its way to one URL, with what its attempts so far found."""

    event_id: str
    event_type: str
    call_id: str
    body: bytes  # exactly what is signed and sent
    dead_letter_id: int | None = None  # set when an admin sends a dead letter again
    attempts: int = 0
    last_status: int | None = None
    problem: str | None = None

    @classmethod
    def of_event(cls, event: Event) -> _Delivery:
        return cls(event.id, event.type, event.call_id, encode(event))

    @classmethod
    def of_letter(cls, letter: DeadLetter) -> _Delivery:
        return cls(
            letter.event_id, letter.event_type, letter.call_id, letter.body.encode(), letter.id
        )


class _Lane:
    """One URL's deliveries: its subscription, the retries waiting for their time, and the
    posts in flight (at most ``POSTS_IN_FLIGHT``). Due retries go before new events."""

    def __init__(
        self,
        url: str,
        feed: EventFeed,
        queue_size: int,
        post: Post,
        policy: RetryPolicy,
        writer: DeadLetterWriter,
        max_retries: int,
    ) -> None:
        self.url = url
        self._feed = feed
        self.subscription: Subscription = feed.subscribe(url, queue_size, self._overflow)
        self._post = post
        self._policy = policy
        self._writer = writer
        self._max_retries = max_retries
        self._retries: list[tuple[float, int, _Delivery]] = []  # (due, tiebreak, delivery)
        self._order = itertools.count()
        self._posting: dict[asyncio.Task[None], _Delivery] = {}
        self._slots = asyncio.Semaphore(POSTS_IN_FLIGHT)
        self._changed = asyncio.Event()
        self._receiving: asyncio.Task[Event | None] | None = None
        self._open = True  # the subscription may still yield events
        self._deadline: float | None = None  # set when stopping: the end of the drain
        self._resending: set[int] = set()  # dead letter ids in this lane
        self._dispatcher: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dead_lettered: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def resend(self, letter: DeadLetter) -> None:
        """Post ``letter`` again now, with a fresh count of attempts."""
        if self._deadline is not None:
            raise WebhooksBusy("the service is stopping; send the dead letter again later")
        if letter.id in self._resending:
            raise DeadLetterNotRetryable(f"dead letter {letter.id} is being sent again already")
        if len(self._retries) >= self._max_retries:
            raise WebhooksBusy(
                f"{len(self._retries)} events of {self.url} are waiting for a retry; "
                "try again once the receiver takes them",
                retry_after=self._policy.backoff_seconds,
            )
        self._resending.add(letter.id)
        self._schedule(_Delivery.of_letter(letter), 0.0)

    def drain(self, seconds: float) -> asyncio.Task[None] | None:
        """Stop taking new events; deliver those queued and the retries due within
        ``seconds``. The dispatcher, which ends once nothing more can be delivered."""
        self._deadline = asyncio.get_running_loop().time() + seconds
        self._changed.set()
        return self._dispatcher

    async def stop(self) -> int:
        """End every post and dead-letter whatever is not delivered; how many that was."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        left = [delivery for task, delivery in self._posting.items() if not task.done()]
        posts = list(self._posting)
        for task in posts:
            task.cancel()
        await asyncio.gather(*posts, return_exceptions=True)
        left += [delivery for _, _, delivery in self._retries]
        self._retries.clear()
        if self._receiving is not None and not self._receiving.done():
            self._receiving.cancel()  # nothing taken: the event stays in the subscription
        elif self._receiving is not None and (taken := self._receiving.result()) is not None:
            left.append(_Delivery.of_event(taken))
        # The broker closed the subscription: this reads what is left in it, then ends.
        left += [_Delivery.of_event(event) async for event in self.subscription]
        for delivery in left:
            self._give_up(delivery, SHUTDOWN)
        return len(left)

    # --- the dispatcher -------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            delivery = await self._next()
            if delivery is None:
                return
            task = asyncio.get_running_loop().create_task(self._attempt(delivery))
            self._posting[task] = delivery
            task.add_done_callback(self._posted)

    def _posted(self, task: asyncio.Task[None]) -> None:
        del self._posting[task]
        self._slots.release()
        self._changed.set()

    async def _next(self) -> _Delivery | None:
        """The next delivery to post: a due retry, else the next event; None once stopping
        and nothing more can be delivered before the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._retries and self._retries[0][0] <= now:
                return heapq.heappop(self._retries)[2]
            if self._open and self._receiving is None:
                self._receiving = loop.create_task(self.subscription.next())
            if self._receiving is not None and self._receiving.done():
                event = self._receiving.result()
                self._receiving = None
                if event is not None:
                    return _Delivery.of_event(event)
                self._open = False  # closed and empty: the service is stopping
                continue
            if self._drained():
                return None
            self._changed.clear()
            await self._wait(now)

    def _drained(self) -> bool:
        if self._deadline is None or self._open or self._posting:
            return False
        return not self._retries or self._retries[0][0] > self._deadline

    async def _wait(self, now: float) -> None:
        """Until an event arrives, a post ends, a retry is scheduled, or one falls due."""
        changed = asyncio.get_running_loop().create_task(self._changed.wait())
        waits: set[asyncio.Future[Any]] = {changed, *filter(None, [self._receiving])}
        timeout = self._retries[0][0] - now if self._retries else None
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()

    # --- one attempt ----------------------------------------------------------------------

    async def _attempt(self, delivery: _Delivery) -> None:
        status, problem = await self._post(self.url, delivery.body)
        delivery.attempts += 1
        delivery.last_status, delivery.problem = status, problem or None
        if status is not None and 200 <= status < 300:
            self.delivered += 1
            self._feed.settled(self.subscription, delivery.event_id)
            if delivery.dead_letter_id is not None:
                self._resending.discard(delivery.dead_letter_id)
                self._writer.add(Redelivered(delivery.dead_letter_id, utcnow()))
            return
        retry = status is None or status >= 500 or status in RETRY_STATUSES
        extra = {
            "url": self.url,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "call_id": delivery.call_id,
            "attempt": delivery.attempts,
            "status": status,
            "problem": problem,
        }
        if not retry or delivery.attempts >= self._policy.max_attempts:
            reason = OUT_OF_ATTEMPTS if retry else REFUSED
            logger.error("webhook not delivered", extra={**extra, "reason": reason})
            self._give_up(delivery, reason)
        elif len(self._retries) >= self._max_retries:
            logger.error(
                "webhook not delivered: too many events of its URL wait for a retry",
                extra={**extra, "reason": RETRIES_FULL, "waiting": len(self._retries)},
            )
            self._give_up(delivery, RETRIES_FULL)
        else:
            delay = self._policy.delay(delivery.attempts)
            logger.warning("webhook delivery failed; retrying", extra={**extra, "delay": delay})
            self._schedule(delivery, delay)

    def _schedule(self, delivery: _Delivery, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._retries, (due, next(self._order), delivery))
        self._changed.set()

    def _overflow(self, event: Event) -> None:
        """The subscription's queue was full and pushed out ``event``."""
        self._give_up(_Delivery.of_event(event), QUEUE_OVERFLOW)

    def _give_up(self, delivery: _Delivery, reason: str) -> None:
        if delivery.dead_letter_id is not None:
            self._resending.discard(delivery.dead_letter_id)
        self._feed.settled(self.subscription, delivery.event_id)  # the dead letter has it
        self.dead_lettered[reason] += 1
        self._writer.add(
            Undelivered(
                url=self.url,
                event_id=delivery.event_id,
                event_type=delivery.event_type,
                call_id=delivery.call_id,
                body=delivery.body.decode(),
                attempts=delivery.attempts,
                reason=reason,
                last_status=delivery.last_status,
                problem=delivery.problem,
                at=utcnow(),
                dead_letter_id=delivery.dead_letter_id,
            )
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx stays an answer (and a failed delivery), never a new request


class WebhookSender:
    def __init__(
        self,
        broker: Broker | EventFeed,
        urls: Sequence[str],
        secret: str,
        policy: RetryPolicy,
        timeout_seconds: float,
        dead_letters: DeadLetterWriter,
        *,
        queue_size: int = QUEUE_SIZE,
        max_retries: int = MAX_WAITING_RETRIES,
    ) -> None:
        self._feed = BrokerFeed(broker) if isinstance(broker, Broker) else broker
        self.urls = list(urls)
        self._secret = secret
        self._policy = policy
        self._timeout = timeout_seconds
        self._queue_size = queue_size
        self._max_retries = max_retries
        self._writer = dead_letters
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._executor = ThreadPoolExecutor(
            max_workers=min(MAX_THREADS, POSTS_IN_FLIGHT * max(1, len(self.urls))),
            thread_name_prefix="webhook",
        )
        self._lanes: dict[str, _Lane] = {}

    def start(self) -> None:
        self._writer.start()
        for url in self.urls:
            lane = _Lane(
                url,
                self._feed,
                self._queue_size,
                self._send,
                self._policy,
                self._writer,
                self._max_retries,
            )
            lane.start()
            self._lanes[url] = lane

    def resend(self, letter: DeadLetter) -> None:
        """Send a dead letter again now, to its URL, with a fresh count of attempts; a
        success sets its ``delivered_at``, a failure updates its row."""
        lane = self._lanes.get(letter.url)
        if lane is None:
            raise DeadLetterNotRetryable(
                f"dead letter {letter.id} is for {letter.url}, which is not among "
                "BIOMETRICS_WEBHOOK_URLS now; the service sends only to configured URLs"
            )
        lane.resend(letter)

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Take no new events; for up to ``drain_seconds`` deliver those queued and the
        retries falling due; then store every event still undelivered as a dead letter.
        Logs one line with the counts."""
        lanes = list(self._lanes.values())
        delivered = sum(lane.delivered for lane in lanes)
        dead_lettered = sum(sum(lane.dead_lettered.values()) for lane in lanes)
        for lane in lanes:
            self._feed.unsubscribe(lane.subscription)  # its queued events stay readable
        draining = [task for lane in lanes if (task := lane.drain(drain_seconds)) is not None]
        if draining:
            await asyncio.wait(draining, timeout=drain_seconds)
        at_stop = 0
        for lane in lanes:
            at_stop += await lane.stop()
        not_stored = await self._writer.close() + self._writer.lost
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._lanes.clear()
        counts = {
            "delivered": sum(lane.delivered for lane in lanes) - delivered,
            "dead_lettered": sum(sum(lane.dead_lettered.values()) for lane in lanes)
            - dead_lettered,
            "undelivered_at_stop": at_stop,
            "not_stored": not_stored,
            "drain_seconds": drain_seconds,
        }
        if not_stored:
            logger.error("webhooks stopped; some dead letters could not be stored", extra=counts)
        else:
            logger.info("webhooks stopped", extra=counts)

    async def _send(self, url: str, body: bytes) -> tuple[int | None, str]:
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: sign(self._secret, body),
            "User-Agent": USER_AGENT,
        }
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._post, url, body, headers
        )

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
