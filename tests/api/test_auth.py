"""Every /v1 route needs an API key whose role allows it: 401 without a usable key, 403 with
the wrong role, both as JSON with WWW-Authenticate; the probes stay open."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from tests.api.helpers import speech_wav
from tests.conftest import bearer

AUDIO = {"audio": ("a.wav", speech_wav(2.0), "audio/wav")}
# (method, path, what it needs): one row per route.
ROUTES = [
    ("POST", "/v1/speakers", Role.ENROLL, {"json": {"speaker_id": "new-one"}}),
    ("GET", "/v1/speakers", Role.READ, {}),
    ("GET", "/v1/speakers/ada", Role.READ, {}),
    ("DELETE", "/v1/speakers/ada", Role.ADMIN, {}),
    ("POST", "/v1/speakers/ada/opt-out", Role.ENROLL, {}),
    ("DELETE", "/v1/speakers/ada/lockout", Role.ADMIN, {}),
    ("POST", "/v1/speakers/ada/enrollments", Role.ENROLL, {"files": AUDIO}),
    ("POST", "/v1/verify", Role.VERIFY, {"files": AUDIO, "data": {"speaker_id": "ada"}}),
    ("GET", "/v1/calls/c1", Role.READ, {}),
    ("GET", "/v1/calls/c1/events", Role.READ, {}),
    ("GET", "/v1/calls/c1/participants/p1", Role.READ, {}),
    ("GET", "/v1/calls/c1/participants/p1/verdicts", Role.READ, {}),
    ("PUT", "/v1/calls/c1/participants/p1/claim", Role.VERIFY, {"json": {"speaker_id": "ada"}}),
    ("POST", "/v1/calls/c1/participants/p1/enroll", Role.ENROLL, {"json": {"speaker_id": "x"}}),
    ("GET", "/v1/audit", Role.ADMIN, {}),
    ("PUT", "/v1/calls/c1/recording", Role.ADMIN, {"json": {"enabled": True}}),
    ("GET", "/v1/calls/c1/participants/p1/audio", Role.ADMIN, {}),
]


@pytest.fixture
def keys(settings):
    database = Database(settings.database_url)
    yield KeyStore(database)
    database.dispose()


@pytest.fixture
def app_client(settings, encoder):
    with TestClient(create_app(settings, encoder=encoder)) as test_client:
        yield test_client


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["detail"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="biometrics"')


@pytest.mark.parametrize(("method", "path", "needed", "body"), ROUTES)
def test_each_route_answers_only_its_role_and_admin(app_client, keys, method, path, needed, body):
    assert_refused(app_client.request(method, path, **body), 401, "unauthenticated")
    for role in Role:
        key = keys.create(role)[1]
        response = app_client.request(method, path, headers=bearer(key), **body)
        if role.allows(needed):
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert_refused(response, 403, "forbidden")
            assert str(needed) in response.json()["detail"]


def test_unknown_revoked_and_expired_keys_are_401_and_x_api_key_works(app_client, keys):
    info, key = keys.create(Role.READ, "reports")
    assert app_client.get("/v1/speakers", headers={"X-API-Key": key}).status_code == 200
    assert app_client.get("/v1/speakers", headers=bearer(key)).status_code == 200
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_refused(app_client.get("/v1/speakers", headers=bearer(forged)), 401, "unauthenticated")
    not_ours = app_client.get("/v1/speakers", headers=bearer("some-other-token"))
    assert_refused(not_ours, 401, "unauthenticated")
    keys.revoke(info.key_id)
    revoked = app_client.get("/v1/speakers", headers=bearer(key))
    assert_refused(revoked, 401, "unauthenticated")
    assert "revoked" in revoked.json()["detail"]
    expiring = keys.create(Role.READ, expires_in=timedelta(seconds=-1))[1]
    expired = app_client.get("/v1/speakers", headers=bearer(expiring))
    assert_refused(expired, 401, "unauthenticated")
    assert "expired" in expired.json()["detail"]


def test_probes_stay_open_and_reveal_no_secret(app_client, keys):
    _, key = keys.create(Role.ADMIN)
    assert app_client.get("/healthz").status_code == 200
    ready = app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["auth"] == "on"
    assert key not in ready.text and "warnings" not in ready.json()


def test_keys_are_stored_only_as_salted_hashes(keys, settings):
    import sqlalchemy as sa

    _, first = keys.create(Role.ADMIN)
    _, second = keys.create(Role.ADMIN)
    with Database(settings.database_url).engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT key_id, salt, secret_sha256 FROM api_keys")).all()
    dump = repr(rows)
    for key in (first, second):
        assert key.split("_", 2)[2] not in dump
    assert rows[0].salt != rows[1].salt and len(rows[0].secret_sha256) == 64
    assert [info.key_id for info in keys.list()] == [row.key_id for row in rows]


def test_turning_authentication_off_is_loud(settings, encoder, caplog):
    open_settings = dataclasses.replace(settings, auth_enabled=False)
    with TestClient(create_app(open_settings, encoder=encoder)) as open_client:
        assert open_client.get("/v1/speakers").status_code == 200
        ready = open_client.get("/readyz").json()
        assert ready["auth"] == "off" and "development only" in ready["warnings"][0]
    assert "authentication is off" in caplog.text


def test_a_key_over_its_rate_is_told_when_to_come_back(settings, encoder, keys):
    limited = dataclasses.replace(settings, rate_limit_per_minute=3)
    busy, calm = keys.create(Role.READ)[1], keys.create(Role.READ)[1]
    with TestClient(create_app(limited, encoder=encoder)) as limited_client:
        answers = [limited_client.get("/v1/speakers", headers=bearer(busy)) for _ in range(4)]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        assert refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert limited_client.get("/v1/speakers", headers=bearer(calm)).status_code == 200


def test_the_bucket_refills_with_time():
    from biometrics.api.auth import RateLimit
    from biometrics.errors import RateLimited

    now = [0.0]
    limit = RateLimit(60, clock=lambda: now[0])  # one a second, bursts of 60
    for _ in range(60):
        limit.take("k")
    with pytest.raises(RateLimited) as refused:
        limit.take("k")
    assert refused.value.retry_after == pytest.approx(1.0)
    now[0] += 1.0
    limit.take("k")
    limit.take("other")  # keys do not share a bucket
