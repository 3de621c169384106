"""What a live call reports, as types: each says what it carries. The publisher turns them
into broker events (for SSE and webhooks); nothing here knows a socket or a call's state."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from biometrics.snapshots import CallSummary, EnrollmentProgress, ParticipantSummary
from biometrics.verdicts import Verdict


@dataclasses.dataclass(frozen=True)
class _CallWide:
    """An event about the whole call: its data is the call, with each latest verdict."""

    type: ClassVar[str]
    call: CallSummary

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def subject(self) -> str:
        return self.call.call_id

    def data(self) -> dict[str, Any]:
        return self.call.as_dict()


@dataclasses.dataclass(frozen=True)
class CallStarted(_CallWide):
    type: ClassVar[str] = "call.started"


@dataclasses.dataclass(frozen=True)
class CallEnded(_CallWide):
    type: ClassVar[str] = "call.ended"


@dataclasses.dataclass(frozen=True)
class ParticipantJoined:
    type: ClassVar[str] = "participant.joined"
    call_id: str
    participant: ParticipantSummary

    @property
    def subject(self) -> str:
        return self.participant.raw_id

    def data(self) -> dict[str, Any]:
        return {"call_id": self.call_id, **self.participant.as_dict()}


@dataclasses.dataclass(frozen=True)
class VerdictChanged:
    type: ClassVar[str] = "verdict.changed"
    call_id: str
    participant_raw_id: str
    verdict: Verdict

    @property
    def subject(self) -> str:
        return self.participant_raw_id

    def data(self) -> dict[str, Any]:
        return self.verdict.as_dict()


@dataclasses.dataclass(frozen=True)
class EnrollmentChanged:
    type: ClassVar[str] = "enrollment.changed"
    call_id: str
    participant_raw_id: str
    progress: EnrollmentProgress

    @property
    def subject(self) -> str:
        return self.participant_raw_id

    def data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "participant_raw_id": self.participant_raw_id,
            **self.progress.as_dict(),
        }


CallEvent = CallStarted | CallEnded | ParticipantJoined | VerdictChanged | EnrollmentChanged
