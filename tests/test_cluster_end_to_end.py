"""End to end, the replica topology: three ``biometrics serve`` replicas behind HAProxy on
a fresh database of the real PostgreSQL server and one Redis (``biometrics.topology``, what
``biometrics cluster`` starts), the bundled model and real speech (LibriSpeech readers).

One call goes through the balancer: its socket lands on one replica, a claim through the
balancer on another, and server-sent event subscribers on the two replicas that do not
hold the socket follow it, beside the webhook receiver. The caller is genuine (ACCEPT),
the agent, claimed late, an impostor (REJECT). Then the replica holding the socket is
SIGKILLed mid-call: the call reconnects through the balancer, continues on another
replica and reaches its final verdicts. Last, calls play while the three replicas are
restarted in turn, and no verdict is lost.

Skipped without ``redis-server``, ``haproxy`` or the LibriSpeech excerpts; without a
PostgreSQL server skipped too, except in CI, where it fails.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

from biometrics.soak.calls import AGENT, CALLER, CallPlan, CallRun, EventWatcher
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import CallResult, Tally
from biometrics.soak.runner import enroll
from biometrics.soak.service import HARNESS_SETTINGS, REPLICA_HEADER, fresh_postgres
from biometrics.soak.speech import Voice, load_voices, speech_folder
from biometrics.topology import Cluster, running
from tests.conftest import LIBRISPEECH, POSTGRES_ADMIN_URL, bearer

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

REPLICAS = ("replica1", "replica2", "replica3")
SPEED = 2.0  # times real time: the call's 30 s of audio in 15 s
CALL_SECONDS = 30.0  # the default schedule's final verdict at 10 s of speech, twice over
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def voices() -> list[Voice]:
    if not speech_folder(LIBRISPEECH).is_dir():
        pytest.skip(f"no LibriSpeech excerpts at {LIBRISPEECH}")
    return load_voices(LIBRISPEECH, 2, CALL_SECONDS)


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, voices: list[Voice]
) -> Iterator[tuple[Cluster, WebhookSink]]:
    for binary in ("redis-server", "haproxy"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (Debian's package of that name)")
    with contextlib.ExitStack() as stack:
        try:
            database = stack.enter_context(fresh_postgres(POSTGRES_ADMIN_URL))
        except SoakError as error:
            if os.environ.get("CI") == "true":
                pytest.fail(str(error))
            pytest.skip(str(error))
        sink = stack.enter_context(WebhookSink(secrets.token_hex(16)))
        folder = tmp_path_factory.mktemp("cluster")
        cluster = stack.enter_context(
            running(folder, database, len(REPLICAS), "bundled", sink, HARNESS_SETTINGS)
        )
        enroll(cluster.balancer, voices)
        yield cluster, sink


def test_a_call_across_replicas_survives_losing_its_replica(
    topology: tuple[Cluster, WebhookSink], voices: list[Voice]
) -> None:
    cluster, sink = topology
    genuine, other = voices
    # The caller is who they claim; the agent's voice is another reader's, claimed late as
    # the caller's speaker: an impostor.
    plan = CallPlan(f"cluster-{uuid.uuid4().hex[:8]}", genuine, genuine, other, None)
    tally = Tally()
    call = CallRun(plan, cluster.balancer, SPEED, tally)
    subscribers: dict[str, CallResult] = {}  # what each replica's event stream delivered
    watchers: list[EventWatcher] = []

    async def scenario() -> tuple[str, str]:
        playing = asyncio.create_task(call.play())
        holder = await until(
            "a socket named by the balancer",
            lambda: call.result.replicas[:1] and call.result.replicas[0],
        )
        for name in REPLICAS:
            if name != holder:
                subscribers[name] = CallResult(plan.call_id, False)
                watchers.append(EventWatcher(cluster.replica(name).client(), subscribers[name]))
                watchers[-1].start()
        claimed = await asyncio.to_thread(claim, cluster, plan.call_id, AGENT, genuine)
        # Both participants judged on speech, as every subscriber sees it: then mid-call,
        # the replica holding the socket dies.
        await until(
            "a scored verdict of each participant on each subscriber",
            lambda: all(
                scored(view, raw_id) for view in subscribers.values() for raw_id in (CALLER, AGENT)
            ),
        )
        cluster.kill(str(holder))
        await playing
        return str(holder), claimed

    holder, claimed_on = asyncio.run(scenario())
    result = call.read_back()
    close_watchers(cluster, plan.call_id, watchers)

    assert claimed_on != holder
    assert result.replicas[0] == holder and len(result.replicas) == 2
    assert result.replicas[1] not in (None, holder)  # the call went on elsewhere
    assert set(tally.error_kinds) <= {"unexpected_close"}, "\n".join(tally.errors)  # the kill
    views = {"balancer": result} | subscribers
    for name, view in views.items():
        verdicts = [str(verdict["verdict_id"]) for _, verdict in view.verdict_arrivals]
        assert max(collections.Counter(verdicts).values()) == 1, (name, verdicts)  # once each
        assert set(verdicts) == set(views["balancer"].verdicts), name
        assert set(verdicts) <= result.persisted, name
        assert in_order(view), name
    decisions = {raw_id: decided(result, raw_id) for raw_id in (CALLER, AGENT)}
    assert "ACCEPT" in decisions[CALLER] and "REJECT" not in decisions[CALLER], decisions
    assert "REJECT" in decisions[AGENT] and "ACCEPT" not in decisions[AGENT], decisions
    for raw_id in (CALLER, AGENT):
        assert final(result, raw_id), f"{raw_id} got no final verdict after the kill"
    delivered_once(sink, plan.call_id, [result])


def test_a_rolling_restart_loses_no_verdict(
    topology: tuple[Cluster, WebhookSink], voices: list[Voice]
) -> None:
    cluster, sink = topology
    for name in REPLICAS:  # the killed replica of the test before comes back first
        if cluster.replica(name).process.poll() is not None:
            cluster.restart(name)
    restarting = threading.Thread(target=lambda: [cluster.restart(name) for name in REPLICAS])
    tally = Tally()
    runs: list[CallRun] = []
    playing = (cluster.balancer, SPEED, tally)

    async def calls_while_restarting() -> None:
        restarting.start()
        number = 0
        while restarting.is_alive() or number < len(REPLICAS):
            # A call on every replica at once (the balancer picks the least connected), so
            # that each restart meets a call rather than falling between two.
            wave = []
            for _ in REPLICAS:
                caller, agent = voices[number % 2], voices[(number + 1) % 2]
                call_id = f"rolling-{number}-{uuid.uuid4().hex[:8]}"
                wave.append(CallRun(CallPlan(call_id, caller, caller, agent, None), *playing))
                number += 1
            runs.extend(wave)
            await asyncio.gather(*(run.play() for run in wave))
        restarting.join()

    asyncio.run(calls_while_restarting())
    results = [run.read_back() for run in runs]
    assert any(len(result.replicas) > 1 for result in results)  # a restart met a call
    for result in results:
        assert set(result.verdicts) <= result.persisted, result.call_id
        assert final(result, CALLER), f"{result.call_id}: no final verdict"
        assert set(decided(result, CALLER)) == {"ACCEPT"}, result.call_id
    delivered_once(sink, None, results)
    # Nothing failed but the sockets the restarts closed (1012), and each call's event
    # stream, read through the balancer from its claim on, never refused.
    assert set(tally.error_kinds) <= {"unexpected_close"}, "\n".join(tally.errors)


# --- helpers ---------------------------------------------------------------------------------


async def until(what: str, check: Callable[[], Any], seconds: float = WAIT_SECONDS) -> Any:
    """``check()``'s first true value, polled; a failure naming ``what`` past ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.05)
    return value


