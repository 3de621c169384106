"""The decision ladder: what a verification decides, from facts and a score. Numbers in,
a decision out; no database, model or server here.

Every verdict, uploaded or live, climbs the same rungs and stops at the first that
applies: no claim, opted out, no such speaker, expired (unused too long or past its
``expires_at``, whether or not the sweep has deleted the voiceprint yet), not enrolled (no
voiceprint yet), locked out (too many failed attempts lately: REJECT without a score), not
enough speech, poor audio quality, a voiceprint of another model, and only
then the score against the threshold (ACCEPT or REJECT). Only the last rung needs an
embedding, so a caller asks :func:`rule` first and embeds only when it returns None.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from biometrics.clock import isoformat
from biometrics.statuses import Decision, SpeakerStatus

# Speech is counted in 20 ms frames; this keeps 150 frames (3.0000000000000004 s) at 3 s.
_SECONDS_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class TrialFacts:
    """What is known about a verification before anything is scored."""

    speaker_id: str | None  # None: nobody was claimed
    status: SpeakerStatus | None  # None: the claimed speaker does not exist
    has_voiceprint: bool
    expired: bool  # past expires_at, or unused for longer than the expiry allows
    speech_seconds: float
    quality_issues: tuple[str, ...]
    voiceprint_model: str | None  # the model that made the voiceprint, for people
    model_compatible: bool  # the voiceprint was made by the running model
    locked_until: datetime | None = None  # too many failed attempts: none judged till then


@dataclasses.dataclass(frozen=True)
class Ruling:
    decision: Decision
    detail: str | None = None
    locked_until: datetime | None = None


def rule(facts: TrialFacts, min_speech_seconds: float) -> Ruling | None:
    """The first rung that decides without a score, or None when the trial is to be scored."""
    who = repr(facts.speaker_id)
    if facts.speaker_id is None:
        return Ruling(Decision.SPEAKER_ID_NOT_PROVIDED, "no speaker was claimed")
    if facts.status is SpeakerStatus.OPTED_OUT:
        return Ruling(Decision.SPEAKER_OPTED_OUT, f"speaker {who} opted out")
    if facts.status is None:
        return Ruling(Decision.SPEAKER_NOT_ENROLLED, f"speaker {who} does not exist")
    if facts.expired or facts.status is SpeakerStatus.EXPIRED:
        return Ruling(
            Decision.SPEAKER_EXPIRED, f"speaker {who} has expired; enroll them again to verify"
        )
    if not facts.has_voiceprint or facts.status is not SpeakerStatus.ENROLLED:
        return Ruling(
            Decision.SPEAKER_NOT_ENROLLED, f"speaker {who} is not enrolled yet ({facts.status})"
        )
    if facts.locked_until is not None:
        return Ruling(
            Decision.REJECT,
            f"speaker {who} is locked out after repeated failed verifications until "
            f"{isoformat(facts.locked_until)}; an admin may clear it sooner",
            facts.locked_until,
        )
    if facts.speech_seconds + _SECONDS_TOLERANCE < min_speech_seconds:
        return Ruling(
            Decision.NOT_ENOUGH_SPEECH,
            f"{facts.speech_seconds:.2f} s of speech; a verdict needs {min_speech_seconds:g} s",
        )
    if facts.quality_issues:
        return Ruling(Decision.POOR_AUDIO_QUALITY, ", ".join(facts.quality_issues))
    if not facts.model_compatible:
        return Ruling(
            Decision.SPEAKER_NOT_ENROLLED,
            f"speaker {who} was enrolled with another model ({facts.voiceprint_model}): "
            "embeddings of different models are never compared; re-enroll the speaker",
        )
    return None


def decide(score: float, threshold: float) -> Decision:
    """The last rung: ACCEPT when the score reaches the threshold."""
    return Decision.ACCEPT if score >= threshold else Decision.REJECT


def score_from_similarity(similarity: float) -> float:
    """The uncalibrated 0-100 score: cosine x 100, negative similarities scoring 0."""
    return round(100.0 * min(max(similarity, 0.0), 1.0), 2)
