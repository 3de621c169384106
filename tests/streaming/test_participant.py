"""biometrics.streaming.participant: the decision schedule, bounded buffers, claims, alias
claims and enrollment from a call, driven through a call with a fake model and database."""

from __future__ import annotations

import asyncio

import pytest

from biometrics.errors import EnrollmentInProgress, InvalidRequest
from biometrics.events.call_events import EnrollmentChanged, ParticipantJoined
from biometrics.snapshots import SpeakerClaim
from biometrics.statuses import Decision, SpeakerStatus
from biometrics.streaming.protocol import AudioFormat
from biometrics.streaming.schedule import DecisionSchedule
from tests.streaming.fakes import make_call, settle, speak

ALICE = "8:acs:alice"
PHONE = "4:+14255550123"


def run(coroutine):
    return asyncio.run(coroutine)


def speech_points(verdicts) -> list[tuple[str, float, bool]]:
    return [(v.decision.value, v.speech_seconds, v.final) for v in verdicts]


def test_verdicts_come_at_the_minimum_then_each_step_and_the_maximum_is_final():
    async def scenario():
        call, backend, observer = make_call()  # 3 s, 2 s, 10 s
        backend.add_speaker("alice")
        call.connect(None, AudioFormat("sub", 16_000, 1, 640), {})
        call.claim(ALICE, SpeakerClaim("alice", threshold=0.0))
        await speak(call, ALICE, 14.0)
        return call, observer

    call, observer = run(scenario())
    assert speech_points(observer.verdicts(ALICE)) == [
        ("NOT_ENOUGH_SPEECH", 0.0, False),
        ("ACCEPT", 3.0, False),
        ("ACCEPT", 5.0, False),
        ("ACCEPT", 7.0, False),
        ("ACCEPT", 9.0, False),
        ("ACCEPT", 10.0, True),
    ]
    final = observer.verdicts(ALICE)[-1]
    assert final.score == 100.0 and final.similarity == pytest.approx(1.0)
    assert final.threshold == 0.0 and final.calibrated is False
    assert final.first_audio_at is not None and final.last_audio_at > final.first_audio_at
    assert final.model.checkpoint_sha256 == "0" * 64
    participant = call.participants[ALICE]
    assert participant.speech_seconds == pytest.approx(14.0)  # counted past the maximum
    assert participant.window_frames == 500  # but never buffered past it


def test_silence_does_not_count_toward_the_schedule():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        call.claim(ALICE, SpeakerClaim("alice"))
        index = await speak(call, ALICE, 2.0)
        index = await speak(call, ALICE, 5.0, start=index, speech=False)
        await speak(call, ALICE, 1.0, start=index)
        return call, observer

    call, observer = run(scenario())
    assert speech_points(observer.verdicts(ALICE)) == [
        ("NOT_ENOUGH_SPEECH", 0.0, False),
        ("ACCEPT", 3.0, False),  # 30 = the default threshold; identical vectors score 100
    ]
    assert call.participants[ALICE].frames == 400


def test_a_slow_model_gets_one_verdict_at_a_time_on_all_the_speech_so_far():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        backend.worker.gate = asyncio.Event()
        call.claim(ALICE, SpeakerClaim("alice"))
        await settle(call)
        await speak(call, ALICE, 8.0, wait=False)  # due at 3 s, held; 5 s and 7 s pass
        async with asyncio.timeout(5):
            while not backend.worker.embedded:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert len(backend.worker.embedded) == 1
        backend.worker.gate.set()
        await settle(call)
        return backend, observer

    backend, observer = run(scenario())
    assert [v.speech_seconds for v in observer.verdicts(ALICE)] == [0.0, 3.0, 8.0]
    assert backend.worker.embedded == [3 * 16_000, 8 * 16_000]


def test_memory_stays_bounded_however_long_the_call():
    async def scenario():
        call, _, _ = make_call()
        await speak(call, ALICE, 60.0, wait=False)
        await settle(call)
        return call

    participant = run(scenario()).participants[ALICE]
    assert participant.speech_seconds == pytest.approx(60.0)
    assert participant.window_frames == 500
    assert participant._window._samples.nbytes == 500 * 320 * 4  # allocated once, 640 KB


