"""Two replicas of the service, each a real uvicorn server in this process with its own
event loop, sharing one PostgreSQL database and one real Redis server: a claim on B reaches
the call A streams, SSE subscribers on either see every event once and in order (and replay
from ``Last-Event-ID``), a webhook fires once per event, and a socket that lands on B takes
the call over, from an idle holder at once or from a dead one once its lease expires.

With the suite's tiny random-weight model these tests assert where verdicts go, not who is
who (thresholds 0 accept everyone)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from biometrics.app import create_app
from biometrics.cluster import keys
from biometrics.cluster.events import SharedEvents
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder
from biometrics.events import Event
from biometrics.snapshots import CallSummary
from biometrics.soak.service import free_port
from biometrics.store.calls import CallStore
from tests.api.test_calls import wait_until
from tests.conftest import LiveServer, running_server
from tests.events.receiver import WebhookReceiver
from tests.streaming.helpers import call_messages, live_settings, parse_sse, voice
from tests.test_live_call_end_to_end import enroll, follow_events, participant_path, ws_url

SECRET = "replicas-secret"
ALICE = "8:acs:alice"
LEASE_SECONDS = 2.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET).running() as running:
        yield running


@pytest.fixture
def replica_settings(settings: Settings, redis_url: str, receiver: WebhookReceiver) -> Settings:
    live = live_settings(
        settings,
        redis_url=redis_url,
        redis_lease_seconds=LEASE_SECONDS,
        webhook_urls=receiver.url,
        webhook_secret=SECRET,
        webhook_backoff_seconds=0.05,
    )
    # A socket waits while its call's claim is made on the other replica.
    return dataclasses.replace(live, stream_idle_timeout_seconds=10.0)


@dataclasses.dataclass
class Replicas:
    a: LiveServer
    b: LiveServer
    stop_a: Callable[[], None]  # a graceful stop, as SIGTERM's


@pytest.fixture
def replicas(
    replica_settings: Settings, encoder: SpeakerEncoder, admin_key: str
) -> Iterator[Replicas]:
    def serve(stack: contextlib.ExitStack) -> LiveServer:
        url = stack.enter_context(running_server(create_app(replica_settings, encoder=encoder)))
        return LiveServer(url, replica_settings, admin_key)

    with contextlib.ExitStack() as on_a, contextlib.ExitStack() as on_b:
        yield Replicas(serve(on_a), serve(on_b), on_a.close)


async def wait_for_status(http: httpx.AsyncClient, call_id: str, status: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        response = await http.get(f"/v1/calls/{call_id}")
        if response.status_code == 200 and response.json()["status"] == status:
            return response.json()
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.05)


async def stream(server: LiveServer, call_id: str, messages: list[str]) -> None:
    headers = {"x-ms-call-connection-id": call_id}
    async with connect(ws_url(server), additional_headers=headers) as socket:
        for message in messages:
            await socket.send(message)
            await asyncio.sleep(0)


def test_claim_on_b_reaches_a_and_both_see_every_event_once_in_order(replicas, receiver):
    a, b = replicas.a, replicas.b
    receiver.statuses = [500]  # the first delivery fails and is retried
    call_id = "across-1"
    messages = call_messages({ALICE: voice(4.0, "a", seed=11)})
    with httpx.Client(base_url=a.url, headers=a.headers, timeout=30) as http:
        enroll(http, "alice", "a", seed=1)

    async def call():
        async with (
            httpx.AsyncClient(base_url=b.url, headers=b.headers, timeout=30) as on_b,
            connect(ws_url(a), additional_headers={"x-ms-call-connection-id": call_id}) as ws,
        ):
            await ws.send(messages[0])  # the call starts on A
            await wait_for_status(on_b, call_id, "ONGOING")
            followers = [asyncio.create_task(follow_events(r, call_id)) for r in (a, b)]
            started = time.monotonic()
            claimed = await on_b.put(
                participant_path(call_id, ALICE, "claim"),
                json={"speaker_id": "alice", "threshold": 0},
            )
            took = time.monotonic() - started
            for message in messages[1:]:
                await ws.send(message)
                await asyncio.sleep(0)
        return claimed, took, await asyncio.wait_for(asyncio.gather(*followers), 30)

    claimed, took, (on_a, on_b) = asyncio.run(call())

    # B's answer is A's: the claim was applied to the call A streams.
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert (body["call_status"], body["claim"]["speaker_id"]) == ("ONGOING", "alice")
    assert took < 2.0  # a loaded 2-core machine; benchmarks/replicas.py measures it

    with httpx.Client(base_url=b.url, headers=b.headers, timeout=30) as http:
        history = http.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
        # Replay on B from the second event: exactly the rest, once, in order.
        replayed = http.get(
            f"/v1/calls/{call_id}/events", headers={"Last-Event-ID": on_b[1][0]}
        ).text
    assert [v["decision"] for v in history[1:]] == ["ACCEPT"] * (len(history) - 1)
    assert len(history) >= 2 and history[0]["decision"] == "NOT_ENOUGH_SPEECH"

    # Each replica's subscriber saw the same events, once each, in the same order.
    assert on_a == on_b
    ids = [event_id for event_id, _, _ in on_b]
    assert len(ids) == len(set(ids))
    assert on_b[0][1] == "call.started"
    assert [data for _, kind, data in on_b if kind == "verdict.changed"] == history
    assert [event_id for event_id, _, _ in parse_sse(replayed)] == ids[2:]

    # Two replicas send webhooks; each event reached the receiver once, but for the one
    # refused at first, which was sent again.
    receiver.wait_for(lambda got: {e["id"] for e in got} >= set(ids))
    time.sleep(1.0)  # a second delivery, if any, would come by now
    posted = receiver.posted_ids()
    assert sorted(set(posted)) == sorted(ids) and len(posted) == len(ids) + 1


async def read_events(response: httpx.Response) -> list[tuple[str, str, dict]]:
    """An open SSE response's events until call.ended."""
    events, block = [], []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        events.extend(parse_sse("\n".join(block)))
        block = []
        if events and events[-1][1] == "call.ended":
            break
    return events


