"""biometrics.events.cloudevents: the structured-mode CloudEvents 1.0 body of a webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from biometrics.events import Event
from biometrics.events.cloudevents import as_cloudevent, encode


def test_a_call_event_as_a_structured_cloudevent() -> None:
    event = Event(
        "5f0c1b8e-1",
        "verdict.changed",
        "call/1",
        "4:+14255550123",
        datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC),
        {"decision": "ACCEPT", "score": 71.3},
    )
    body = json.loads(encode(event))
    assert (
        body
        == as_cloudevent(event)
        == {
            "specversion": "1.0",
            "id": "5f0c1b8e-1",
            "source": "/v1/calls/call%2F1",
            "type": "biometrics.verdict.changed",
            "time": "2024-11-15T19:16:12.925Z",
            "subject": "4:+14255550123",
            "datacontenttype": "application/json",
            "data": {"decision": "ACCEPT", "score": 71.3},
        }
    )
    assert b" " not in encode(event)  # compact: the signed bytes are exactly these
