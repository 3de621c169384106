"""The audio socket checks ACS's signed token when an audience is configured."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from biometrics.app import create_app
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from biometrics.streaming.auth import ACS_ISSUER, SigningKeys, SocketAuthenticator, Unauthorized
from tests.conftest import bearer

AUDIENCE = "00000000-1111-2222-3333-444444444444"
METADATA = json.dumps(
    {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": "sub-1",
            "encoding": "PCM",
            "sampleRate": 16000,
            "channels": 1,
            "length": 640,
        },
    }
)


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_url(signing_key):
    """The public key served as a JWKS on loopback, as Call Automation publishes its keys."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/calling/keys"
    server.shutdown()
    server.server_close()


def token(key, **claims) -> str:
    body = {"iss": ACS_ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 3600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_a_valid_token_passes(signing_key, jwks_url):
    claims = SocketAuthenticator(AUDIENCE, jwks_url=jwks_url).check(f"Bearer {token(signing_key)}")
    assert claims["aud"] == AUDIENCE


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing bearer token"),
        ("Basic abc", "missing bearer token"),
        ("Bearer not-a-jwt", "invalid token"),
    ],
)
def test_missing_or_malformed_tokens_are_refused(jwks_url, header, reason):
    with pytest.raises(Unauthorized, match=reason):
        SocketAuthenticator(AUDIENCE, jwks_url=jwks_url).check(header)


def test_wrong_audience_issuer_expiry_or_key_are_refused(signing_key, jwks_url):
    authenticator = SocketAuthenticator(AUDIENCE, jwks_url=jwks_url)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        token(signing_key, aud="someone-else"),
        token(signing_key, iss="https://example.invalid"),
        token(signing_key, exp=int(time.time()) - 60),
        token(other_key),
    ):
        with pytest.raises(Unauthorized, match="invalid token"):
            authenticator.check(f"Bearer {bad}")


def test_the_socket_closes_1008_without_a_valid_token(
    settings, encoder, signing_key, jwks_url, admin_key
):
    secured = dataclasses.replace(settings, acs_audience=AUDIENCE, acs_jwks_url=jwks_url)
    with TestClient(create_app(secured, encoder=encoder), headers=bearer(admin_key)) as client:
        with (
            client.websocket_connect("/ws/acs", headers={"Authorization": ""}) as socket,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            socket.receive_text()
        assert closed.value.code == 1008
        assert "ACS's signed token" in closed.value.reason
        headers = {"Authorization": f"Bearer {token(signing_key)}", "x-ms-call-connection-id": "c1"}
        with client.websocket_connect("/ws/acs", headers=headers) as socket:
            socket.send_text(METADATA)
            deadline = time.monotonic() + 10
            while client.get("/v1/calls/c1").status_code != 200:
                assert time.monotonic() < deadline, "the authorised call never started"
                time.sleep(0.05)
            assert client.get("/v1/calls/c1").json()["status"] == "ONGOING"


def refused_reason(client: TestClient, path: str, headers: dict[str, str]) -> str:
    with (
        client.websocket_connect(path, headers=headers) as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_text()
    assert closed.value.code == 1008
    return closed.value.reason


def test_by_default_a_socket_needs_a_stream_key(settings, encoder):
    """No ACS audience configured: an API key with the stream role (or admin) opens the
    socket, in ?token= (ACS's transportUrl may carry it) or a header; nothing else does."""
    keys = KeyStore(Database(settings.database_url))
    stream = keys.create(Role.STREAM, "acs")[1]
    reader = keys.create(Role.READ, "dashboard")[1]
    revoked_info, revoked = keys.create(Role.STREAM, "old")
    keys.revoke(revoked_info.key_id)
    with TestClient(create_app(settings, encoder=encoder)) as client:
        no_auth = {"Authorization": ""}
        assert "stream role" in refused_reason(client, "/ws/acs", no_auth)
        assert "not stream" in refused_reason(client, f"/ws/acs?token={reader}", no_auth)
        assert "revoked" in refused_reason(client, f"/ws/acs?token={revoked}", no_auth)
        assert "unknown" in refused_reason(client, "/ws/acs?token=bmk_0_x", no_auth)
        for path, headers in (
            (f"/ws/acs?token={stream}&call_id=q1", no_auth),
            ("/ws/acs?call_id=h1", bearer(stream)),
            ("/ws/acs?call_id=x1", {"X-API-Key": stream}),
        ):
            with client.websocket_connect(path, headers=headers) as socket:
                socket.send_text(METADATA)
                socket.send_text(METADATA)  # a repeat: the socket is open and reading
        # A stream key opens sockets only: the REST API refuses it.
        refused = client.get("/v1/calls/q1", headers=bearer(stream))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> str:
    listed = [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid}
        for kid, key in keys
    ]
    return json.dumps({"keys": listed})


def test_keys_from_a_file_reload_on_an_unknown_kid_at_most_once_a_minute(signing_key, tmp_path):
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys_file = tmp_path / "acs-keys.json"
    keys_file.write_text(jwks(("k1", signing_key)))
    now = [0.0]
    keys = SigningKeys(file=keys_file, clock=lambda: now[0])
    assert keys.key("k1").key_id == "k1"
    keys_file.write_text(jwks(("k1", signing_key), ("k2", rotated)))  # ACS rotates its keys
    now[0] = 30.0
    with pytest.raises(Unauthorized, match="not one of ACS's"):
        keys.key("k2")  # within a minute of the last read: refused without reading again
    now[0] = 100.0
    assert keys.key("k2").key_id == "k2"  # a minute on, an unknown kid reads the keys again
    keys_file.write_text("not json")
    for made_up in ("made-up", "made-up-2"):  # the minute since that read: never read again
        with pytest.raises(Unauthorized, match="not one of ACS's"):
            keys.key(made_up)


def test_a_jwks_file_authenticates_sockets_without_reaching_acs(signing_key, tmp_path):
    keys_file = tmp_path / "acs-keys.json"
    keys_file.write_text(jwks(("k1", signing_key)))
    authenticator = SocketAuthenticator(AUDIENCE, jwks_file=keys_file)
    assert authenticator.check(f"Bearer {token(signing_key)}")["aud"] == AUDIENCE


def test_a_key_store_failure_closes_the_socket_1013_not_abruptly(settings, encoder):
    """A credential that cannot be checked (here the keys table is away: an error the
    service cannot take for an outage) closes the socket with "try again later" and a
    reason, rather than dropping the connection without a close frame."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite reports a missing table as it reports an unreachable file")
    database = Database(settings.database_url)
    stream = KeyStore(database).create(Role.STREAM, "acs")[1]
    with TestClient(create_app(settings, encoder=encoder)) as client:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE api_keys RENAME TO api_keys_away")
        try:
            socket = client.websocket_connect(f"/ws/acs?token={stream}&call_id=k1")
            with socket as opened, pytest.raises(WebSocketDisconnect) as closed:
                opened.receive_text()
        finally:  # the database is shared by the tests that follow
            with database.engine.begin() as connection:
                connection.exec_driver_sql("ALTER TABLE api_keys_away RENAME TO api_keys")
    assert closed.value.code == 1013
    assert "reconnect shortly" in closed.value.reason
