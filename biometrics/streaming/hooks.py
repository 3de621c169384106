"""Where a call's state meets the service: the work it asks for (:class:`CallBackend`) and
the changes it reports (:class:`CallObserver`). Call state depends only on these shapes, so
tests drive it with fakes and no model, database or server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from biometrics.enrollment import EnrollmentResult
from biometrics.streaming.decisions import SpeakerClaim, SpeechWindow, Verdict

if TYPE_CHECKING:
    from biometrics.streaming.participant import ParticipantStream
    from biometrics.streaming.session import CallSession

# What a call reports; each becomes an event of that type.
CALL_STARTED = "call.started"
PARTICIPANT_JOINED = "participant.joined"
VERDICT_CHANGED = "verdict.changed"
ENROLLMENT_CHANGED = "enrollment.changed"
CALL_ENDED = "call.ended"


class CallBackend(Protocol):
    """The model and database work a call needs; each runs off the event loop."""

    async def judge(
        self, call_id: str, raw_id: str, claim: SpeakerClaim | None, window: SpeechWindow
    ) -> Verdict: ...

    async def enroll(self, speaker_id: str, speech: np.ndarray) -> EnrollmentResult: ...

    async def find_alias(self, raw_id: str) -> str | None: ...


class CallObserver(Protocol):
    """Told of each change worth an event (``kind`` is one of the constants above)."""

    def notify(
        self,
        call: CallSession,
        kind: str,
        participant: ParticipantStream | None = None,
        verdict: Verdict | None = None,
    ) -> None: ...
