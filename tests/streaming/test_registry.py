"""biometrics.streaming.registry: calls created by claims and sockets, evicted once ended and
idle, resumed from the database, and refused when memory is full."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from biometrics.config import Settings
from biometrics.events import Broker
from biometrics.store import Database
from biometrics.store.models import CallStatus
from biometrics.streaming.decisions import DecisionSchedule, SpeakerClaim
from biometrics.streaming.errors import TooManyCalls
from biometrics.streaming.publisher import CallPublisher
from biometrics.streaming.recorder import CallRecorder
from biometrics.streaming.registry import CallRegistry
from tests.streaming.fakes import FakeBackend, LoudnessDetector, speak

ALICE = "8:acs:alice"


@pytest.fixture
def registry_parts(database_url):
    settings = dataclasses.replace(
        Settings(),
        database_url=database_url,
        stream_retention_seconds=0.0,
        stream_max_calls=2,
    )
    database = Database(database_url)
    recorder = CallRecorder(database)
    broker = Broker()
    backend = FakeBackend(DecisionSchedule.from_settings(settings))
    backend.verifier.enroll("alice")
    registry = CallRegistry(
        settings,
        backend=backend,
        observer=CallPublisher(broker, recorder),
        recorder=recorder,
        broker=broker,
    )
    registry.new_detector = LoudnessDetector  # type: ignore[assignment]
    yield registry, recorder, broker
    recorder.close()
    database.dispose()


def test_an_evicted_call_resumes_from_the_database(registry_parts):
    registry, recorder, broker = registry_parts

    async def scenario():
        await registry.claim("call-1", ALICE, SpeakerClaim("alice", 50.0))
        counters = {"frames": 600}
        call = await registry.connect("call-1", "corr", "sub", counters)
        await speak(call, ALICE, 12.0)  # to the final verdict
        await registry.disconnect(call, counters)
        await recorder.flush()
        registry.sweep()  # retention 0: the ended, idle call leaves memory
        assert registry.find("call-1") is None
        assert broker.subscribe("call-1").pending == 0  # its event history went with it
        stored = await registry.summary("call-1")
        resumed = await registry.connect("call-1", None, "sub-2", {})
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


def test_calls_past_the_limit_are_refused_while_the_others_are_live(registry_parts):
    registry, _, _ = registry_parts

    async def scenario():
        one = await registry.connect("call-1", None, "s", {})
        await registry.connect("call-2", None, "s", {})
        with pytest.raises(TooManyCalls):
            await registry.claim("call-3", ALICE, SpeakerClaim("alice"))
        await registry.disconnect(one, {})
        await registry.claim("call-3", ALICE, SpeakerClaim("alice"))  # call-1 made room
        return registry.find("call-1"), registry.find("call-3")

    gone, pending = asyncio.run(scenario())
    assert gone is None and pending.status is CallStatus.PENDING
