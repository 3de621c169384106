"""Snapshots of a live call and its participants: immutable values, so they can be shown by
the API, published as events and handed to the database writer's thread while the call
goes on. Every layer reads them; they depend on nothing but the shared vocabulary."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from biometrics.clock import isoformat
from biometrics.statuses import CallStatus, SpeakerStatus
from biometrics.verdicts import Verdict


@dataclasses.dataclass(frozen=True)
class SpeakerClaim:
    """Who a participant says they are, and the threshold to judge them by (None: default)."""

    speaker_id: str
    threshold: float | None = None
    source: str = "api"  # "api" (PUT .../claim) or "alias" (the raw id or its phone number)

    def as_dict(self) -> dict[str, object]:
        return {"speaker_id": self.speaker_id, "threshold": self.threshold, "source": self.source}


@dataclasses.dataclass(frozen=True)
class StreamFormat:
    """What a call's latest socket announced in its AudioMetadata, and how it sends audio."""

    encoding: str
    sample_rate: int
    channels: int
    frame_bytes: int
    mixed: bool | None  # None until the first audio frame says

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StreamFormat:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


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
    mixed: bool  # the mixed stream of the call (every voice), not one participant
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
            "mixed": self.mixed,
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
    audio_format: StreamFormat | None
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
            "audio_format": None if self.audio_format is None else self.audio_format.as_dict(),
            "participants": [participant.as_dict() for participant in self.participants],
        }


def participant_view(call: CallSummary, participant: ParticipantSummary) -> dict[str, Any]:
    """A participant as the API shows it, with its call's id and status."""
    return {"call_id": call.call_id, "call_status": call.status.value, **participant.as_dict()}