def claim(cluster: Cluster, call_id: str, raw_id: str, voice: Voice) -> str:
    """Claim ``raw_id`` as ``voice``'s speaker through the balancer: the replica it hit."""
    response = httpx.put(
        f"{cluster.balancer.url}/v1/calls/{call_id}/participants/"
        f"{urllib.parse.quote(raw_id, safe='')}/claim",
        json={"speaker_id": voice.speaker_id},
        headers=bearer(cluster.balancer.admin_key),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers[REPLICA_HEADER]


def close_watchers(cluster: Cluster, call_id: str, watchers: Sequence[EventWatcher]) -> None:
    """Let the subscribers follow the call to its last ``call.ended``, and stop them."""
    with cluster.balancer.client() as api:
        sockets = api.get_call(call_id).sockets
    for watcher in watchers:
        watcher.sockets = sockets
        watcher.ended.set()
        watcher.join(WAIT_SECONDS)
        assert not watcher.is_alive(), "a subscriber never saw the final call.ended"


def of(result: CallResult, raw_id: str) -> list[dict[str, Any]]:
    return [v for _, v in result.verdict_arrivals if v.get("participant_raw_id") == raw_id]


def scored(result: CallResult, raw_id: str) -> bool:
    return any(v.get("score") is not None for v in of(result, raw_id))


def decided(result: CallResult, raw_id: str) -> list[str]:
    return [str(v["decision"]) for v in of(result, raw_id) if v.get("score") is not None]


def final(result: CallResult, raw_id: str) -> bool:
    return any(v.get("final") for v in of(result, raw_id))


def in_order(result: CallResult) -> bool:
    """Each participant's verdicts arrived oldest first."""
    return all(
        [v["created_at"] for v in of(result, raw_id)]
        == sorted(v["created_at"] for v in of(result, raw_id))
        for raw_id in (CALLER, AGENT)
    )


def delivered_once(sink: WebhookSink, call_id: str | None, results: Sequence[CallResult]) -> None:
    """Every verdict event seen over SSE reached the webhook receiver, and none twice."""
    wanted = {
        event_id
        for result in results
        for event_id, kind in result.events.items()
        if kind == "verdict.changed"
    }
    calls = {result.call_id for result in results} if call_id is None else {call_id}
    deadline = time.monotonic() + WAIT_SECONDS
    while not wanted <= sink.received(calls) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert wanted <= sink.received(calls), wanted - sink.received(calls)
    assert sink.repeats == 0, f"{sink.repeats} events delivered more than once"
