"""biometrics.events.publisher: a call's typed events onto the broker, each with its type,
call, subject and data, in order."""

from __future__ import annotations

import dataclasses

from biometrics.events import Broker
from biometrics.events.call_events import (
    CallEnded,
    CallStarted,
    EnrollmentChanged,
    ParticipantJoined,
    VerdictChanged,
)
from biometrics.events.publisher import CallPublisher
from biometrics.snapshots import EnrollmentProgress
from biometrics.statuses import CallStatus
from tests.store.test_calls import summary
from tests.store.verdicts import verdict


def test_every_event_reaches_subscribers_with_its_type_subject_and_data():
    broker = Broker()
    subscription = broker.subscribe("call-1")
    publisher = CallPublisher(broker)
    call = summary(None)
    caller = call.participants[0]
    judged = verdict(2, final=True)
    progress = EnrollmentProgress("carol", call_speech_seconds=2.0)
    for event in (
        CallStarted(call),
        ParticipantJoined("call-1", caller),
        VerdictChanged("call-1", caller.raw_id, judged),
        EnrollmentChanged("call-1", caller.raw_id, progress),
        CallEnded(dataclasses.replace(call, status=CallStatus.ENDED)),
    ):
        publisher.publish(event)
    received = [subscription._queue.popleft() for _ in range(subscription.pending)]
    assert [(e.type, e.call_id, e.subject) for e in received] == [
        ("call.started", "call-1", "call-1"),
        ("participant.joined", "call-1", caller.raw_id),
        ("verdict.changed", "call-1", caller.raw_id),
        ("enrollment.changed", "call-1", caller.raw_id),
        ("call.ended", "call-1", "call-1"),
    ]
    assert received[0].data == call.as_dict()
    assert received[1].data == {"call_id": "call-1", **caller.as_dict()}
    assert received[2].data == judged.as_dict()
    assert received[3].data["speaker_id"] == "carol"
    assert received[3].data["participant_raw_id"] == caller.raw_id
    assert received[4].data["status"] == "ENDED"
    assert len({e.id for e in received}) == 5
