"""Quotas a hostile key runs into, and what the audit trail keeps of them: open call sockets
per API key (close 1013 before any audio is read, given back however a socket ends) and
requests over the rate (429), each refusal audited at most once a minute per key."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from biometrics.api.auth import RateLimit
from biometrics.app import create_app
from biometrics.config import Settings
from biometrics.simulator import call_format
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from biometrics.streaming import encode_metadata
from tests.conftest import bearer, migrated_sqlite

METADATA = encode_metadata(call_format(16_000, "sub-1"))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)  # no store behaviour here: SQLite only


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, stream_max_sockets_per_key=2)


def stream_key(settings: Settings, name: str) -> tuple[str, str]:
    info, key = KeyStore(Database(settings.database_url)).create(Role.STREAM, name)
    return info.key_id, key


def audit(server, action: str) -> list[tuple[str, str | None, str]]:
    response = httpx.get(
        f"{server.url}/v1/audit", params={"action": action}, headers=server.headers
    )
    return [(r["actor"], r["subject"], r["outcome"]) for r in response.json()["entries"]]


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def open_call(sockets: contextlib.ExitStack, server, key: str, call_id: str) -> ClientConnection:
    """A socket streaming ``call_id``, once the service holds it (its quota taken)."""
    url = f"{server.url.replace('http', 'ws')}/ws/acs?token={key}&call_id={call_id}"
    ws = sockets.enter_context(connect(url))
    ws.send(METADATA)

    def streaming() -> bool:
        response = httpx.get(f"{server.url}/v1/calls/{call_id}", headers=server.headers)
        return response.status_code == 200 and response.json()["status"] == "ONGOING"

    wait_for(streaming, f"call {call_id} never started")
    return ws


def refused(server, key: str) -> ConnectionClosed:
    """The close of a socket the service refuses, before the peer sent anything."""
    url = f"{server.url.replace('http', 'ws')}/ws/acs?token={key}&call_id=x"
    with connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value


def test_a_key_holding_its_sockets_gets_1013_until_one_closes_however(live_server):
    key_id, key = stream_key(live_server.settings, "acs")
    other_id, other = stream_key(live_server.settings, "other")
    sockets = contextlib.ExitStack()  # closed by hand below, in the order the test needs
    first = open_call(sockets, live_server, key, "c1")
    second = open_call(sockets, live_server, key, "c2")
    for _ in range(2):
        close = refused(live_server, key)
        assert close.rcvd is not None and close.rcvd.code == 1013
        assert "BIOMETRICS_STREAM_MAX_SOCKETS_PER_KEY" in close.rcvd.reason
    third = open_call(sockets, live_server, other, "c3")  # the quota is per key

    # The connection drops with no close frame: the quota is given back all the same (and
    # the socket's last row written then).
    first.socket.shutdown(socket.SHUT_RDWR)
    first.close()
    wait_for(
        lambda: any(row[1:] == ("c1", "closed 1005") for row in audit(live_server, "call.socket")),
        "the dropped socket was never closed",
    )
    again = open_call(sockets, live_server, key, "c4")
    for ws in (second, again, third):
        ws.close()

    # Two refusals, one row (the minute's first); each call's socket opened and closed.
    assert (key_id, "WS /ws/acs", "too_many_sockets") in audit(live_server, "auth.refused")
    assert audit(live_server, "auth.refused").count((key_id, "WS /ws/acs", "too_many_sockets")) == 1
    wait_for(lambda: len(audit(live_server, "call.socket")) == 8, "a socket's rows are missing")
    rows = audit(live_server, "call.socket")
    assert {row for row in rows if row[2] == "accepted"} == {
        (key_id, "c1", "accepted"),
        (key_id, "c2", "accepted"),
        (other_id, "c3", "accepted"),
        (key_id, "c4", "accepted"),
    }
    closes = {call: outcome for _, call, outcome in rows if outcome != "accepted"}
    # uvicorn reports a connection lost without a close frame as 1005 (no status given).
    assert closes == {
        "c1": "closed 1005",
        "c2": "closed 1000",
        "c3": "closed 1000",
        "c4": "closed 1000",
    }


def test_no_limit_when_it_is_zero(settings, encoder, admin_key):
    unlimited = dataclasses.replace(settings, stream_max_sockets_per_key=0)
    _, key = stream_key(settings, "acs")
    with (
        TestClient(create_app(unlimited, encoder=encoder)) as client,
        contextlib.ExitStack() as open_,
    ):
        for index in range(3):
            ws = open_.enter_context(
                client.websocket_connect(f"/ws/acs?token={key}&call_id=u{index}")
            )
            ws.send_text(METADATA)
        for call_id in ("u0", "u1", "u2"):
            path = f"/v1/calls/{call_id}"
            wait_for(
                lambda path=path: client.get(path, headers=bearer(admin_key)).status_code == 200,
                f"{path} never started",
            )


def test_a_key_over_its_rate_is_audited_once_a_minute(settings, encoder, admin_key):
    limited = dataclasses.replace(settings, rate_limit_per_minute=2)
    reader_info, reader = KeyStore(Database(settings.database_url)).create(Role.READ, "r")
    with TestClient(create_app(limited, encoder=encoder)) as client:
        answers = [client.get("/v1/speakers", headers=bearer(reader)).status_code for _ in range(6)]
        assert answers == [200, 200, 429, 429, 429, 429]
        rows = client.get(
            "/v1/audit", params={"action": "auth.refused"}, headers=bearer(admin_key)
        ).json()["entries"]
    assert [(r["actor"], r["subject"], r["outcome"]) for r in rows] == [
        (reader_info.key_id, "GET /v1/speakers", "rate_limited")
    ]


def test_refusals_are_written_again_once_the_minute_is_over():
    now = [0.0]
    limit = RateLimit(60, clock=lambda: now[0])
    assert limit.refusals.first("k") and limit.refusals.first("other")
    now[0] = 59.0
    assert not limit.refusals.first("k")
    now[0] = 60.0
    assert limit.refusals.first("k") and not limit.refusals.first("k")
