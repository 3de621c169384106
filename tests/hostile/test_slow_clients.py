"""Slow-loris clients on a real uvicorn server: an upload whose body stalls or trickles is
answered 408 with the JSON error body within BIOMETRICS_UPLOAD_TIMEOUT_SECONDS and its
connection closed, and the service answers everyone else meanwhile."""

from __future__ import annotations

import dataclasses
import http.client
import json
import select
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from biometrics.config import Settings
from tests.conftest import migrated_sqlite

TIMEOUT = 1.0
PART = (
    b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\nRIFF"
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)  # no store behaviour here: SQLite only


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, upload_timeout_seconds=TIMEOUT)


def raw_connection(server) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def request_head(server, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and everything up to the server's close (b"" from recv)."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("path", "trickle"),
    [("/v1/speakers/ada/enrollments", False), ("/v1/verify", True)],
    ids=["enrollment-stalls", "verify-trickles"],
)
def test_a_slow_upload_is_answered_408_and_closed_while_others_are_served(
    live_server, path, trickle
):
    with raw_connection(live_server) as slow:
        started = time.monotonic()
        slow.sendall(request_head(live_server, path, 1_000_000) + PART)
        # Meanwhile the service answers others as usual.
        assert httpx.get(f"{live_server.url}/healthz").status_code == 200
        listed = httpx.get(f"{live_server.url}/v1/speakers", headers=live_server.headers)
        assert listed.status_code == 200
        while trickle and not select.select([slow], [], [], 0.1)[0]:
            slow.sendall(b"x")  # a byte every 100 ms: never idle, never done
        status, headers, body = read_response(slow)
        elapsed = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["error"] == "request_timeout"
    assert "BIOMETRICS_UPLOAD_TIMEOUT_SECONDS" in json.loads(body)["detail"]
    assert TIMEOUT <= elapsed < TIMEOUT + 2.0, elapsed


def test_a_body_refused_unread_closes_its_connection(live_server):
    """413 on the declared length: the rest of the body is never waited for."""
    with raw_connection(live_server) as client:
        client.sendall(request_head(live_server, "/v1/verify", 10**9) + PART)
        status, headers, body = read_response(client)
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"] == "payload_too_large"


def test_an_upload_answered_before_its_body_is_read_keeps_its_connection(live_server):
    """A refusal that comes before the body is read (here a wrong key; during a database
    outage a 503) is answered after the rest of the body, within the limits, was read: the
    client gets the answer instead of a reset, and its connection stays open."""
    address = urlsplit(live_server.url)
    client = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        body = PART + b"x" * 1_000_000  # more than the server buffers before it stops reading
        headers = {"Authorization": "Bearer bm_wrong", "Content-Type": "multipart/form-data"}
        client.request("POST", "/v1/verify", body, headers)
        answer = client.getresponse()
        assert answer.status == 401 and json.loads(answer.read())["error"] == "unauthenticated"
        assert answer.getheader("connection") != "close"
        kept = client.sock
        client.request("GET", "/healthz")
        assert client.getresponse().status == 200 and client.sock is kept
    finally:
        client.close()


def test_headers_that_never_end_hold_only_their_own_connection(live_server):
    """uvicorn has no timeout on reading headers (a reverse proxy must set one); a hundred
    connections stuck in theirs leave the service answering everyone else."""
    stuck = [raw_connection(live_server) for _ in range(100)]
    try:
        for connection in stuck:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        assert httpx.get(f"{live_server.url}/healthz").status_code == 200
        stuck[0].sendall(b"1\r\n\r\n")  # a header that ends at last is answered
        assert stuck[0].recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for connection in stuck:
            connection.close()
