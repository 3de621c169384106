"""GET /metrics (biometrics.metrics) through the application, on SQLite and PostgreSQL: the
counters a REST verification and a live call move, by the amounts they happened; who may
read it; and the Grafana dashboard shipped in deploy/grafana, which may query only what
/metrics shows."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
import urllib.parse
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from biometrics import cli
from biometrics.app import create_app
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from tests.api.helpers import enroll, verify
from tests.conftest import bearer, migrated_sqlite, settings_for
from tests.events.receiver import WebhookReceiver
from tests.events.senders import SECRET
from tests.streaming.helpers import call_messages, live_settings, voice

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "biometrics.json"
CALLER = "4:+14255550123"
AGENT = "8:acs:agent"
THIRD = "8:acs:supervisor"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def call_path(call_id: str, raw_id: str | None = None, *rest: str) -> str:
    parts = ["/v1/calls", call_id]
    if raw_id is not None:
        parts += ["participants", urllib.parse.quote(raw_id, safe="")]
    return "/".join([*parts, *rest])


def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError("the service never got there")
        time.sleep(0.02)
    return found


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET).running() as running:
        running.statuses = [400]  # the first event is refused for good; the rest delivered
        yield running


@pytest.fixture
def settings(settings, receiver):
    return live_settings(
        settings, webhook_urls=receiver.url, webhook_secret=SECRET, stream_max_participants=2
    )


def test_a_rest_verification_and_a_live_call_move_the_counters_by_what_happened(client, receiver):
    assert enroll(client, "alice").status_code == 201
    before = scrape(client)

    rest = verify(client, "alice").json()
    after_rest = scrape(client)
    assert (
        moved(
            before,
            after_rest,
            "biometrics_verdicts_total",
            decision=rest["decision"],
            source="rest",
        )
        == 1
    )
    assert (
        sum(
            moved(before, after_rest, name, **labels)
            for (name, pairs) in after_rest
            if name == "biometrics_verdicts_total"
            for labels in [dict(pairs)]
        )
        == 1
    )
    assert moved(before, after_rest, "biometrics_verification_seconds_count", source="rest") == 1
    assert moved(before, after_rest, "biometrics_inference_seconds_count", urgency="rest") == 1
    batches = moved(before, after_rest, "biometrics_inference_batches_total")
    pieces = moved(before, after_rest, "biometrics_inference_pieces_total")
    assert 1 <= batches <= pieces
    assert moved(before, after_rest, "biometrics_inference_busy_seconds_total") > 0

    # A live call: the caller claims alice; the agent is heard but never claimed; a third
    # participant is past the call's limit of two. One message the parser cannot read is
    # dropped and counted; the call goes on.
    client.put(call_path("m1", CALLER, "claim"), json={"speaker_id": "alice", "threshold": 0})
    messages = call_messages(
        {CALLER: voice(3.5, "a", seed=1), AGENT: voice(1.0, "b"), THIRD: voice(0.2, "c")}
    )
    messages.insert(5, "{not json")
    with client.websocket_connect("/ws/acs", headers={"x-ms-call-connection-id": "m1"}) as ws:
        for message in messages:
            ws.send_text(message)
        wait_for(lambda: client.get(call_path("m1")).json()["counters"]["frames"] == len(messages))
        during = scrape(client)
        assert value(during, "biometrics_active_calls") == 1
        assert value(during, "biometrics_active_participants") == 2
    wait_for(lambda: client.get(call_path("m1")).json()["status"] == "ENDED")
    after = scrape(client)

    history = [
        verdict
        for raw_id in (CALLER, AGENT)
        for verdict in client.get(call_path("m1", raw_id, "verdicts")).json()["verdicts"]
    ]
    assert {"ACCEPT", "SPEAKER_ID_NOT_PROVIDED"} <= {verdict["decision"] for verdict in history}
    for decision in {verdict["decision"] for verdict in history}:
        made = sum(verdict["decision"] == decision for verdict in history)
        assert (
            moved(after_rest, after, "biometrics_verdicts_total", decision=decision, source="call")
            == made
        )
    assert moved(after_rest, after, "biometrics_verification_seconds_count", source="call") == (
        len(history)
    )
    assert (
        moved(
            after_rest, after, "biometrics_verdicts_total", decision=rest["decision"], source="rest"
        )
        == 0
    )
    audio = sum('"AudioData"' in message for message in messages)
    assert moved(after_rest, after, "biometrics_stream_frames_total", kind="audio") == audio
    assert moved(after_rest, after, "biometrics_stream_frames_total", kind="metadata") == 1
    assert (
        moved(after_rest, after, "biometrics_stream_frames_dropped_total", reason="invalid_json")
        == 1
    )
    assert (
        moved(
            after_rest, after, "biometrics_stream_frames_dropped_total", reason="participant_limit"
        )
        == 10  # 0.2 s of 20 ms frames
    )
    assert value(after, "biometrics_active_calls") == 0
    assert value(after, "biometrics_active_participants") == 0

    # Every event of the call was posted once: the first refused (a dead letter), the
    # rest delivered.
    def webhooks_settled() -> Samples | None:
        samples = scrape(client)
        posted = len(receiver.posted_ids())
        done = value(samples, "biometrics_webhook_deliveries_total") + value(
            samples, "biometrics_webhook_failures_total"
        )
        return samples if posted and done == posted else None

    settled = wait_for(webhooks_settled)
    assert value(settled, "biometrics_webhook_failures_total") == 1
    assert value(settled, "biometrics_webhook_dead_letters_total", reason="refused") == 1
    assert value(settled, "biometrics_webhook_deliveries_total") == len(receiver.posted_ids()) - 1

    model = client.get("/readyz").json()["model"]
    info = [key for key in after if key[0] == "biometrics_model_info"]
    assert len(info) == 1 and ("sha256", model["sha256"]) in info[0][1]
    assert value(after, "biometrics_database_errors_total") == 0


def test_metrics_need_an_admin_or_metrics_key_unless_made_public(
    settings, encoder, admin_key, monkeypatch, capsys
):
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", settings.database_url)
    assert cli.main(["keys", "create", "--role", "metrics", "--name", "prometheus"]) == 0
    metrics_key = capsys.readouterr().out.strip().splitlines()[-1]
    database = Database(settings.database_url)
    reader = KeyStore(database).create(Role.READ, "reader")[1]
    database.dispose()

    with TestClient(create_app(settings, encoder=encoder)) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401 and missing.json()["error"] == "unauthenticated"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        refused = client.get("/metrics", headers=bearer(reader))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        for key in (metrics_key, admin_key):
            assert client.get("/metrics", headers=bearer(key)).status_code == 200
        # A metrics key reads nothing else.
        assert client.get("/v1/speakers", headers=bearer(metrics_key)).status_code == 403
        # Metrics are the whole service's: no call token carries the role.
        minted = client.post(
            "/v1/calls/c1/tokens", json={"role": "metrics"}, headers=bearer(admin_key)
        )
        assert minted.status_code == 400 and minted.json()["error"] == "invalid_request"
        assert "'enroll', 'verify', 'read' or 'stream'" in minted.json()["detail"]

    public = dataclasses.replace(settings, metrics_public=True)
    with TestClient(create_app(public, encoder=encoder)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/speakers").status_code == 401  # the rest stays closed


def series_names(text: str) -> set[str]:
    """Every series name an exposition offers a query, samples or not (a labelled
    histogram has no sample before its first observation)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes[family.type]
    }