def test_without_a_claim_the_verdict_says_so():
    async def scenario():
        call, _, observer = make_call()
        await speak(call, ALICE, 4.0)
        return observer

    observer = run(scenario())
    assert observer.kinds()[:1] == [ParticipantJoined.type]
    assert [v.decision for v in observer.verdicts(ALICE)] == [Decision.SPEAKER_ID_NOT_PROVIDED]


def test_a_late_claim_is_judged_at_once_on_the_speech_buffered_so_far():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        await speak(call, ALICE, 12.0)
        call.claim(ALICE, SpeakerClaim("alice", threshold=100.0))
        await settle(call)
        return observer

    verdicts = run(scenario()).verdicts(ALICE)
    assert [v.decision.value for v in verdicts] == ["SPEAKER_ID_NOT_PROVIDED", "ACCEPT"]
    assert (verdicts[-1].speech_seconds, verdicts[-1].final) == (10.0, True)  # 100 >= 100


def test_threshold_zero_accepts_and_threshold_one_hundred_rejects_a_poor_match():
    async def scenario(threshold):
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        backend.worker.vector = backend.worker.vector * 0 + [0.6, 0.8, 0.0, 0.0]
        call.claim(ALICE, SpeakerClaim("alice", threshold=threshold))
        await speak(call, ALICE, 3.0)
        return observer.verdicts(ALICE)[-1]

    accepted, rejected = run(scenario(0.0)), run(scenario(100.0))
    assert (accepted.decision, accepted.score) == (Decision.ACCEPT, 60.0)
    assert (rejected.decision, rejected.score) == (Decision.REJECT, 60.0)


@pytest.mark.parametrize(
    ("stored", "decision"),
    [
        (None, Decision.SPEAKER_NOT_ENROLLED),  # unknown (e.g. deleted during the call)
        (SpeakerStatus.PENDING_ENROLLMENT, Decision.SPEAKER_NOT_ENROLLED),
        (SpeakerStatus.OPTED_OUT, Decision.SPEAKER_OPTED_OUT),
    ],
)
def test_claims_on_speakers_that_cannot_be_judged(stored, decision):
    async def scenario():
        call, backend, observer = make_call()
        if stored is not None:
            backend.add_speaker("alice", stored, vector=None)
        call.claim(ALICE, SpeakerClaim("alice"))
        await speak(call, ALICE, 6.0)
        return observer

    verdicts = run(scenario()).verdicts(ALICE)
    assert [v.decision for v in verdicts] == [decision]  # repeated outcomes are not re-sent
    assert verdicts[0].score is None


def test_a_claimed_speaker_enrolled_during_the_call_is_judged_at_the_next_step():
    async def scenario():
        call, backend, observer = make_call()
        call.claim(ALICE, SpeakerClaim("alice"))
        index = await speak(call, ALICE, 4.0)
        backend.add_speaker("alice")
        await speak(call, ALICE, 1.0, start=index)
        return observer

    assert speech_points(run(scenario()).verdicts(ALICE)) == [
        ("SPEAKER_NOT_ENROLLED", 0.0, False),
        ("ACCEPT", 5.0, False),
    ]


def test_a_verdict_on_a_replaced_claim_is_dropped():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        backend.add_speaker("bob")
        call.claim(ALICE, SpeakerClaim("alice"))
        await settle(call)
        backend.worker.gate = asyncio.Event()
        await speak(call, ALICE, 3.0, wait=False)  # alice's verdict is being made
        call.claim(ALICE, SpeakerClaim("bob"))
        backend.worker.gate.set()
        await settle(call)
        return observer

    verdicts = run(scenario()).verdicts(ALICE)
    assert [(v.speaker_id, v.decision.value) for v in verdicts] == [
        ("alice", "NOT_ENOUGH_SPEECH"),
        ("bob", "ACCEPT"),
    ]


def test_a_phone_participant_is_claimed_by_the_alias_of_its_number():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        backend.aliases["+14255550123"] = "alice"
        await speak(call, PHONE, 3.0)
        await speak(call, "8:acs:agent", 3.0)
        return call, observer

    call, observer = run(scenario())
    assert call.participants[PHONE].claim == SpeakerClaim("alice", None, "alias")
    assert observer.verdicts(PHONE)[-1].decision is Decision.ACCEPT
    assert call.participants["8:acs:agent"].claim is None


