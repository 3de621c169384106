"""The agent console without a browser: signing in keeps the key in a sealed, HttpOnly,
SameSite=Strict cookie (Secure over https); a forged or altered cookie signs nobody in;
state-changing requests that rely on the cookie need the session's CSRF token; roles apply
as on the API; automation may send the key in ``Authorization``; the pages show calls,
participants and speakers from a real database, and an admin plays an ended call's
recordings through the console's bridge."""

from __future__ import annotations

import dataclasses
import html
import io
import re
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
import soundfile
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.config import Settings
from biometrics.console.sessions import COOKIE
from biometrics.embedding import SpeakerEncoder
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.audit import AuditLog, AuditQuery
from biometrics.store.keys import KeyStore
from tests.api.test_calls import AGENT, CALLER, path, stream
from tests.api.test_recordings import sent_pcm
from tests.conftest import bearer
from tests.streaming.helpers import live_settings, voice

CLAIM = "/console/api/calls/call-1/participants/4%3A%2B14255550101/claim"


def make_key(settings: Settings, role: Role) -> str:
    database = Database(settings.database_url)
    try:
        return KeyStore(database).create(role, "console tests")[1]
    finally:
        database.dispose()


@pytest.fixture
def browser(settings: Settings, encoder: SpeakerEncoder) -> Iterator[TestClient]:
    """A client with no key of its own, as a browser is before it signs in."""
    with TestClient(create_app(settings, encoder=encoder), follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, key: str, next_page: str = "/console") -> str:
    """Sign in through the form; the CSRF token of the signed-in session's pages."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    response = client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": csrf_of(form.text), "next": next_page},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_page
    page = client.get("/console")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def cookie_attributes(response) -> dict[str, str | bool]:
    header = next(v for k, v in response.headers.multi_items() if k == "set-cookie")
    morsel = SimpleCookie(header)[COOKIE]
    return {name: morsel[name] for name in ("httponly", "samesite", "secure", "path")}


def test_a_browser_that_has_not_signed_in_is_sent_to_the_form(browser):
    response = browser.get("/console/calls/call-1")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=/console/calls/call-1"
    form = browser.get(response.headers["location"])
    assert 'name="api_key"' in form.text and 'value="/console/calls/call-1"' in form.text
    assert "script-src 'self'" in form.headers["content-security-policy"]


def test_sign_in_keeps_the_key_in_a_sealed_http_only_strict_cookie(browser, settings):
    key = make_key(settings, Role.READ)
    form = browser.get("/console/sign-in")
    response = browser.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": csrf_of(form.text)}
    )
    assert response.status_code == 303 and response.headers["location"] == "/console"
    attributes = cookie_attributes(response)
    assert attributes["httponly"] is True and attributes["samesite"] == "strict"
    assert attributes["secure"] == "" and attributes["path"] == "/console"  # plain http
    sealed = browser.cookies[COOKIE]
    assert key not in sealed and key.split("_", 2)[2] not in sealed
    page = browser.get("/console")
    assert page.status_code == 200 and "Live calls" in page.text
    assert f"key {key.split('_')[1]} (read)" in page.text


def test_the_cookie_is_secure_over_https(settings, encoder):
    with TestClient(
        create_app(settings, encoder=encoder), base_url="https://console.test"
    ) as client:
        form = client.get("/console/sign-in")
        assert cookie_attributes(form)["secure"] is True


def test_a_wrong_key_is_refused_on_the_form_and_audited(browser, settings):
    form = browser.get("/console/sign-in")
    response = browser.post(
        "/console/sign-in",
        data={
            "api_key": "bmk_000000000000_nope",
            "csrf_token": csrf_of(form.text),
            "next": "/console/speakers",
        },
    )
    assert response.status_code == 401 and 'role="alert"' in response.text
    assert 'value="/console/speakers"' in response.text  # still going there once signed in
    assert browser.get("/console").status_code == 303  # still signed out
    where = AuditQuery(action="auth.refused", subject="POST /console/sign-in")
    rows = AuditLog(Database(settings.database_url)).query(where)
    assert [row.outcome for row in rows] == ["unauthenticated"]


def test_a_sign_in_post_without_the_form_s_token_is_refused(browser, settings):
    key = make_key(settings, Role.ADMIN)
    browser.get("/console/sign-in")
    response = browser.post("/console/sign-in", data={"api_key": key, "csrf_token": "guess"})
    assert response.status_code == 403
    assert browser.get("/console").status_code == 303


def test_an_altered_or_foreign_cookie_signs_nobody_in(browser, settings):
    sign_in(browser, make_key(settings, Role.ADMIN))
    sealed = browser.cookies[COOKIE]
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    browser.cookies.clear()
    browser.cookies.set(COOKIE, flipped, path="/console")
    assert browser.get("/console").status_code == 303
    browser.cookies.set(COOKIE, "bm" * 40, path="/console")
    assert browser.get("/console/speakers").status_code == 303


def test_a_revoked_key_ends_its_session(browser, settings):
    key = make_key(settings, Role.READ)
    sign_in(browser, key)
    database = Database(settings.database_url)
    KeyStore(database).revoke(key.split("_")[1])
    database.dispose()
    assert browser.get("/console").status_code == 303


def test_state_changes_by_cookie_need_the_session_s_csrf_token(browser, settings):
    csrf = sign_in(browser, make_key(settings, Role.ADMIN))
    assert browser.post("/console/api/speakers", json={"speaker_id": "ada"}).status_code == 403
    refused = browser.put(CLAIM, json={"speaker_id": "ada"}, headers={"x-csrf-token": "x" * 43})
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    made = browser.post(
        "/console/api/speakers", json={"speaker_id": "ada"}, headers={"x-csrf-token": csrf}
    )
    assert made.status_code == 201, made.text
    claimed = browser.put(CLAIM, json={"speaker_id": "ada"}, headers={"x-csrf-token": csrf})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["claim"]["speaker_id"] == "ada"
    enroll = CLAIM.removesuffix("/claim") + "/enroll"
    assert browser.post(enroll, json={"speaker_id": "bo"}).status_code == 403
    started = browser.post(enroll, json={"speaker_id": "bo"}, headers={"x-csrf-token": csrf})
    assert started.status_code == 202, started.text  # it waits for the participant's speech
    assert started.json()["enrollment"]["speaker_id"] == "bo"
    # Reads need no token, and the same /v1 route answered.
    call = browser.get("/console/api/calls/call-1")
    assert call.status_code == 200 and call.json()["status"] == "PENDING"


def test_roles_apply_through_the_console(browser, settings):
    admin = make_key(settings, Role.ADMIN)
    TestClient(browser.app).post("/v1/speakers", json={"speaker_id": "ada"}, headers=bearer(admin))
    csrf = sign_in(browser, make_key(settings, Role.READ))
    refused = browser.put(CLAIM, json={"speaker_id": "ada"}, headers={"x-csrf-token": csrf})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    deleted = browser.delete("/console/api/speakers/ada", headers={"x-csrf-token": csrf})
    assert deleted.status_code == 403
    page = browser.get("/console/speakers")
    assert "ada" in page.text and "data-confirm" not in page.text  # no buttons it may not use
    assert browser.get("/console/api/audit").status_code == 404  # not reachable by cookie


def test_automation_sends_the_key_in_authorization(browser, settings):
    page = browser.get("/console/speakers", headers=bearer(make_key(settings, Role.READ)))
    assert page.status_code == 200 and "Speakers" in page.text
    headers = bearer(make_key(settings, Role.ENROLL))
    made = browser.post("/console/api/speakers", json={"speaker_id": "bo"}, headers=headers)
    assert made.status_code == 201  # a header key needs no CSRF token
    assert browser.get("/console", headers=bearer("bmk_000000000000_nope")).status_code == 303


def test_the_pages_show_a_call_s_participants_and_the_speakers(browser, settings):
    csrf = sign_in(browser, make_key(settings, Role.ADMIN))
    token = {"x-csrf-token": csrf}
    for speaker_id, name in (("cust-42", "Ada Lovelace"), ("cust-7", "Bob")):
        body = {"speaker_id": speaker_id, "display_name": name}
        assert browser.post("/console/api/speakers", json=body, headers=token).status_code == 201
    assert browser.put(CLAIM, json={"speaker_id": "cust-42"}, headers=token).status_code == 200

    calls = browser.get("/console")
    assert 'href="/console/calls/call-1"' in calls.text and "PENDING" in calls.text
    call = browser.get("/console/calls/call-1")
    assert call.status_code == 200
    assert 'data-raw-id="4:+14255550101"' in call.text and "cust-42" in call.text
    assert 'aria-live="polite"' in call.text and "<progress" in call.text
    assert browser.get("/console/calls/nobody").status_code == 404

    found = browser.get("/console/speakers", params={"q": "lovelace"})
    assert "cust-42" in found.text and "cust-7" not in found.text
    assert 'data-confirm="delete"' in found.text and 'data-confirm="opt-out"' in found.text
    everyone = browser.get("/console/speakers")
    assert "cust-42" in everyone.text and "cust-7" in everyone.text
    assert browser.get("/console/static/console.js").status_code == 200


def test_sign_out_ends_the_session(browser, settings):
    csrf = sign_in(browser, make_key(settings, Role.READ))
    assert browser.post("/console/sign-out", data={"csrf_token": "wrong"}).status_code == 403
    response = browser.post("/console/sign-out", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert browser.get("/console").status_code == 303


def test_sign_in_only_returns_to_console_pages(browser, settings):
    form = browser.get("/console/sign-in")
    response = browser.post(
        "/console/sign-in",
        data={
            "api_key": make_key(settings, Role.READ),
            "csrf_token": csrf_of(form.text),
            "next": "//evil.example/console",
        },
    )
    assert response.headers["location"] == "/console"


def test_with_authentication_off_the_console_opens_without_signing_in(settings, encoder):
    app = create_app(dataclasses.replace(settings, auth_enabled=False), encoder=encoder)
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/console/speakers")
        assert page.status_code == 200 and "authentication off" in page.text
        token = {"x-csrf-token": csrf_of(page.text)}
        assert client.post("/console/api/speakers", json={"speaker_id": "ada"}).status_code == 403
        made = client.post("/console/api/speakers", json={"speaker_id": "ada"}, headers=token)
        assert made.status_code == 201, made.text


def test_a_session_cookie_marked_secure_when_the_operator_says_so(settings, encoder):
    app = create_app(dataclasses.replace(settings, console_secure_cookie=True), encoder=encoder)
    with TestClient(app, follow_redirects=False) as client:
        assert cookie_attributes(client.get("/console/sign-in"))["secure"] is True


def live_client(settings: Settings, encoder: SpeakerEncoder, tmp_path, **changes):
    """A client that streams calls with an admin key in a header; drop the header to be a
    browser. Recordings go to ``tmp_path``."""
    changed = live_settings(settings, recordings_dir=tmp_path / "recordings", **changes)
    app = create_app(changed, encoder=encoder)
    admin = make_key(settings, Role.ADMIN)
    return TestClient(app, headers=bearer(admin), follow_redirects=False), admin


def player_source(page: str, raw_id: str) -> str:
    found = re.search(
        rf'<audio controls preload="none" src="([^"]+)" '
        rf'aria-label="Recording of participant {re.escape(html.escape(raw_id))}"',
        page,
    )
    assert found, page
    return html.unescape(found.group(1))


def fetch_audio(client: TestClient, source: str):
    """The recording once it is complete (the writer thread finishes it after the call)."""
    deadline = time.monotonic() + 20
    while True:
        response = client.get(source)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_an_admin_plays_an_ended_call_s_recordings_and_a_read_key_may_not(
    settings, encoder, tmp_path
):
    caller, agent = voice(1.5, "a", seed=1), voice(1.5, "b", seed=2)
    client, admin = live_client(settings, encoder, tmp_path, recordings=True)
    with client:
        stream(client, "rec-1", {CALLER: caller, AGENT: agent})
        del client.headers["authorization"]  # from now on, a browser with a session cookie
        sign_in(client, admin)
        page = client.get("/console/calls/rec-1")
        assert page.status_code == 200
        assert "media-src 'self'" in page.headers["content-security-policy"]
        for raw_id, samples in ((CALLER, caller), (AGENT, agent)):
            source = player_source(page.text, raw_id)
            assert source.startswith("/console/api/calls/rec-1/participants/")
            assert f'<a href="{html.escape(source)}" download' in page.text
            wav = fetch_audio(client, source)
            assert wav.status_code == 200, wav.text
            assert wav.headers["content-type"] == "audio/wav"
            data, rate = soundfile.read(io.BytesIO(wav.content), dtype="int16")
            assert rate == 16_000 and data.tobytes() == sent_pcm(samples, 16_000)
        audit = client.get(
            "/v1/audit", params={"action": "recording.download"}, headers=bearer(admin)
        )
        played = [
            (e["participant_raw_id"], e["outcome"], e["actor"])
            for e in audit.json()["entries"]
            if e["outcome"] != "recording_in_progress"
        ]
        key_id = admin.split("_")[1]
        assert played == [(CALLER, "wav", key_id), (AGENT, "wav", key_id)]

        read_key = make_key(settings, Role.READ)
        sign_in(client, read_key)
        page = client.get("/console/calls/rec-1")
        assert page.status_code == 200 and "<audio" not in page.text
        assert 'data-field="recording"' not in page.text and "data-recordings" not in page.text
        refused = client.get(source)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_a_call_that_recorded_nothing_says_so(settings, encoder, tmp_path):
    client, admin = live_client(settings, encoder, tmp_path)  # recordings off
    with client:
        assert client.post("/v1/speakers", json={"speaker_id": "ada"}).status_code == 201
        claimed = client.put(path("quiet", CALLER, "claim"), json={"speaker_id": "ada"})
        assert claimed.status_code == 200, claimed.text
        del client.headers["authorization"]
        sign_in(client, admin)
        pending = client.get("/console/calls/quiet")  # claimed before its audio
        assert pending.status_code == 200 and "<audio" not in pending.text
        assert 'data-field="recording" hidden' in pending.text  # filled in once it ends
        client.headers.update(bearer(admin))
        stream(client, "quiet", {CALLER: voice(1.5, "a", seed=1)})
        del client.headers["authorization"]
        page = client.get("/console/calls/quiet")
        assert page.status_code == 200
        assert "<audio" not in page.text
        assert "Nothing was recorded for this participant." in page.text
