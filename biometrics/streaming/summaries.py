"""Snapshots of a call and its participants: immutable, so they can be shown by the API,
published as events and handed to the database writer's thread while the call goes on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from biometrics.store import SpeakerStatus
from biometrics.store.models import CallStatus
from biometrics.streaming.clock import isoformat
from biometrics.streaming.decisions import SpeakerClaim, Verdict
from biometrics.streaming.identity import MIXED


@dataclasses.dataclass(frozen=True)
class EnrollmentProgress:
    """Enrolling a speaker from a participant's speech, chunk by chunk."""

    speaker_id: str
    status: str = SpeakerStatus.PENDING_ENROLLMENT.value
    enrolled_speech_seconds: float = 0.0  # the voiceprint's, from every source
    remaining_speech_seconds: float | None = None  # None until the first chunk is in
    call_speech_seconds: float = 0.0  # enrolled from this call
    active: bool = True  # still taking this participant's speech
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "speaker_id": self.speaker_id,
            "status": self.status,
            "enrolled_speech_seconds": round(self.enrolled_speech_seconds, 2),
            "remaining_speech_seconds": None
            if self.remaining_speech_seconds is None
            else round(self.remaining_speech_seconds, 2),
            "call_speech_seconds": round(self.call_speech_seconds, 2),
            "active": self.active,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EnrollmentProgress:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclasses.dataclass(frozen=True)
class ParticipantSummary:
    """A participant's progress at one moment: what the API shows and the store keeps."""

    raw_id: str
    joined_at: datetime | None
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    frames: int
    speech_seconds: float
    claim: SpeakerClaim | None
    latest_verdict: Verdict | None
    enrollment: EnrollmentProgress | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "participant_raw_id": self.raw_id,
            "mixed": self.raw_id == MIXED,
            "joined_at": isoformat(self.joined_at),
            "first_frame_at": isoformat(self.first_frame_at),
            "last_frame_at": isoformat(self.last_frame_at),
            "frames": self.frames,
            "net_speech_seconds": round(self.speech_seconds, 2),
            "claim": None if self.claim is None else self.claim.as_dict(),
            "latest_verdict": None
            if self.latest_verdict is None
            else self.latest_verdict.as_dict(),
            "enrollment": None if self.enrollment is None else self.enrollment.as_dict(),
        }


@dataclasses.dataclass(frozen=True)
class CallSummary:
    call_id: str
    correlation_id: str | None
    subscription_id: str | None
    status: CallStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    sockets: int
    counters: dict[str, int]
    participants: tuple[ParticipantSummary, ...]

    def participant(self, raw_id: str) -> ParticipantSummary | None:
        return next((p for p in self.participants if p.raw_id == raw_id), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "correlation_id": self.correlation_id,
            "subscription_id": self.subscription_id,
            "status": self.status.value,
            "created_at": isoformat(self.created_at),
            "started_at": isoformat(self.started_at),
            "ended_at": isoformat(self.ended_at),
            "sockets": self.sockets,
            "counters": dict(self.counters),
            "participants": [participant.as_dict() for participant in self.participants],
        }