def test_the_dashboard_is_grafana_json_over_metrics_that_exist(client):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    queries = [target["expr"] for panel in panels for target in panel["targets"]]
    assert queries and all(panel["targets"] for panel in panels)
    queried = {name for query in queries for name in re.findall(r"\bbiometrics_\w+", query)}
    offered = series_names(client.get("/metrics").text)
    assert queried <= offered, f"queried but not in /metrics: {sorted(queried - offered)}"
    titles = " ".join(panel["title"].lower() for panel in panels)
    for topic in ("verdict", "latency", "queue", "active calls", "dropped", "webhook"):
        assert topic in titles


def test_a_request_that_a_database_error_ended_is_counted(tmp_path, model_folder, encoder):
    """SQLite only: a table dropped under the running service stands in for a database
    that fails (the run's shared PostgreSQL database must keep its tables)."""
    url = migrated_sqlite(tmp_path)
    settings = dataclasses.replace(settings_for(url, model_folder, tmp_path), auth_enabled=False)
    with TestClient(create_app(settings, encoder=encoder)) as client:
        assert client.get("/v1/speakers").status_code == 200
        assert value(scrape(client), "biometrics_database_errors_total") == 0
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("DROP TABLE speakers")
        failed = client.get("/v1/speakers")
        assert failed.status_code >= 500 and failed.json()["error"]
        assert value(scrape(client), "biometrics_database_errors_total") == 1
