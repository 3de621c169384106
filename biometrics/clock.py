"""Time as the service writes it: aware UTC datetimes, and one text form for every JSON body,
RFC 3339 in UTC with milliseconds and ``Z`` (the way ACS writes its frame timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
