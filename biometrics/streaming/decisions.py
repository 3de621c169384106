"""When a live call's participant is judged, and what a verdict says. Numbers in, values out:
no model, database or socket here.

The schedule, in net speech (silence never counts): nothing is scored before
``minimum`` seconds (the verdict is NOT_ENOUGH_SPEECH); then a verdict at the minimum and
one every ``step`` seconds of further speech, each on all the speech so far; the one at
``maximum`` is final, and no speech is buffered past it. With the defaults (3, 2, 10):
verdicts at 3, 5, 7, 9 and 10 s. A verdict on a claim also comes at once when the claim is
made, saying what can be said without enough speech (e.g. SPEAKER_NOT_ENROLLED).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import datetime

import numpy as np

from biometrics.audio.speech import FRAME_SECONDS
from biometrics.config import Settings
from biometrics.embedding import ModelIdentity
from biometrics.scoring import Decision
from biometrics.streaming.clock import isoformat

SCORED = frozenset({Decision.ACCEPT, Decision.REJECT})


def frames_for(seconds: float) -> int:
    """Whole 20 ms frames in ``seconds``, rounded up (3 s is 150 frames, not 149)."""
    return max(1, math.ceil(round(seconds / FRAME_SECONDS, 6)))


@dataclasses.dataclass(frozen=True)
class DecisionSchedule:
    """The schedule in frames of speech, so that no float ever misses a step."""

    min_frames: int
    step_frames: int
    max_frames: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DecisionSchedule:
        return cls(
            min_frames=frames_for(settings.stream_min_speech_seconds),
            step_frames=frames_for(settings.stream_step_seconds),
            max_frames=frames_for(settings.stream_max_speech_seconds),
        )

    def next_due(self, evaluated_frames: int) -> int | None:
        """Speech frames at which the next verdict is due, after one on ``evaluated_frames``;
        None when that one was final."""
        if evaluated_frames < self.min_frames:
            return self.min_frames
        if evaluated_frames >= self.max_frames:
            return None
        return min(evaluated_frames + self.step_frames, self.max_frames)

    def enough(self, frames: int) -> bool:
        return frames >= self.min_frames

    def is_final(self, frames: int) -> bool:
        return frames >= self.max_frames


@dataclasses.dataclass(frozen=True)
class SpeakerClaim:
    """Who a participant says they are, and the threshold to judge them by (None: default)."""

    speaker_id: str
    threshold: float | None = None
    source: str = "api"  # "api" (PUT .../claim) or "alias" (the raw id or its phone number)

    def as_dict(self) -> dict[str, object]:
        return {"speaker_id": self.speaker_id, "threshold": self.threshold, "source": self.source}


@dataclasses.dataclass(frozen=True)
class SpeechWindow:
    """The speech a verdict is made on: speech frames only, 16 kHz float32."""

    samples: np.ndarray
    frames: int
    first_audio_at: datetime | None
    last_audio_at: datetime | None

    @property
    def speech_seconds(self) -> float:
        return self.frames * FRAME_SECONDS


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict_id: str
    call_id: str
    participant_raw_id: str
    speaker_id: str | None
    decision: Decision
    score: float | None
    similarity: float | None
    normalized_score: float | None
    threshold: float | None
    calibrated: bool
    speech_seconds: float
    first_audio_at: datetime | None
    last_audio_at: datetime | None
    final: bool
    model: ModelIdentity
    detail: str | None
    created_at: datetime

    @property
    def scored(self) -> bool:
        return self.decision in SCORED

    def same_outcome(self, other: Verdict | None) -> bool:
        """An unscored verdict that repeats ``other`` adds nothing and is not published."""
        return (
            other is not None
            and not self.scored
            and other.decision is self.decision
            and other.speaker_id == self.speaker_id
            and other.detail == self.detail
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict_id": self.verdict_id,
            "call_id": self.call_id,
            "participant_raw_id": self.participant_raw_id,
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
            "first_audio_at": isoformat(self.first_audio_at),
            "last_audio_at": isoformat(self.last_audio_at),
            "final": self.final,
            "model": self.model.as_dict(),
            "detail": self.detail,
            "created_at": isoformat(self.created_at),
        }


def new_verdict_id() -> str:
    return str(uuid.uuid4())
