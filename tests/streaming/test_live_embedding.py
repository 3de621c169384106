"""What a live call passes through the model: never a participant nobody claimed, nothing
after the final verdict, and with incremental embedding (BIOMETRICS_LIVE_EMBEDDING) only
the speech each verdict adds, pooled with the embedding so far."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from biometrics.embedding.pooling import weighted_mean
from biometrics.snapshots import SpeakerClaim
from biometrics.statuses import Decision
from biometrics.streaming.protocol import AudioFormat
from tests.streaming.fakes import UNIT, make_call, settle, speak

ALICE = "8:acs:alice"
AGENT = "8:acs:agent"
SECOND = 16_000
WINDOW = [3 * SECOND, 5 * SECOND, 7 * SECOND, 9 * SECOND, 10 * SECOND]
INCREMENTS = [3 * SECOND, 2 * SECOND, 2 * SECOND, 2 * SECOND, 1 * SECOND]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("incremental", [False, True])
def test_an_unclaimed_participant_is_never_embedded(incremental):
    """The agent speaks a whole call without a claim or an alias: one verdict says no claim
    was made, and the model never runs for it."""

    async def scenario():
        call, backend, observer = make_call(incremental=incremental)
        backend.add_speaker("alice")
        call.connect(None, AudioFormat("sub", 16_000, 1, 640), {})
        await speak(call, AGENT, 15.0)
        await call.disconnect({})
        await settle(call)
        return backend, observer

    backend, observer = run(scenario())
    assert [v.decision for v in observer.verdicts(AGENT)] == [Decision.SPEAKER_ID_NOT_PROVIDED]
    assert backend.worker.embedded == []


@pytest.mark.parametrize(("incremental", "embedded"), [(False, WINDOW), (True, INCREMENTS)])
def test_the_final_verdict_ends_the_embedding_however_long_the_speech_goes_on(
    incremental, embedded
):
    """Verdicts at 3, 5, 7, 9 and 10 s, then 20 s more speech and the call's end: nothing
    more reaches the model. The window re-embeds all speech each time (34 s for 10 s of
    speech); incremental embedding each stretch once (10 s)."""

    async def scenario():
        call, backend, observer = make_call(incremental=incremental)
        backend.add_speaker("alice")
        call.connect(None, AudioFormat("sub", 16_000, 1, 640), {})
        call.claim(ALICE, SpeakerClaim("alice", threshold=0.0))
        await speak(call, ALICE, 30.0)
        await call.disconnect({})
        await settle(call)
        return backend, observer

    backend, observer = run(scenario())
    assert backend.worker.embedded == embedded
    verdicts = observer.verdicts(ALICE)
    assert [(v.speech_seconds, v.final) for v in verdicts if v.score is not None] == [
        (3.0, False),
        (5.0, False),
        (7.0, False),
        (9.0, False),
        (10.0, True),
    ]


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


STRETCHES = [  # seconds of speech, and the vector the model gives it
    (3.0, _unit(1, 1, 0, 0)),
    (2.0, _unit(0, 1, 1, 0)),
    (2.0, _unit(1, 0, 0, 1)),
]


def _similarities(incremental: bool) -> tuple[list[float], list[int]]:
    """Speak the stretches in turn, the model embedding whatever it is given as the
    stretch's vector; the similarity of each scored verdict and the samples embedded."""

    async def scenario():
        call, backend, observer = make_call(incremental=incremental)
        backend.add_speaker("alice")
        call.claim(ALICE, SpeakerClaim("alice", threshold=0.0))
        index = 0
        for seconds, vector in STRETCHES:
            backend.worker.vector = vector
            index = await speak(call, ALICE, seconds, start=index)
        return backend, observer

    backend, observer = run(scenario())
    verdicts = [v for v in observer.verdicts(ALICE) if v.similarity is not None]
    return [v.similarity for v in verdicts], backend.worker.embedded


def test_incremental_verdicts_score_the_speech_weighted_pool_of_each_stretch():
    similarities, embedded = _similarities(incremental=True)

    assert embedded == [3 * SECOND, 2 * SECOND, 2 * SECOND]
    vectors = [vector for _, vector in STRETCHES]
    after_five = weighted_mean(np.stack(vectors[:2]), [3.0, 2.0])
    after_seven = weighted_mean(np.stack([after_five, vectors[2]]), [5.0, 2.0])
    expected = [float(np.dot(UNIT, v)) for v in (vectors[0], after_five, after_seven)]
    assert similarities == pytest.approx(expected, abs=1e-6)


def test_window_verdicts_score_all_the_speech_afresh():
    """The same call re-embedded whole: each verdict is the model's vector for the window."""
    similarities, embedded = _similarities(incremental=False)

    assert embedded == [3 * SECOND, 5 * SECOND, 7 * SECOND]
    assert similarities == pytest.approx([float(np.dot(UNIT, v)) for _, v in STRETCHES])
    # The first verdict is the same either way.
    assert similarities[0] == pytest.approx(_similarities(incremental=True)[0][0])


def test_a_new_claim_embeds_the_whole_window_afresh():
    """Judged as alice at 3 and 5 s, then claimed as bob: bob's verdict embeds all 6 s
    (nothing embedded for alice carries over), and bob's next one only the 2 s after."""

    async def scenario():
        call, backend, observer = make_call(incremental=True)
        backend.add_speaker("alice")
        backend.add_speaker("bob")
        call.claim(ALICE, SpeakerClaim("alice", threshold=0.0))
        index = await speak(call, ALICE, 6.0)
        backend.worker.vector = _unit(0, 1, 0, 0)
        call.claim(ALICE, SpeakerClaim("bob", threshold=0.0))
        await settle(call)
        await speak(call, ALICE, 2.0, start=index)
        return backend, observer

    backend, observer = run(scenario())
    assert backend.worker.embedded == [3 * SECOND, 2 * SECOND, 6 * SECOND, 2 * SECOND]
    bob = [v for v in observer.verdicts(ALICE) if v.speaker_id == "bob" and v.score is not None]
    assert [v.speech_seconds for v in bob] == [6.0, 8.0]
    # Bob's vector alone: had alice's 5 s embedding carried over, bob would score above 0.
    assert [v.similarity for v in bob] == pytest.approx([0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize(
    ("seconds", "embedded"),
    [
        (6.5, [3 * SECOND, 2 * SECOND, 3 * SECOND // 2]),  # 1.5 s more: embedded alone
        (5.5, [3 * SECOND, 2 * SECOND, 11 * SECOND // 2]),  # 0.5 s: too short, all afresh
        (5.0, [3 * SECOND, 2 * SECOND]),  # nothing new: the embedding so far, no model
    ],
)
def test_the_verdict_when_a_call_ends_embeds_what_is_new_if_it_is_long_enough(seconds, embedded):
    """The service stops mid-call: the final verdict covers the speech not judged yet."""

    async def scenario():
        call, backend, observer = make_call(incremental=True)
        backend.add_speaker("alice")
        call.connect(None, AudioFormat("sub", 16_000, 1, 640), {})
        call.claim(ALICE, SpeakerClaim("alice", threshold=0.0))
        await speak(call, ALICE, seconds)
        await call.disconnect({}, final=True)
        await settle(call)
        return backend, observer

    backend, observer = run(scenario())
    assert backend.worker.embedded == embedded
    final = observer.verdicts(ALICE)[-1]
    assert (final.speech_seconds, final.final, final.decision) == (seconds, True, Decision.ACCEPT)
