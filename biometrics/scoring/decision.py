"""From a cosine similarity to a 0-100 score and a decision.

Until a model has a fitted calibration, the score is the cosine similarity
scaled to 0-100 (negative similarities score 0). Its threshold is therefore
model-specific: measure it on your own trials before relying on it.
"""

from __future__ import annotations

import enum


class Decision(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    NOT_ENOUGH_SPEECH = "NOT_ENOUGH_SPEECH"
    POOR_AUDIO_QUALITY = "POOR_AUDIO_QUALITY"  # failed the quality gate; see the issues
    SPEAKER_NOT_ENROLLED = "SPEAKER_NOT_ENROLLED"
    SPEAKER_OPTED_OUT = "SPEAKER_OPTED_OUT"
    SPEAKER_EXPIRED = "SPEAKER_EXPIRED"
    SPEAKER_ID_NOT_PROVIDED = "SPEAKER_ID_NOT_PROVIDED"


def score_from_similarity(similarity: float) -> float:
    return round(100.0 * min(max(similarity, 0.0), 1.0), 2)


def decide(score: float, threshold: float) -> Decision:
    """ACCEPT when the score reaches the threshold."""
    return Decision.ACCEPT if score >= threshold else Decision.REJECT
