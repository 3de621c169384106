"""Webhook dead letters over REST, on SQLite and PostgreSQL: admins list them (paged and
filtered, no secret), send one or all again to a receiver that now works (delivered_at set,
audited), and are told why a retry cannot be made."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.clock import utcnow
from biometrics.events.cloudevents import encode
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.dead_letters import DeadLetterQuery, DeadLetters, Undelivered
from biometrics.store.keys import KeyStore
from tests.conftest import bearer
from tests.events.receiver import WebhookReceiver
from tests.events.senders import SECRET, event

GONE = "https://gone.example/hooks"  # a URL no longer configured


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET).running() as running:
        yield running


def bury(database_url: str, url: str, *numbers: int, call_id: str = "c1") -> list[int]:
    """Dead letters as the sender leaves them; their ids."""
    database = Database(database_url)
    store = DeadLetters(database)
    sent = [dataclasses.replace(event(number), call_id=call_id) for number in numbers]
    store.save(
        [
            Undelivered(url, e.id, e.type, call_id, encode(e).decode(), 6, "out_of_attempts",
                        503, "Service Unavailable", utcnow())
            for e in sent
        ]
    )  # fmt: skip
    rows = store.query(DeadLetterQuery(url=url, limit=1000))
    database.dispose()
    return [row.id for row in rows][-len(numbers) :]


@pytest.fixture
def webhook_client(settings, encoder, admin_key, receiver) -> Iterator[TestClient]:
    configured = dataclasses.replace(
        settings, webhook_urls=receiver.url, webhook_secret=SECRET, webhook_backoff_seconds=0.01
    )
    with TestClient(create_app(configured, encoder=encoder), headers=bearer(admin_key)) as client:
        yield client


def listed(client: TestClient, **params) -> list[dict]:
    response = client.get("/v1/webhooks/dead-letters", params=params)
    assert response.status_code == 200, response.text
    return response.json()["dead_letters"]


def wait_delivered(client: TestClient, dead_letter_id: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        [row] = [r for r in listed(client, limit=500) if r["id"] == dead_letter_id]
        if row["delivered_at"] is not None:
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.02)


def audited(client: TestClient) -> list[tuple]:
    rows = client.get("/v1/audit", params={"action": "webhook.retry"}).json()["entries"]
    return [(row["subject"], row["call_id"], row["outcome"]) for row in rows]


def test_admins_list_dead_letters_paged_and_filtered_others_are_refused(
    client, settings, admin_key
):
    bury(settings.database_url, GONE, 1, 2, 3)
    bury(settings.database_url, "https://other.example/hooks", 4, call_id="c9")
    first = client.get("/v1/webhooks/dead-letters", params={"limit": 2}).json()
    assert [row["event_id"] for row in first["dead_letters"]] == ["e-1", "e-2"]
    rest = listed(client, limit=2, cursor=first["next_cursor"])
    assert [row["event_id"] for row in rest] == ["e-3", "e-4"]
    assert [row["event_id"] for row in listed(client, call_id="c9")] == ["e-4"]
    assert [row["event_id"] for row in listed(client, url=GONE, delivered="false")] == [
        "e-1", "e-2", "e-3",
    ]  # fmt: skip
    row = listed(client)[0]
    assert row["event"]["id"] == "e-1" and row["event"]["type"] == "biometrics.verdict.changed"
    assert (row["reason"], row["attempts"], row["last_status"]) == ("out_of_attempts", 6, 503)
    assert "signature" not in repr(row).lower() and SECRET not in repr(row)
    assert client.get("/v1/webhooks/dead-letters", params={"limit": 0}).status_code == 400
    assert client.get("/v1/webhooks/dead-letters", params={"delivered": "y"}).status_code == 400

    _, reader = KeyStore(Database(settings.database_url)).create(Role.READ, "r")
    for method, path in [
        ("GET", "/v1/webhooks/dead-letters"),
        ("POST", "/v1/webhooks/dead-letters/1/retry"),
        ("POST", "/v1/webhooks/dead-letters/retry"),
    ]:
        assert client.request(method, path, headers=bearer(reader)).status_code == 403


def test_a_retry_redelivers_to_a_working_receiver_and_is_audited(
    webhook_client, settings, receiver
):
    [dead] = bury(settings.database_url, receiver.url, 7)
    answer = webhook_client.post(f"/v1/webhooks/dead-letters/{dead}/retry")
    assert answer.status_code == 202, answer.text
    assert answer.json()["retried_at"] is not None and answer.json()["delivered_at"] is None
    delivered = wait_delivered(webhook_client, dead)
    assert [e["id"] for e in receiver.events()] == ["e-7"]  # signed, the stored body
    assert delivered["delivered_at"] >= delivered["retried_at"]

    again = webhook_client.post(f"/v1/webhooks/dead-letters/{dead}/retry")
    assert again.status_code == 409 and again.json()["error"] == "dead_letter_not_retryable"
    assert "was delivered" in again.json()["detail"]
    missing = webhook_client.post("/v1/webhooks/dead-letters/999999/retry")
    assert missing.status_code == 404 and missing.json()["error"] == "dead_letter_not_found"
    assert audited(webhook_client) == [
        (str(dead), "c1", "ok"),
        (str(dead), "c1", "dead_letter_not_retryable"),
        ("999999", None, "dead_letter_not_found"),
    ]


def test_a_retry_that_fails_again_updates_its_row(webhook_client, settings, receiver):
    receiver.failing = {"e-8"}
    [dead] = bury(settings.database_url, receiver.url, 8)
    assert webhook_client.post(f"/v1/webhooks/dead-letters/{dead}/retry").status_code == 202
    deadline = time.monotonic() + 10
    while (row := listed(webhook_client)[0])["last_status"] != 500:
        assert time.monotonic() < deadline, row
        time.sleep(0.02)
    assert (row["attempts"], row["reason"], row["delivered_at"]) == (6, "out_of_attempts", None)
    assert len(listed(webhook_client)) == 1


def test_retry_all_sends_those_for_configured_urls_and_says_why_not_the_others(
    webhook_client, settings, receiver
):
    ours = bury(settings.database_url, receiver.url, 1, 2)
    [gone] = bury(settings.database_url, GONE, 3)
    answer = webhook_client.post("/v1/webhooks/dead-letters/retry")
    assert answer.status_code == 202, answer.text
    assert [row["id"] for row in answer.json()["retried"]] == ours
    [refused] = answer.json()["refused"]
    assert refused["id"] == gone and GONE in refused["detail"]
    for dead in ours:
        wait_delivered(webhook_client, dead)
    assert sorted(e["id"] for e in receiver.events()) == ["e-1", "e-2"]
    assert [outcome for *_, outcome in audited(webhook_client)] == [
        "ok", "ok", "dead_letter_not_retryable",
    ]  # fmt: skip


def test_without_webhook_urls_rows_are_listed_and_a_retry_says_none_is_configured(client, settings):
    [dead] = bury(settings.database_url, GONE, 5)
    assert [row["id"] for row in listed(client)] == [dead]
    answer = client.post(f"/v1/webhooks/dead-letters/{dead}/retry")
    assert answer.status_code == 409
    assert "BIOMETRICS_WEBHOOK_URLS" in answer.json()["detail"]
    assert listed(client)[0]["retried_at"] is None
