"""Call tokens: minted by a key for one call, they act on that call alone, with a role no
wider than the minting key's; altered, expired or signed under another key they are 401,
and the live-call socket takes a stream token only for its own call."""

from __future__ import annotations

import dataclasses
import time

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from biometrics.app import create_app
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.call_tokens import CallTokens
from biometrics.store.crypto import Key
from biometrics.store.keys import KeyStore
from tests.conftest import TEST_CIPHER, bearer
from tests.streaming.test_auth import METADATA

CLAIM = "/v1/calls/{call}/participants/p1/claim"
PARTICIPANT = "/v1/calls/{call}/participants/p1"


def mint(client: TestClient, call: str, role: str, **extra: object) -> str:
    response = client.post(f"/v1/calls/{call}/tokens", json={"role": role, **extra})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["call_id"] == call and body["role"] == role and body["expires_at"].endswith("Z")
    token: str = body["token"]
    return token


def refused(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    detail: str = response.json()["detail"]
    return detail


@pytest.fixture
def speaker(client: TestClient) -> str:
    assert client.post("/v1/speakers", json={"speaker_id": "ada"}).status_code == 201
    return "ada"


def test_a_token_acts_on_its_own_call_and_role_only(client, speaker, admin_key):
    setter = bearer(mint(client, "x", "verify"))
    reader = bearer(mint(client, "x", "read"))
    claim = client.put(CLAIM.format(call="x"), json={"speaker_id": speaker}, headers=setter)
    assert claim.status_code == 200, claim.text
    read = client.get(PARTICIPANT.format(call="x"), headers=reader)
    assert read.status_code == 200 and read.json()["claim"]["speaker_id"] == speaker

    elsewhere = client.put(CLAIM.format(call="y"), json={"speaker_id": speaker}, headers=setter)
    assert "bound to call 'x'" in refused(elsewhere, 403, "forbidden")
    refused(client.get(PARTICIPANT.format(call="y"), headers=reader), 403, "forbidden")
    assert "bound to call 'x'" in refused(
        client.get("/v1/speakers", headers=reader), 403, "forbidden"
    )
    wrong_role = client.put(CLAIM.format(call="x"), json={"speaker_id": speaker}, headers=reader)
    assert "role read" in refused(wrong_role, 403, "forbidden")
    # Nor may a token mint another (a longer-lived or wider one).
    again = client.post("/v1/calls/x/tokens", json={"role": "verify"}, headers=setter)
    refused(again, 403, "forbidden")

    key_id = admin_key.split("_")[1]
    rows = client.get("/v1/audit", params={"action": "auth.refused"}).json()["entries"]
    assert {row["actor"] for row in rows} == {f"call-token:{key_id}"}
    minted = client.get("/v1/audit", params={"action": "call.token"}).json()["entries"]
    assert [(r["subject"], r["outcome"], r["actor"]) for r in minted] == [
        ("x", "verify", key_id),
        ("x", "read", key_id),
    ]


def test_a_token_altered_expired_or_signed_under_another_key_is_401(client):
    good = mint(client, "x", "read")
    signed, mac = good.rsplit(".", 1)
    payload_flipped = good[:6] + ("A" if good[6] != "A" else "B") + good[7:]
    mac_flipped = f"{signed}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    expired, _ = CallTokens(TEST_CIPHER.keyring.current, clock=lambda: time.time() - 7200).mint(
        "x", Role.READ, "someone", 3600
    )
    rotated, _ = CallTokens(Key.generate()).mint("x", Role.READ, "someone", 3600)
    for token, says in (
        (payload_flipped, "altered"),
        (mac_flipped, "altered"),
        (signed, "malformed"),
        (rotated, "rotated"),
        (expired, "expired"),
        ("bmc.not-a-token", "malformed"),
    ):
        response = client.get("/v1/calls/x", headers=bearer(token))
        assert says in refused(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
    outcomes = client.get("/v1/audit", params={"action": "auth.refused"}).json()["entries"]
    assert [row["outcome"] for row in outcomes] == ["unauthenticated"] * 6
    # The genuine one still passes the guard (the call is simply unknown yet).
    refused(client.get("/v1/calls/x", headers=bearer(good)), 404, "call_not_found")


def test_a_key_mints_only_roles_its_own_allows(client, settings):
    verifier = bearer(KeyStore(Database(settings.database_url)).create(Role.VERIFY, "ivr")[1])
    wider = client.post("/v1/calls/x/tokens", json={"role": "read"}, headers=verifier)
    assert "not read" in refused(wider, 403, "forbidden")
    same = client.post("/v1/calls/x/tokens", json={"ttl_seconds": 60}, headers=verifier)
    assert same.status_code == 201 and same.json()["role"] == "verify"  # the default role
    for body in ({"role": "admin"}, {"role": "nope"}, {"ttl_seconds": 86401}, {"ttl_seconds": 0}):
        refused(client.post("/v1/calls/x/tokens", json=body), 400, "invalid_request")
    refused(
        client.post("/v1/calls/x/tokens", json={}, headers={"Authorization": ""}),
        401,
        "unauthenticated",
    )


def test_with_auth_off_no_token_is_minted(settings, encoder):
    open_settings = dataclasses.replace(settings, auth_enabled=False)
    with TestClient(create_app(open_settings, encoder=encoder)) as client:
        refused(client.post("/v1/calls/x/tokens", json={"role": "read"}), 409, "auth_off")


def closed_reason(client: TestClient, path: str) -> str:
    with (
        client.websocket_connect(path, headers={"Authorization": ""}) as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.send_text(METADATA)
        socket.receive_text()
    assert closed.value.code == 1008
    return closed.value.reason


def test_a_stream_token_opens_its_own_calls_socket_only(client):
    stream = mint(client, "x", "stream")
    with client.websocket_connect(
        f"/ws/acs?token={stream}&call_id=x", headers={"Authorization": ""}
    ) as socket:
        socket.send_text(METADATA)
        deadline = time.monotonic() + 10
        while client.get("/v1/calls/x").status_code != 200:
            assert time.monotonic() < deadline, "the token's call never started"
            time.sleep(0.05)
    assert "bound to call 'x', not 'y'" in closed_reason(
        client, f"/ws/acs?token={stream}&call_id=y"
    )
    # Without a call id the subscription id names the call: it must be the token's.
    assert "not 'sub-1'" in closed_reason(client, f"/ws/acs?token={stream}")
    reader = mint(client, "x", "read")
    assert "not stream" in closed_reason(client, f"/ws/acs?token={reader}&call_id=x")
    assert client.get("/v1/calls/y").status_code == 404
    rows = client.get("/v1/audit", params={"action": "auth.refused"}).json()["entries"]
    assert [(r["subject"], r["outcome"], r["call_id"]) for r in rows][:2] == [
        ("WS /ws/acs", "forbidden", "y"),
        ("WS /ws/acs", "forbidden", "sub-1"),
    ]


def test_rotating_the_voiceprint_key_ends_the_tokens_signed_before(settings, encoder, admin_key):
    with TestClient(create_app(settings, encoder=encoder), headers=bearer(admin_key)) as client:
        before = bearer(mint(client, "x", "read"))
        refused(client.get("/v1/calls/x", headers=before), 404, "call_not_found")
    rotated = dataclasses.replace(
        settings,
        encryption_key=Key.generate().encoded(),
        encryption_old_keys=settings.encryption_key or "",
    )
    with TestClient(create_app(rotated, encoder=encoder), headers=bearer(admin_key)) as client:
        assert "rotated" in refused(
            client.get("/v1/calls/x", headers=before), 401, "unauthenticated"
        )
        after = bearer(mint(client, "x", "read"))
        refused(client.get("/v1/calls/x", headers=after), 404, "call_not_found")


def test_a_tokens_requests_count_against_its_minting_keys_rate(settings, encoder, admin_key):
    limited = dataclasses.replace(settings, rate_limit_per_minute=3)
    with TestClient(create_app(limited, encoder=encoder), headers=bearer(admin_key)) as client:
        token = bearer(mint(client, "x", "read"))
        refused(client.get("/v1/calls/x", headers=token), 404, "call_not_found")
        refused(client.get("/v1/calls/x"), 404, "call_not_found")
        over = client.get("/v1/calls/x", headers=token)
        assert admin_key.split("_")[1] in refused(over, 429, "rate_limited")
