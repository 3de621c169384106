"""biometrics.streaming.call: a call's sockets (reconnects continue it), its participants
(unmixed, mixed, capped), its format and the way it ends."""

from __future__ import annotations

import asyncio

from biometrics.events.call_events import CallEnded, CallStarted, ParticipantJoined
from biometrics.snapshots import SpeakerClaim
from biometrics.statuses import CallStatus, Decision
from biometrics.streaming.protocol import AudioFormat
from tests.streaming.fakes import make_call, speak

CALL_STARTED, CALL_ENDED, PARTICIPANT_JOINED = (
    CallStarted.type,
    CallEnded.type,
    ParticipantJoined.type,
)


def fmt(subscription: str, rate: int = 16_000) -> AudioFormat:
    return AudioFormat(subscription, rate, 1, 2 * rate // 50)


ALICE = "8:acs:alice"
BOB = "8:acs:bob"


def run(coroutine):
    return asyncio.run(coroutine)


def test_participants_are_kept_apart_by_raw_id():
    async def scenario():
        call, _, observer = make_call()
        call.connect("corr-1", fmt("sub-1"), {})
        await speak(call, ALICE, 1.0)
        await speak(call, BOB, 0.5, speech=False)
        return call, observer

    call, observer = run(scenario())
    assert call.status is CallStatus.ONGOING
    assert (call.correlation_id, call.subscription_id) == ("corr-1", "sub-1")
    assert {raw_id: p.frames for raw_id, p in call.participants.items()} == {ALICE: 50, BOB: 25}
    assert call.participants[ALICE].speech_seconds == 1.0
    assert call.participants[BOB].speech_seconds == 0.0
    assert observer.kinds().count(PARTICIPANT_JOINED) == 2


def test_mixed_audio_is_one_stream_for_the_call():
    async def scenario():
        call, _, _ = make_call()
        call.connect(None, fmt("sub", 24_000), {})
        await speak(call, None, 1.0)
        return call

    call = run(scenario())
    assert list(call.participants) == ["mixed"]
    summary = call.summary().as_dict()
    assert summary["participants"][0]["mixed"] is True
    assert summary["audio_format"] == {
        "encoding": "PCM",
        "sample_rate": 24_000,
        "channels": 1,
        "frame_bytes": 960,
        "mixed": True,
    }


def test_a_call_is_mixed_or_unmixed_for_good():
    """A frame of the other kind is dropped and counted, never merged: a participant whose
    raw id is literally "mixed" is an ordinary participant of an unmixed call."""

    async def scenario():
        unmixed, _, _ = make_call()
        await speak(unmixed, "mixed", 1.0)
        await speak(unmixed, None, 0.5)
        mixed, _, _ = make_call()
        await speak(mixed, None, 1.0)
        await speak(mixed, ALICE, 0.5)
        return unmixed, mixed

    unmixed, mixed = run(scenario())
    assert list(unmixed.participants) == ["mixed"]
    assert not unmixed.participants["mixed"].mixed
    assert unmixed.participants["mixed"].frames == 50
    assert unmixed.counters["dropped_mode_change"] == 25
    assert list(mixed.participants) == ["mixed"] and mixed.participants["mixed"].mixed
    assert mixed.counters["dropped_mode_change"] == 25


def test_participants_past_the_limit_are_dropped_and_counted():
    async def scenario():
        call, _, _ = make_call(max_participants=2)
        for raw_id in ("8:acs:a", "8:acs:b", "8:acs:c"):
            await speak(call, raw_id, 0.1)
        return call

    call = run(scenario())
    assert sorted(call.participants) == ["8:acs:a", "8:acs:b"]
    assert call.counters["dropped_participant_limit"] == 5


def test_a_reconnect_continues_the_same_call():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        first = {"frames": 10, "dropped": 1}
        call.connect("corr", fmt("sub-1"), first)
        call.claim(ALICE, SpeakerClaim("alice"))
        index = await speak(call, ALICE, 4.0)
        assert call.counters["frames"] == 10  # the open socket's parser counters are live
        assert await call.disconnect(first)
        ended = (call.status, call.ended_at)

        second = {"frames": 7, "dropped": 0}
        call.connect(None, fmt("sub-2"), second)
        await speak(call, ALICE, 2.0, start=index)
        return call, observer, ended

    call, observer, (ended_status, ended_at) = run(scenario())
    assert ended_status is CallStatus.ENDED and ended_at is not None
    assert call.status is CallStatus.ONGOING and call.ended_at is None
    assert call.sockets == 2 and call.correlation_id == "corr"
    assert call.counters == {"frames": 17, "dropped": 1}
    participant = call.participants[ALICE]
    assert participant.frames == 300 and participant.claim == SpeakerClaim("alice")
    assert [(v.decision, v.speech_seconds) for v in observer.verdicts(ALICE)] == [
        (Decision.NOT_ENOUGH_SPEECH, 0.0),
        (Decision.ACCEPT, 3.0),
        (Decision.ACCEPT, 4.0),  # the end of the first socket judged what was left
        (Decision.ACCEPT, 6.0),  # the reconnect went on with the same buffers
    ]
    assert observer.kinds().count(CALL_STARTED) == 2
    assert observer.kinds().count(CALL_ENDED) == 1
    assert observer.kinds().count(PARTICIPANT_JOINED) == 1


def test_a_call_ends_only_when_its_last_socket_closes():
    async def scenario():
        call, _, observer = make_call()
        one, two = {"frames": 1}, {"frames": 2}
        call.connect(None, fmt("sub"), one)
        call.connect(None, fmt("sub"), two)
        assert not await call.disconnect(one)
        assert call.status is CallStatus.ONGOING
        assert await call.disconnect(two)
        return call, observer

    call, observer = run(scenario())
    assert call.status is CallStatus.ENDED
    assert observer.kinds() == [CALL_STARTED, CALL_ENDED]
    assert call.counters == {"frames": 3}


def test_the_summary_shows_progress_claims_and_latest_verdicts():
    async def scenario():
        call, backend, _ = make_call()
        backend.add_speaker("alice")
        call.connect("corr", fmt("sub"), {"frames": 5})
        call.claim(ALICE, SpeakerClaim("alice", 40.0))
        await speak(call, ALICE, 3.0)
        return call.summary().as_dict()

    summary = run(scenario())
    assert summary["status"] == "ONGOING" and summary["counters"] == {"frames": 5}
    (alice,) = summary["participants"]
    assert alice["participant_raw_id"] == ALICE
    assert alice["frames"] == 150 and alice["net_speech_seconds"] == 3.0
    assert alice["claim"] == {"speaker_id": "alice", "threshold": 40.0, "source": "api"}
    assert alice["latest_verdict"]["decision"] == "ACCEPT"
    assert alice["first_frame_at"] == "2024-11-15T19:16:12.925Z"
