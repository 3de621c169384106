"""Call events as CloudEvents 1.0 in structured JSON mode (one JSON object carries the
attributes and the data), the body every webhook receives.

``source`` is the call's REST resource (``/v1/calls/{call_id}``), ``subject`` the
participant raw id (or the call id for call-wide events), ``type`` the event name under
the ``biometrics.`` prefix, e.g. ``biometrics.verdict.changed``.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from biometrics.clock import isoformat
from biometrics.events.broker import Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TYPE_PREFIX = "biometrics."


def as_cloudevent(event: Event) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": "/v1/calls/" + urllib.parse.quote(event.call_id, safe=""),
        "type": TYPE_PREFIX + event.type,
        "time": isoformat(event.time),
        "subject": event.subject,
        "datacontenttype": "application/json",
        "data": event.data,
    }


def encode(event: Event) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(as_cloudevent(event), separators=(",", ":"), ensure_ascii=False).encode()
