"""A verdict: the one answer to "is this the claimed speaker?", whether the speech came in an
upload (``POST /v1/verify``) or from a live call (then ``call_id`` and
``participant_raw_id`` say whose speech it was). One type, one JSON shape, one table."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from biometrics.audio.quality import Quality
from biometrics.clock import isoformat
from biometrics.embedding.identity import ModelIdentity
from biometrics.statuses import Decision


@dataclasses.dataclass(frozen=True)
class CallParticipantRef:
    """Whose speech a live verdict judged."""

    call_id: str
    participant_raw_id: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict_id: str
    speaker_id: str | None  # None: nobody was claimed
    decision: Decision
    score: float | None  # 0-100, only when scored
    similarity: float | None  # cosine
    normalized_score: float | None  # AS-norm, when the scoring normalises
    threshold: float | None  # None when nobody was claimed
    calibrated: bool
    speech_seconds: float
    quality: Quality | None
    model: ModelIdentity
    detail: str | None
    created_at: datetime
    participant: CallParticipantRef | None = None  # None: an upload
    first_audio_at: datetime | None = None  # the audio a live verdict covers
    last_audio_at: datetime | None = None
    final: bool = True  # an upload's verdict is final; a call's is until the schedule's last
    # Set when the speaker is locked out: REST answers 429 then. Not part of the JSON (the
    # detail says it) nor of the history.
    locked_until: datetime | None = None

    @property
    def scored(self) -> bool:
        return self.decision.scored

    def same_outcome(self, other: Verdict | None) -> bool:
        """An unscored verdict that repeats ``other`` adds nothing new to a call."""
        return (
            other is not None
            and not self.scored
            and other.decision is self.decision
            and other.speaker_id == self.speaker_id
            and other.detail == self.detail
        )

    def as_dict(self) -> dict[str, Any]:
        participant = self.participant
        return {
            "verdict_id": self.verdict_id,
            "speaker_id": self.speaker_id,
            "decision": self.decision.value,
            "score": self.score,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "normalized_score": None
            if self.normalized_score is None
            else round(self.normalized_score, 3),
            "threshold": self.threshold,
            "calibrated": self.calibrated,
            "speech_seconds": round(self.speech_seconds, 2),
            "quality": None if self.quality is None else self.quality.as_dict(),
            "call_id": None if participant is None else participant.call_id,
            "participant_raw_id": None if participant is None else participant.participant_raw_id,
            "first_audio_at": isoformat(self.first_audio_at),
            "last_audio_at": isoformat(self.last_audio_at),
            "final": self.final,
            "model": self.model.as_dict(),
            "detail": self.detail,
            "created_at": isoformat(self.created_at),
        }


def new_verdict_id() -> str:
    return str(uuid.uuid4())
