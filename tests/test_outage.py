"""A database outage in the middle of a live call, end to end: a real uvicorn server whose
PostgreSQL connection goes through a proxy (the soak's, biometrics/soak/proxy.py) that is
switched off for 5 s. Live verdicts keep coming over server-sent events, REST answers 503
with Retry-After on the same kept-alive connection, a call opened during the outage is
accepted and judged, and once the database is back every published verdict is in the
table."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import socket
import threading
import time
import urllib.parse

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from biometrics import simulator
from biometrics.app import create_app
from biometrics.soak.proxy import TcpProxy
from biometrics.store import Database
from tests.conftest import admin_key_for, bearer
from tests.streaming.helpers import START, live_settings, voice
from tests.voices import wav_bytes

# PostgreSQL only: a SQLite file cannot be taken away from the process that opened it.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

ALICE, CALLER = "8:acs:alice", "4:+14255550100"
OUTAGE_SECONDS = 5.0


@pytest.fixture
def proxy(postgres_url):
    target = sa.engine.make_url(postgres_url)
    with TcpProxy((target.host or "127.0.0.1", target.port or 5432)) as running:
        yield running


@pytest.fixture
def server(settings, encoder, proxy, postgres_url):
    """The service on loopback, its database reached through the proxy."""
    url = sa.engine.make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    proxied = dataclasses.replace(
        live_settings(settings),
        database_url=url.render_as_string(hide_password=False),
        stream_max_speech_seconds=12.0,  # a verdict each second of speech, all call long
        stream_idle_timeout_seconds=30.0,
    )
    key = admin_key_for(postgres_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(proxied, encoder=encoder),
        host="127.0.0.1",
        port=port,
        log_config=None,
        timeout_keep_alive=60,  # the kept connection idles through the outage
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        assert thread.is_alive()
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", key
    running.should_exit = True
    thread.join(timeout=30)


async def follow(base: str, key: str, call_id: str) -> list[dict]:
    """The call's verdict.changed events as they come, until call.ended."""
    verdicts: list[dict] = []
    async with (
        httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=60) as http,
        http.stream("GET", f"/v1/calls/{call_id}/events") as response,
    ):
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "verdict.changed":
                verdicts.append({**json.loads(line.partition(":")[2]), "seen_at": time.time()})
            elif line.startswith("data:") and event == "call.ended":
                return verdicts
    return verdicts


async def stream(
    base: str, key: str, call_id: str, raw_id: str, samples, realtime: bool = False
) -> None:
    """One participant's audio as one call's socket, as ACS streams it."""
    await simulator.stream_call(
        base.replace("http://", "ws://") + f"/ws/acs?token={key}",
        {"x-ms-call-connection-id": call_id},
        simulator.call_format(16_000, f"sub-{call_id}"),
        simulator.frames_for([simulator.Stream(raw_id, simulator.to_pcm(samples))], 16_000, START),
        realtime=realtime,
    )


def request(connection: http.client.HTTPConnection, key: str, path: str) -> tuple[int, dict, dict]:
    connection.request("GET", path, headers=bearer(key))
    response = connection.getresponse()
    return response.status, dict(response.headers), json.loads(response.read())


def test_live_calls_keep_their_verdicts_through_a_database_outage(server, proxy, postgres_url):
    base, key = server
    with httpx.Client(base_url=base, headers=bearer(key), timeout=60) as rest:
        upload = {"audio": ("voice.wav", wav_bytes(voice(6.0, "a", seed=1)), "audio/wav")}
        assert rest.post("/v1/speakers/alice/enrollments", files=upload).status_code == 201
        path = f"/v1/calls/call-a/participants/{urllib.parse.quote(ALICE, safe='')}/claim"
        assert rest.put(path, json={"speaker_id": "alice"}).status_code == 200

    # One kept-alive connection, before, during and after the outage.
    port = urllib.parse.urlsplit(base).port
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    assert request(kept, key, "/v1/speakers/alice")[0] == 200
    local = kept.sock.getsockname()

    outage: dict[str, float] = {}

    async def scenario() -> list[dict]:
        events = asyncio.create_task(follow(base, key, "call-a"))
        await asyncio.sleep(0.5)  # subscribed
        call = asyncio.create_task(
            stream(base, key, "call-a", ALICE, voice(11.0, "a", seed=2), realtime=True)
        )
        await asyncio.sleep(2.5)
        proxy.down()
        outage["from"] = time.time()
        # REST: 503, with Retry-After, on the same connection; readiness says why.
        status, headers, body = await asyncio.to_thread(request, kept, key, "/v1/speakers/alice")
        assert (status, body["error"], headers["retry-after"]) == (503, "database_unavailable", "5")
        assert kept.sock is not None and kept.sock.getsockname() == local
        async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=30) as http:
            verify = await http.post(
                "/v1/verify",
                data={"speaker_id": "alice"},
                files={"audio": ("v.wav", wav_bytes(voice(3.0, "a", seed=3)), "audio/wav")},
            )
            assert verify.status_code == 503 and verify.json()["error"] == "database_unavailable"
            assert verify.headers.get("connection") != "close"  # its upload was read: kept
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        # A call that starts now is accepted, and judged (without a claim: nobody can be
        # looked up by alias, nor claimed through the API, while the database is away).
        await stream(base, key, "call-b", CALLER, voice(2.0, "b", seed=4))
        await asyncio.sleep(max(0.0, outage["from"] + OUTAGE_SECONDS - time.time()))
        outage["until"] = time.time()
        proxy.up()
        await call
        return await asyncio.wait_for(events, 60)

    verdicts = asyncio.run(scenario())

    during = [v for v in verdicts if outage["from"] < v["seen_at"] < outage["until"]]
    assert len(during) >= 3, verdicts  # a verdict a second of speech, database or not
    assert all(v["decision"] in ("ACCEPT", "REJECT") and v["score"] is not None for v in during)

    # Back: the same connection answers again, and the spool empties into the table.
    assert request(kept, key, "/v1/speakers/alice")[0] == 200
    assert kept.sock.getsockname() == local
    newcomer = request(kept, key, "/v1/calls/call-b")[2]
    late = [p["latest_verdict"] for p in newcomer["participants"]]
    assert [v["decision"] for v in late] == ["SPEAKER_ID_NOT_PROVIDED"]
    deadline = time.monotonic() + 20
    while True:
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        if ready["status"] == "ready" and ready["spool"]["pending"] == 0:
            break
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
    assert ready["spool"]["written"] >= 2 * len(during) and ready["spool"]["dropped"] == 0
    database = Database(postgres_url)
    try:
        with database.engine.connect() as connection:
            stored = set(connection.scalars(sa.text("SELECT verdict_id FROM verdicts")))
            audited = connection.scalar(
                sa.text("SELECT count(*) FROM audit_log WHERE action = 'call.verdict'")
            )
            calls = set(connection.scalars(sa.text("SELECT call_id FROM calls")))
    finally:
        database.dispose()
    published = {v["verdict_id"] for v in verdicts + late}
    assert published <= stored and audited >= len(published)
    assert {"call-a", "call-b"} <= calls
