"""biometrics.scoring.decision: the decision ladder as a table, without a database, a model
or a server. Each row is one set of facts and the decision every verdict gives on them."""

from __future__ import annotations

import dataclasses

import pytest

from biometrics.scoring import TrialFacts, decide, rule, score_from_similarity
from biometrics.statuses import Decision, SpeakerStatus

ENROLLED = TrialFacts(
    speaker_id="alice",
    status=SpeakerStatus.ENROLLED,
    has_voiceprint=True,
    expired=False,
    speech_seconds=5.0,
    quality_issues=(),
    voiceprint_model="m@sha256:0000",
    model_compatible=True,
)
MINIMUM = 3.0

LADDER = [
    ({"speaker_id": None}, Decision.SPEAKER_ID_NOT_PROVIDED),
    ({"status": SpeakerStatus.OPTED_OUT, "has_voiceprint": False}, Decision.SPEAKER_OPTED_OUT),
    # Opted out wins over everything below it, even with no speech at all.
    ({"status": SpeakerStatus.OPTED_OUT, "speech_seconds": 0.0}, Decision.SPEAKER_OPTED_OUT),
    ({"status": None, "has_voiceprint": False}, Decision.SPEAKER_NOT_ENROLLED),
    ({"status": SpeakerStatus.PENDING_ENROLLMENT}, Decision.SPEAKER_NOT_ENROLLED),
    ({"has_voiceprint": False}, Decision.SPEAKER_NOT_ENROLLED),
    ({"expired": True, "speech_seconds": 0.0}, Decision.SPEAKER_EXPIRED),
    # Swept: the voiceprint is gone, the verdict still says why until re-enrollment.
    ({"status": SpeakerStatus.EXPIRED, "has_voiceprint": False}, Decision.SPEAKER_EXPIRED),
    ({"status": SpeakerStatus.PENDING_ENROLLMENT, "expired": True}, Decision.SPEAKER_EXPIRED),
    ({"speech_seconds": 2.99}, Decision.NOT_ENOUGH_SPEECH),
    ({"speech_seconds": 1.0, "quality_issues": ("LOW_SNR",)}, Decision.NOT_ENOUGH_SPEECH),
    ({"quality_issues": ("CLIPPING",)}, Decision.POOR_AUDIO_QUALITY),
    ({"quality_issues": ("CLIPPING",), "model_compatible": False}, Decision.POOR_AUDIO_QUALITY),
    ({"model_compatible": False}, Decision.SPEAKER_NOT_ENROLLED),
]


@pytest.mark.parametrize(("changes", "expected"), LADDER)
def test_the_first_rung_that_applies_decides(changes, expected):
    ruling = rule(dataclasses.replace(ENROLLED, **changes), MINIMUM)
    assert ruling is not None and ruling.decision is expected
    assert ruling.detail


def test_enough_clean_speech_on_an_enrolled_speaker_is_scored():
    assert rule(ENROLLED, MINIMUM) is None
    assert rule(dataclasses.replace(ENROLLED, speech_seconds=150 * 0.02), MINIMUM) is None


def test_the_details_say_what_to_do():
    mismatch = rule(dataclasses.replace(ENROLLED, model_compatible=False), MINIMUM)
    assert mismatch is not None and "re-enroll" in (mismatch.detail or "")
    short = rule(dataclasses.replace(ENROLLED, speech_seconds=1.5), MINIMUM)
    assert short is not None and short.detail == "1.50 s of speech; a verdict needs 3 s"


def test_the_score_decides_at_the_threshold():
    assert decide(42.0, 42.0) is Decision.ACCEPT
    assert decide(41.99, 42.0) is Decision.REJECT


def test_uncalibrated_scores_are_cosine_times_100_floored_at_zero():
    assert score_from_similarity(0.4567) == 45.67
    assert score_from_similarity(-0.3) == 0.0
    assert score_from_similarity(1.2) == 100.0


def test_only_accept_and_reject_are_scored_decisions():
    assert {d for d in Decision if d.scored} == {Decision.ACCEPT, Decision.REJECT}
