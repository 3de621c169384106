"""biometrics.streaming.registry: calls created by claims and sockets, evicted once ended and
idle, resumed from the database, and refused when memory is full."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from biometrics.errors import TooManyCalls
from biometrics.events import Broker
from biometrics.events.publisher import CallPublisher
from biometrics.snapshots import SpeakerClaim
from biometrics.statuses import CallStatus
from biometrics.store import Database
from biometrics.store.calls import CallStore
from biometrics.streaming.protocol import AudioFormat
from biometrics.streaming.registry import CallLimits, CallRegistry
from biometrics.streaming.schedule import DecisionSchedule
from tests.streaming.fakes import Backend, speak

ALICE = "8:acs:alice"
SUB = AudioFormat("sub", 16_000, 1, 640)


@pytest.fixture
def registry_parts(database_url):
    database = Database(database_url)
    recorder = CallStore(database)
    broker = Broker()
    backend = Backend(DecisionSchedule.of_seconds(3.0, 2.0, 10.0), database)
    backend.add_speaker("alice")
    registry = CallRegistry(
        CallLimits(max_calls=2, max_participants=8, retention_seconds=0.0),
        backend.services,
        recorder,
        CallPublisher(broker),
        broker,
    )
    yield registry, recorder, broker
    recorder.close()
    database.dispose()


def test_an_evicted_call_resumes_from_the_database(registry_parts):
    registry, recorder, broker = registry_parts

    async def scenario():
        await registry.claim("call-1", ALICE, SpeakerClaim("alice", 50.0))
        counters = {"frames": 600}
        call = await registry.connect("call-1", "corr", SUB, counters)
        await speak(call, ALICE, 12.0)  # to the final verdict
        await registry.disconnect(call, counters)
        await recorder.flush()
        registry.sweep()  # retention 0: the ended, idle call leaves memory
        assert registry.find("call-1") is None
        assert broker.subscribe("call-1").pending == 0  # its event history went with it
        stored = await registry.summary("call-1")
        resumed = await registry.connect("call-1", None, SUB, {})
        return stored, resumed

    stored, resumed = asyncio.run(scenario())
    assert stored.status is CallStatus.ENDED
    assert stored.participant(ALICE).latest_verdict.final
    assert resumed.status is CallStatus.ONGOING and resumed.sockets == 2
    assert resumed.correlation_id == "corr" and resumed.counters == {"frames": 600}
    alice = resumed.participants[ALICE]
    assert alice.claim == SpeakerClaim("alice", 50.0) and alice.frames == 600
    assert alice.latest == stored.participant(ALICE).latest_verdict
    assert alice.window_frames == 0  # speech is never stored


def test_an_evicted_call_and_its_speech_are_freed_without_waiting_for_the_collector(
    registry_parts,
):
    registry, recorder, _ = registry_parts

    async def scenario():
        await registry.claim("call-1", ALICE, SpeakerClaim("alice", 50.0))
        call = await registry.connect("call-1", None, SUB, {})
        await speak(call, ALICE, 4.0)
        await registry.disconnect(call, {})
        await recorder.flush()
        gone = weakref.ref(call), weakref.ref(call.participants[ALICE])
        del call
        assert registry.sweep() == 1
        return gone

    gc.disable()  # only reference counting: what a cycle would keep stays kept
    try:
        gone = asyncio.run(scenario())
        assert [ref() for ref in gone] == [None, None]
    finally:
        gc.enable()


def test_calls_past_the_limit_are_refused_while_the_others_are_live(registry_parts):
    registry, _, _ = registry_parts

    async def scenario():
        one = await registry.connect("call-1", None, SUB, {})
        await registry.connect("call-2", None, SUB, {})
        with pytest.raises(TooManyCalls):
            await registry.claim("call-3", ALICE, SpeakerClaim("alice"))
        await registry.disconnect(one, {})
        await registry.claim("call-3", ALICE, SpeakerClaim("alice"))  # call-1 made room
        return registry.find("call-1"), registry.find("call-3")

    gone, pending = asyncio.run(scenario())
    assert gone is None and pending.status is CallStatus.PENDING
