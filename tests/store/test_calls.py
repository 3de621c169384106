"""biometrics.store.calls: a call's summary and its participants' progress stored and read
back unchanged, with each participant's latest verdict from the verdict history, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from biometrics.snapshots import (
    CallSummary,
    EnrollmentProgress,
    ParticipantSummary,
    SpeakerClaim,
    StreamFormat,
)
from biometrics.statuses import CallStatus, Decision
from biometrics.store import Database
from biometrics.store.calls import CallStore
from biometrics.store.verdicts import VerdictHistory
from tests.store.verdicts import START, verdict


def summary(latest, status: CallStatus = CallStatus.ONGOING) -> CallSummary:
    caller = ParticipantSummary(
        raw_id="4:+14255550123",
        mixed=False,
        joined_at=START,
        first_frame_at=START,
        last_frame_at=START + timedelta(seconds=9),
        frames=450,
        speech_seconds=7.5,
        claim=SpeakerClaim("alice", 40.0, "alias"),
        latest_verdict=latest,
        enrollment=EnrollmentProgress("carol", call_speech_seconds=2.0),
    )
    agent = ParticipantSummary("mixed", False, None, None, None, 0, 0.0, None, None, None)
    return CallSummary(
        call_id="call-1",
        correlation_id="corr-1",
        subscription_id="sub-1",
        status=status,
        created_at=START,
        started_at=START,
        ended_at=None,
        sockets=1,
        counters={"frames": 451, "dropped": 1},
        audio_format=StreamFormat("PCM", 24_000, 1, 960, mixed=False),
        participants=(caller, agent),
    )


def test_a_call_reads_back_as_written_with_its_latest_verdicts(database_url):
    database = Database(database_url)
    store = CallStore(database)
    history = VerdictHistory(database)
    first, second = verdict(1, Decision.NOT_ENOUGH_SPEECH), verdict(2, final=True)

    async def scenario():
        store.save(summary(None))
        history.record(first)
        store.save(summary(first))
        history.record(second)
        ended = dataclasses.replace(summary(second, CallStatus.ENDED), ended_at=START)
        store.save(ended)
        await store.flush()
        return ended, await store.load("call-1"), await store.load("call-2")

    try:
        ended, loaded, unknown = asyncio.run(scenario())
    finally:
        store.close()
        database.dispose()
    assert loaded == ended
    assert loaded.participants[0].latest_verdict == second
    # A raw id that is literally "mixed" in unmixed audio stays an ordinary participant.
    assert loaded.participants[1].raw_id == "mixed" and not loaded.participants[1].mixed
    assert unknown is None
