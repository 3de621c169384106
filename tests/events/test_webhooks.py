"""biometrics.events.webhooks: signed CloudEvents POSTed to a real loopback receiver, retried
with backoff on failures worth retrying, never on refusals or redirects; what is given up
on is stored as a dead letter (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import collections
import json

import pytest

from biometrics.events import Broker
from biometrics.events.webhooks import SIGNATURE_HEADER, RetryPolicy, sign, verify_signature
from biometrics.store.dead_letters import DeadLetters
from tests.events.receiver import WebhookReceiver
from tests.events.senders import SECRET, event, sender, stored


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


def publish_and_stop(webhooks_of, *numbers: int, drain: float = 10.0) -> None:
    async def scenario() -> None:
        broker = Broker()
        webhooks = webhooks_of(broker)
        webhooks.start()
        for number in numbers:
            broker.publish(event(number))
        await asyncio.sleep(0)
        await webhooks.stop(drain_seconds=drain)

    asyncio.run(scenario())


def test_events_are_delivered_signed_and_retried_after_a_500(
    receiver: WebhookReceiver, dead_letters: DeadLetters
) -> None:
    receiver.by_event = {"e-0": [500, 503]}
    publish_and_stop(lambda broker: sender(broker, receiver.url, dead_letters), 0, 1, 2)
    assert receiver.posts[0][0]["content-type"] == ("application/cloudevents+json; charset=utf-8")
    assert collections.Counter(receiver.posted_ids()) == {"e-0": 3, "e-1": 1, "e-2": 1}
    assert len(receiver.events()) == 5  # every post signed
    for headers, body in receiver.posts:
        assert headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body)
    assert stored(dead_letters) == []


@pytest.mark.parametrize("status", [400, 302])
def test_a_refusal_or_a_redirect_is_not_retried_and_becomes_a_dead_letter(
    receiver: WebhookReceiver,
    dead_letters: DeadLetters,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.statuses = [status]
    publish_and_stop(lambda broker: sender(broker, receiver.url, dead_letters), 1)
    assert len(receiver.posts) == 1
    assert "webhook not delivered" in caplog.text
    [letter] = stored(dead_letters)
    assert (letter.event_id, letter.reason, letter.attempts, letter.last_status) == (
        "e-1",
        "refused",
        1,
        status,
    )
    assert letter.body.encode() == receiver.posts[0][1]  # the exact bytes that were sent
    assert letter.delivered_at is None and letter.url == receiver.url


def test_out_of_attempts_is_a_dead_letter_with_the_last_answer(
    receiver: WebhookReceiver, dead_letters: DeadLetters
) -> None:
    receiver.failing = {"e-1"}
    publish_and_stop(lambda broker: sender(broker, receiver.url, dead_letters, attempts=2), 1)
    assert receiver.posted_ids() == ["e-1", "e-1"]
    [letter] = stored(dead_letters)
    assert (letter.reason, letter.attempts, letter.last_status) == ("out_of_attempts", 2, 500)
    assert (letter.event_type, letter.call_id) == ("verdict.changed", "c1")
    assert json.loads(letter.body)["data"] == {"n": 1}


def test_an_unreachable_receiver_is_retried_then_given_up(
    dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    url = "http://127.0.0.1:9/hooks"  # discard port: nothing listens
    publish_and_stop(lambda broker: sender(broker, url, dead_letters, attempts=2), 1)
    assert "retrying" in caplog.text and "webhook not delivered" in caplog.text
    [letter] = stored(dead_letters)
    assert (letter.reason, letter.attempts, letter.last_status) == ("out_of_attempts", 2, None)
    assert letter.problem  # why there was no answer