def test_a_claim_through_the_api_wins_over_the_alias():
    async def scenario():
        call, backend, _ = make_call()
        backend.aliases["+14255550123"] = "alice"
        call.claim(PHONE, SpeakerClaim("bob"))  # before any audio: the call is pending
        assert call.status.value == "PENDING"
        await speak(call, PHONE, 1.0)
        return call

    assert run(scenario()).participants[PHONE].claim == SpeakerClaim("bob")


def test_a_failed_verdict_is_tried_again_at_the_next_step(caplog):
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        call.claim(ALICE, SpeakerClaim("alice"))
        await settle(call)
        backend.worker.fail = True
        index = await speak(call, ALICE, 4.0)
        backend.worker.fail = False
        await speak(call, ALICE, 1.0, start=index)
        return observer

    assert speech_points(run(scenario()).verdicts(ALICE)) == [
        ("NOT_ENOUGH_SPEECH", 0.0, False),
        ("ACCEPT", 5.0, False),
    ]
    assert "a live verdict failed" in caplog.text


# --- enrollment from the call ---------------------------------------------------------------


def test_enrollment_takes_the_speech_so_far_then_each_chunk_until_enrolled():
    async def scenario():
        schedule = DecisionSchedule(min_frames=50, step_frames=50, max_frames=100)  # 2 s chunks
        call, backend, observer = make_call(schedule)
        backend.enroller.minimum_seconds = 5.0
        index = await speak(call, ALICE, 1.6)
        task = call.participants[ALICE].start_enrollment("carol")
        await task
        progress = [call.participants[ALICE].enrollment]
        index = await speak(call, ALICE, 6.0, start=index)
        progress.append(call.participants[ALICE].enrollment)
        await speak(call, ALICE, 4.0, start=index)
        return call, backend, observer, progress

    call, backend, observer, progress = run(scenario())
    assert backend.enroller.enrolled == [("carol", 25_600), ("carol", 32_000), ("carol", 32_000)]
    assert progress[0].status == "PENDING_ENROLLMENT"
    assert progress[0].call_speech_seconds == pytest.approx(1.6)
    final = call.participants[ALICE].enrollment
    assert final.status == "ENROLLED" and not final.active
    assert final.call_speech_seconds == pytest.approx(5.6)
    assert final.remaining_speech_seconds == 0.0
    assert call.participants[ALICE]._enroll_buffer is None  # nothing more is kept
    assert observer.kinds().count(EnrollmentChanged.type) == 4  # started, then each chunk


def test_enrollment_waits_for_speech_and_refuses_mixed_audio_and_a_second_speaker():
    async def scenario():
        mixed_call, _, _ = make_call()
        await speak(mixed_call, None, 0.5)
        with pytest.raises(InvalidRequest, match="mixed audio"):
            mixed_call.participants["mixed"].start_enrollment("carol")
        call, _, _ = make_call()
        await speak(call, ALICE, 0.5)
        assert call.participants[ALICE].start_enrollment("carol") is None  # too little yet
        with pytest.raises(EnrollmentInProgress):
            call.participants[ALICE].start_enrollment("dave")

    run(scenario())


def test_verdict_events_carry_the_verdict():
    async def scenario():
        call, backend, observer = make_call()
        backend.add_speaker("alice")
        call.claim(ALICE, SpeakerClaim("alice"))
        await speak(call, ALICE, 3.0)
        return observer

    body = run(scenario()).verdicts(ALICE)[-1].as_dict()
    assert set(body) == {
        "verdict_id",
        "call_id",
        "participant_raw_id",
        "speaker_id",
        "decision",
        "score",
        "similarity",
        "normalized_score",
        "threshold",
        "calibrated",
        "speech_seconds",
        "quality",
        "first_audio_at",
        "last_audio_at",
        "final",
        "model",
        "detail",
        "created_at",
    }
    assert body["first_audio_at"] == "2024-11-15T19:16:12.925Z"
