"""biometrics.streaming.recorder: a call's summary, participants and verdicts stored and read
back unchanged, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from biometrics.scoring import Decision
from biometrics.store import Database
from biometrics.store.models import CallStatus
from biometrics.streaming.decisions import SpeakerClaim, Verdict
from biometrics.streaming.recorder import CallRecorder
from biometrics.streaming.summaries import CallSummary, EnrollmentProgress, ParticipantSummary
from tests.streaming.fakes import IDENTITY, START


def verdict(number: int, decision: Decision = Decision.ACCEPT, final: bool = False) -> Verdict:
    return Verdict(
        verdict_id=f"00000000-0000-0000-0000-{number:012d}",
        call_id="call-1",
        participant_raw_id="4:+14255550123",
        speaker_id="alice",
        decision=decision,
        score=71.3 if decision is Decision.ACCEPT else None,
        similarity=0.713 if decision is Decision.ACCEPT else None,
        normalized_score=None,
        threshold=30.0,
        calibrated=False,
        speech_seconds=3.0 + number,
        first_audio_at=START,
        last_audio_at=START + timedelta(seconds=4 + number),
        final=final,
        model=IDENTITY,
        detail=None,
        created_at=START + timedelta(seconds=5 + number),
    )


def summary(latest: Verdict | None, status: CallStatus = CallStatus.ONGOING) -> CallSummary:
    caller = ParticipantSummary(
        raw_id="4:+14255550123",
        joined_at=START,
        first_frame_at=START,
        last_frame_at=START + timedelta(seconds=9),
        frames=450,
        speech_seconds=7.5,
        claim=SpeakerClaim("alice", 40.0, "alias"),
        latest_verdict=latest,
        enrollment=EnrollmentProgress("carol", call_speech_seconds=2.0),
    )
    agent = ParticipantSummary("8:acs:agent", None, None, None, 0, 0.0, None, None, None)
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
        participants=(caller, agent),
    )


def test_a_call_and_its_verdicts_read_back_as_written(database_url):
    database = Database(database_url)
    recorder = CallRecorder(database)

    async def scenario():
        recorder.save(summary(None))
        first, second = verdict(1, Decision.NOT_ENOUGH_SPEECH), verdict(2, final=True)
        recorder.save(summary(first), first)
        ended = dataclasses.replace(summary(second, CallStatus.ENDED), ended_at=START)
        recorder.save(ended, second)
        await recorder.flush()
        return (
            ended,
            await recorder.load("call-1"),
            await recorder.verdicts("call-1", "4:+14255550123", 10),
            await recorder.verdicts("call-1", "4:+14255550123", 1),
            await recorder.verdicts("call-1", "nobody", 10),
            await recorder.load("call-2"),
        )

    try:
        ended, loaded, history, last, nobody, unknown = asyncio.run(scenario())
    finally:
        recorder.close()
        database.dispose()
    assert loaded == ended
    assert [v.verdict_id[-1] for v in history] == ["1", "2"]
    assert history[1] == verdict(2, final=True)
    assert last == history[1:]
    assert nobody is None and unknown is None