@pytest.mark.parametrize("database", ["slow", "failing"])
def test_a_call_claimed_on_a_a_moment_ago_is_followed_from_b_from_its_first_event(
    replicas, redis_url, monkeypatch, database
):
    """B is asked for the events of a call claimed on A a moment ago, before any of them
    reached Redis (A's are held back here until B answers): B streams them from the first
    all the same. With a ``slow`` database the claim's answer waited for the call to be
    stored, so B reads it at once; with a ``failing`` one (A's write is kept for a retry)
    B knows the call by A's lease alone."""
    a, b = replicas.a, replicas.b
    call_id = f"claimed-then-followed-{database}"
    messages = call_messages({ALICE: voice(4.0, "a", seed=41)})
    with httpx.Client(base_url=a.url, headers=a.headers, timeout=30) as http:
        enroll(http, "alice", "a", seed=1)

    # Both replicas run these classes; only A writes this call and its events.
    subscribed = threading.Event()
    save, write = CallStore._save, SharedEvents._write

    def late_save(store: CallStore, summary: CallSummary) -> None:
        if summary.call_id == call_id and not subscribed.is_set():
            if database == "failing":
                raise OperationalError("UPDATE calls", {}, ConnectionError("database away"))
            time.sleep(0.3)
        save(store, summary)

    async def late_write(events: SharedEvents, batch: list[Event]) -> None:
        while not subscribed.is_set() and any(event.call_id == call_id for event in batch):
            await asyncio.sleep(0.01)
        await write(events, batch)

    monkeypatch.setattr(CallStore, "_save", late_save)
    monkeypatch.setattr(SharedEvents, "_write", late_write)

    async def call() -> list[tuple[str, str, dict]]:
        async with (
            httpx.AsyncClient(base_url=a.url, headers=a.headers, timeout=30) as on_a,
            httpx.AsyncClient(base_url=b.url, headers=b.headers, timeout=30) as on_b,
        ):
            claimed = await on_a.put(
                participant_path(call_id, ALICE, "claim"),
                json={"speaker_id": "alice", "threshold": 0},
            )
            assert claimed.status_code == 200, claimed.text
            assert claimed.json()["call_status"] == "PENDING"
            async with on_b.stream("GET", f"/v1/calls/{call_id}/events") as response:
                assert response.status_code == 200, (await response.aread()).decode()
                if database == "slow":
                    read = await on_b.get(f"/v1/calls/{call_id}")
                    assert read.status_code == 200, read.text
                    assert read.json()["status"] == "PENDING"
                    (participant,) = read.json()["participants"]
                    assert participant["claim"]["speaker_id"] == "alice"
                subscribed.set()
                await stream(a, call_id, messages)
                events = await asyncio.wait_for(read_events(response), 30)
            await wait_for_status(on_b, call_id, "ENDED")
            return events

    try:
        followed = asyncio.run(call())
    finally:
        subscribed.set()  # whatever failed, A's writes go on

    with httpx.Client(base_url=b.url, headers=b.headers, timeout=30) as http:
        replayed = parse_sse(http.get(f"/v1/calls/{call_id}/events").text)
        history = http.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
        # Once the call's stream has expired, an ended call is said to be so; a call
        # nobody knows, to be unknown.
        shared = redis.Redis.from_url(redis_url)
        shared.delete(keys.call_events(call_id))
        shared.close()
        expired = http.get(f"/v1/calls/{call_id}/events", timeout=5)
        unknown = http.get("/v1/calls/nobody-knows/events", timeout=5)

    # B's subscriber got every event of the call once, in order: the claim's first verdict
    # (published before it subscribed) and the socket's.
    assert [event_id for event_id, _, _ in followed] == [event_id for event_id, _, _ in replayed]
    kinds = [kind for _, kind, _ in followed]
    assert "call.started" in kinds and kinds[-1] == "call.ended"
    verdicts = [data["decision"] for _, kind, data in followed if kind == "verdict.changed"]
    assert verdicts[0] == "NOT_ENOUGH_SPEECH" and "ACCEPT" in verdicts
    assert "ACCEPT" in [verdict["decision"] for verdict in history]
    assert expired.status_code == 404 and "no longer held" in expired.json()["detail"]
    assert unknown.status_code == 404 and "is not known" in unknown.json()["detail"]


