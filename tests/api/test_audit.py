"""The audit trail over REST, on SQLite and PostgreSQL: each act leaves its row, refused
requests and sockets leave ``auth.refused`` rows without the presented key, and
``GET /v1/audit`` (admin only) filters and pages."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from biometrics.app import create_app
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from tests.api.helpers import enroll, verify
from tests.conftest import bearer


def key_id(key: str) -> str:
    return key.split("_")[1]


def rows(client, **params) -> list[dict]:
    response = client.get("/v1/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def acts(client, **params) -> list[tuple]:
    """(actor, action, subject, outcome) of each row, leaving out reading the trail."""
    return [
        (row["actor"], row["action"], row["subject"], row["outcome"])
        for row in rows(client, **params)
    ]


def dump(database_url: str) -> str:
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            return repr(connection.execute(sa.text("SELECT * FROM audit_log")).all())
    finally:
        database.dispose()


def test_each_act_on_a_speaker_leaves_its_row_and_deleting_keeps_them(client, admin_key):
    admin = key_id(admin_key)
    assert client.post("/v1/speakers", json={"speaker_id": "ada"}).status_code == 201
    enrolled = enroll(client, "ada")
    assert enrolled.status_code == 201
    verdict = verify(client, "ada").json()["decision"]
    assert client.post("/v1/speakers/ada/opt-out").status_code == 200
    assert client.delete("/v1/speakers/ada").status_code == 204
    assert client.delete("/v1/speakers/ada").status_code == 404
    assert client.get("/v1/speakers/ada").status_code == 404  # reads leave no row

    assert acts(client, subject="ada") == [
        (admin, "speaker.create", "ada", "ok"),
        (admin, "speaker.enroll", "ada", enrolled.json()["status"]),
        (admin, "speaker.verify", "ada", verdict),
        (admin, "speaker.opt_out", "ada", "ok"),
        (admin, "speaker.delete", "ada", "ok"),
        (admin, "speaker.delete", "ada", "speaker_not_found"),
    ]
    for row in rows(client, subject="ada"):
        assert row["source"] == "testclient" and row["request_id"]
        assert row["at"].endswith("Z") and row["call_id"] is None
        # Ids and outcomes only: no score, vector or audio.
        assert set(row) == {
            "id", "at", "actor", "action", "subject", "call_id",
            "participant_raw_id", "outcome", "request_id", "source",
        }  # fmt: skip


def test_a_refused_enrollment_names_the_error(client, admin_key):
    client.post("/v1/speakers/eve/opt-out")
    assert enroll(client, "eve").status_code == 409
    assert acts(client, action="speaker.enroll") == [
        (key_id(admin_key), "speaker.enroll", "eve", "speaker_opted_out")
    ]


def test_a_request_id_is_taken_or_made_and_echoed(client):
    given = client.post(
        "/v1/speakers", json={"speaker_id": "bo"}, headers={"X-Request-ID": "req-42"}
    )
    assert given.headers["x-request-id"] == "req-42"
    made = client.post("/v1/speakers/bo/opt-out", headers={"X-Request-ID": "has space"})
    assert made.headers["x-request-id"] not in ("", "has space")
    assert client.get("/healthz").headers["x-request-id"]
    assert [row["request_id"] for row in rows(client, subject="bo")] == [
        "req-42",
        made.headers["x-request-id"],
    ]


def test_refused_requests_and_sockets_leave_rows_without_the_key(settings, encoder, admin_key):
    reader_info, reader = KeyStore(Database(settings.database_url)).create(Role.READ, "r")
    forged = f"bmk_{reader_info.key_id}_forged-secret-text-0123456789"
    unknown = "bmk_0000_never-a-real-secret-abcdef"
    with TestClient(create_app(settings, encoder=encoder)) as client:
        assert client.get("/v1/speakers").status_code == 401
        assert client.get("/v1/speakers", headers=bearer(forged)).status_code == 401
        assert client.get("/v1/speakers", headers={"X-API-Key": unknown}).status_code == 401
        assert client.delete("/v1/speakers/ada", headers=bearer(reader)).status_code == 403
        assert client.get("/v1/audit", headers=bearer(reader)).status_code == 403
        with (
            client.websocket_connect(f"/ws/acs?token={unknown}&call_id=c9") as socket,
            pytest.raises(WebSocketDisconnect),
        ):
            socket.receive_text()
        admin = bearer(admin_key)
        entries = client.get("/v1/audit", params={"action": "auth.refused"}, headers=admin)
    found = entries.json()["entries"]
    assert [(r["actor"], r["subject"], r["outcome"]) for r in found] == [
        ("anonymous", "GET /v1/speakers", "unauthenticated"),
        ("anonymous", "GET /v1/speakers", "unauthenticated"),
        ("anonymous", "GET /v1/speakers", "unauthenticated"),
        (reader_info.key_id, "DELETE /v1/speakers/ada", "forbidden"),
        (reader_info.key_id, "GET /v1/audit", "forbidden"),
        ("anonymous", "WS /ws/acs", "unauthorized"),
    ]
    assert {r["source"] for r in found} == {"testclient"}
    assert found[-1]["call_id"] == "c9" and found[-1]["request_id"]
    table = dump(settings.database_url)
    for presented in (forged, unknown, reader, admin_key):
        assert presented not in table
        assert presented.split("_", 2)[2] not in table


def test_the_trail_filters_by_subject_action_and_time_and_pages(client):
    for name in ("s1", "s2", "s3", "s4", "s5"):
        client.post("/v1/speakers", json={"speaker_id": name})
    client.post("/v1/speakers/s1/opt-out")

    pages, cursor = [], None
    while True:
        params = {"action": "speaker.create", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/audit", params=params).json()
        pages.append([row["subject"] for row in body["entries"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [["s1", "s2"], ["s3", "s4"], ["s5"]]
    assert [row["action"] for row in rows(client, subject="s1")] == [
        "speaker.create",
        "speaker.opt_out",
    ]

    every = rows(client)
    middle = every[2]["at"]
    since = rows(client, since=middle)
    until = rows(client, until=middle)
    # `since` is inclusive and `until` exclusive: together they are the whole trail.
    assert [row["id"] for row in until + since] == [row["id"] for row in every]
    assert every[2]["id"] == since[0]["id"] or every[2] in since
    assert all(row["at"] >= middle for row in since) and all(row["at"] < middle for row in until)

    for bad in ({"since": "yesterday"}, {"until": "2026-12-01T00:00:00"}, {"cursor": "x"}):
        response = client.get("/v1/audit", params=bad)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert client.get("/v1/audit", params={"limit": 0}).status_code == 400


def test_with_auth_off_the_actor_is_anonymous(settings, encoder):
    with TestClient(
        create_app(dataclasses.replace(settings, auth_enabled=False), encoder=encoder)
    ) as client:
        client.post("/v1/speakers", json={"speaker_id": "ann"})
        assert acts(client) == [("anonymous", "speaker.create", "ann", "ok")]


def test_a_hostile_path_is_recorded_printable(settings, encoder):
    with TestClient(create_app(settings, encoder=encoder)) as client:
        assert client.delete("/v1/speakers/a%00b" + "x" * 400).status_code == 401
    database = Database(settings.database_url)
    with database.engine.connect() as connection:
        subject = connection.execute(sa.text("SELECT subject FROM audit_log")).scalar_one()
    database.dispose()
    assert subject.startswith("DELETE /v1/speakers/a?bxx") and len(subject) == 256
