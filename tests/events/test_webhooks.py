"""biometrics.events.webhooks: signed CloudEvents POSTed to a real loopback receiver, retried
with backoff on failures worth retrying, never on refusals or redirects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from biometrics.events import Broker, Event
from biometrics.events.webhooks import (
    SIGNATURE_HEADER,
    RetryPolicy,
    WebhookSender,
    sign,
    verify_signature,
)
from tests.events.receiver import WebhookReceiver

SECRET = "s3cret"
NOW = datetime(2024, 11, 15, tzinfo=UTC)


def event(number: int) -> Event:
    return Event(f"e-{number}", "verdict.changed", "c1", "8:acs:a", NOW, {"n": number})


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET).running() as running:
        yield running


def sender(broker: Broker, url: str, attempts: int = 3) -> WebhookSender:
    return WebhookSender(broker, [url], SECRET, RetryPolicy(attempts, 0.01), timeout_seconds=2)


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    fox = b"The quick brown fox jumps over the lazy dog"  # RFC-style known answer
    assert sign("key", fox) == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )
    body = b'{"a":1}'
    assert verify_signature("k", body, sign("k", body))
    assert not verify_signature("k", body + b" ", sign("k", body))
    assert not verify_signature("other", body, sign("k", body))
    assert not verify_signature("k", body, None)


def test_backoff_doubles_up_to_a_minute() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_seconds=1.0)
    assert [policy.delay(n) for n in (1, 2, 3, 7, 8)] == [1.0, 2.0, 4.0, 60.0, 60.0]


def test_events_are_delivered_in_order_signed_and_retried_after_a_500(
    receiver: WebhookReceiver,
) -> None:
    receiver.statuses = [500, 503]

    async def scenario() -> None:
        broker = Broker()
        webhooks = sender(broker, receiver.url)
        webhooks.start()
        for number in range(3):
            broker.publish(event(number))
        await asyncio.sleep(0)
        await webhooks.stop(drain_seconds=10)

    asyncio.run(scenario())
    assert receiver.posts[0][0]["content-type"] == ("application/cloudevents+json; charset=utf-8")
    assert [json.loads(body)["id"] for _, body in receiver.posts] == [
        "e-0",
        "e-0",
        "e-0",
        "e-1",
        "e-2",
    ]
    assert [e["id"] for e in receiver.events()] == ["e-0", "e-0", "e-0", "e-1", "e-2"]
    headers, body = receiver.posts[-1]
    assert headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body)


@pytest.mark.parametrize("status", [400, 302])
def test_a_refusal_or_a_redirect_is_not_retried(
    receiver: WebhookReceiver, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [status]

    async def scenario() -> bool:
        return await sender(Broker(), receiver.url).deliver(receiver.url, event(1))

    assert asyncio.run(scenario()) is False
    assert len(receiver.posts) == 1
    assert "webhook not delivered" in caplog.text


def test_an_unreachable_receiver_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> bool:
        url = "http://127.0.0.1:9/hooks"  # discard port: nothing listens
        return await sender(Broker(), url, attempts=2).deliver(url, event(1))

    assert asyncio.run(scenario()) is False
    assert "retrying" in caplog.text and "webhook not delivered" in caplog.text