@pytest.mark.parametrize("holder", ["idle", "dead", "stopped"])
def test_a_reconnect_on_b_takes_the_call_over_with_its_claims_and_history(
    replicas, redis_url, holder
):
    a, b = replicas.a, replicas.b
    call_id = f"takeover-{holder}"
    first = call_messages({ALICE: voice(2.5, "a", seed=21)})
    second = call_messages({ALICE: voice(4.0, "a", seed=22)})
    with httpx.Client(base_url=a.url, headers=a.headers, timeout=30) as http:
        enroll(http, "alice", "a", seed=1)
        http.put(
            participant_path(call_id, ALICE, "claim"), json={"speaker_id": "alice", "threshold": 0}
        ).raise_for_status()

    async def first_socket() -> None:
        await stream(a, call_id, first)
        async with httpx.AsyncClient(base_url=a.url, headers=a.headers) as http:
            await wait_for_status(http, call_id, "ENDED")

    asyncio.run(first_socket())
    with httpx.Client(base_url=a.url, headers=a.headers, timeout=30) as http:
        before = http.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
    assert before, "A judged the first socket's speech"

    shared = redis.Redis.from_url(redis_url, decode_responses=True)
    assert shared.get(keys.owner(call_id)) and shared.pttl(keys.owner(call_id)) > 0  # A's lease
    if holder == "dead":
        # What a replica that died leaves: a lease nobody renews, and nobody to ask.
        shared.set(keys.owner(call_id), "replica-gone", px=1500)
    if holder == "stopped":  # a rolling restart: A lets its calls go as it stops
        replicas.stop_a()
        assert shared.get(keys.owner(call_id)) is None

    started = time.monotonic()
    asyncio.run(stream(b, call_id, second))
    with httpx.Client(base_url=b.url, headers=b.headers, timeout=30) as http:

        async def ended() -> dict:
            async with httpx.AsyncClient(base_url=b.url, headers=b.headers) as on_b:
                return await wait_for_status(on_b, call_id, "ENDED")

        summary = asyncio.run(ended())
        after = http.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
        events = parse_sse(http.get(f"/v1/calls/{call_id}/events").text)
    took = time.monotonic() - started
    owner = shared.get(keys.owner(call_id))
    shared.close()

    # B continued the call: two sockets, the claim made on A, A's verdicts and its own.
    assert summary["sockets"] == 2
    (participant,) = summary["participants"]
    assert participant["claim"]["speaker_id"] == "alice"
    assert after[: len(before)] == before and len(after) > len(before)
    assert owner not in (None, "replica-gone")
    if holder == "dead":
        assert took >= 1.0  # B waited for the dead holder's lease to expire
    # Both sockets' events are in the call's one stream, in order.
    kinds = [kind for _, kind, _ in events]
    assert kinds.count("call.started") == 2 and kinds.count("call.ended") == 2


def test_readyz_names_redis_and_fails_without_it(settings, encoder, redis_url):
    for url, status, state in (
        (redis_url, 200, "ok"),
        (f"redis://127.0.0.1:{free_port()}/0", 503, "unreachable"),
    ):
        app = create_app(dataclasses.replace(settings, redis_url=url), encoder=encoder)
        with TestClient(app) as client:
            response = client.get("/readyz")
        assert (response.status_code, response.json()["redis"]) == (status, state)


def test_without_redis_readyz_says_nothing_of_it(client):
    assert "redis" not in client.get("/readyz").json()


def test_without_redis_a_replica_still_judges_its_calls_and_says_what_it_cannot_do(
    settings, encoder, admin_key, caplog
):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(live_settings(settings, redis_url=unreachable), encoder=encoder)
    call_id = "redis-down"
    messages = call_messages({ALICE: voice(4.0, "a", seed=31)})
    with TestClient(app, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        enroll(client, "alice", "a", seed=1)
        claimed = client.put(
            participant_path(call_id, ALICE, "claim"), json={"speaker_id": "alice", "threshold": 0}
        )
        assert claimed.status_code == 200, claimed.text
        with client.websocket_connect(
            "/ws/acs", headers={"x-ms-call-connection-id": call_id}
        ) as socket:
            for message in messages:
                socket.send_text(message)
            # (the test client cancels the socket's handler when the block ends)
            wait_until(
                client, call_id, lambda call: call["counters"].get("frames") == len(messages)
            )
        wait_until(client, call_id, lambda call: call["status"] == "ENDED")
        verdicts = client.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
        events = client.get(f"/v1/calls/{call_id}/events")
    assert [v["decision"] for v in verdicts][-1] == "ACCEPT"
    assert (events.status_code, events.json()["error"]) == (503, "redis_unavailable")
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "Redis unreachable: the call is held here without a lease" in logged
    assert "Redis unreachable: call events reach this replica's subscribers only" in logged
