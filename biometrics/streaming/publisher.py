"""What a call's changes become: an event on the broker (for SSE and webhooks) and a write
of the call's summary (and the new verdict) to the database. Both return at once."""

from __future__ import annotations

from typing import Any

from biometrics.events import Broker, Event
from biometrics.streaming.clock import utcnow
from biometrics.streaming.decisions import Verdict
from biometrics.streaming.hooks import ENROLLMENT_CHANGED, PARTICIPANT_JOINED, VERDICT_CHANGED
from biometrics.streaming.participant import ParticipantStream
from biometrics.streaming.recorder import CallRecorder
from biometrics.streaming.session import CallSession


class CallPublisher:
    def __init__(self, broker: Broker, recorder: CallRecorder) -> None:
        self._broker = broker
        self._recorder = recorder

    def notify(
        self,
        call: CallSession,
        kind: str,
        participant: ParticipantStream | None = None,
        verdict: Verdict | None = None,
    ) -> None:
        summary = call.summary()
        self._recorder.save(summary, verdict)
        data: dict[str, Any]
        if kind == VERDICT_CHANGED and verdict is not None:
            data = verdict.as_dict()
        elif kind == PARTICIPANT_JOINED and participant is not None:
            data = {"call_id": call.call_id, **participant.summary().as_dict()}
        elif kind == ENROLLMENT_CHANGED and participant is not None and participant.enrollment:
            data = {
                "call_id": call.call_id,
                "participant_raw_id": participant.raw_id,
                **participant.enrollment.as_dict(),
            }
        else:  # call.started, call.ended: the whole call, with each latest verdict
            data = summary.as_dict()
        subject = call.call_id if participant is None else participant.raw_id
        self._broker.publish(Event.new(kind, call.call_id, subject, utcnow(), data))
