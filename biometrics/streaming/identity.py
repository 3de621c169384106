"""Naming calls and participants: which call a socket belongs to, and which speaker a
participant is by the aliases its raw id may match.

ACS names the call in the ``x-ms-call-connection-id`` header (and correlates it across its
services with ``x-ms-call-correlation-id``); a caller that cannot set headers passes
``?call_id=``; failing both, the media subscription id from ``AudioMetadata`` names the
call, which is stable for one streaming session but not across a reconnect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool

from biometrics.store import Database, queries

CALL_ID_HEADER = "x-ms-call-connection-id"
CORRELATION_ID_HEADER = "x-ms-call-correlation-id"
CALL_ID_PARAMETER = "call_id"
MAX_CALL_ID_CHARS = 256
PHONE_PREFIX = "4:"  # ACS raw id of a phone number: 4:+14255550123
MIXED = "mixed"  # the participant of mixed audio (frames without participantRawID)


@dataclasses.dataclass(frozen=True)
class SocketIdentity:
    call_id: str | None  # None: name the call after the subscription id
    correlation_id: str | None


def socket_identity(headers: Mapping[str, str], query: Mapping[str, str]) -> SocketIdentity:
    call_id = headers.get(CALL_ID_HEADER) or query.get(CALL_ID_PARAMETER) or None
    correlation_id = headers.get(CORRELATION_ID_HEADER) or None
    return SocketIdentity(
        call_id=None if call_id is None else call_id.strip() or None,
        correlation_id=None if correlation_id is None else correlation_id[:MAX_CALL_ID_CHARS],
    )


def call_id_problem(call_id: str) -> str | None:
    """Why ``call_id`` cannot name a call, or None when it can."""
    if not call_id or len(call_id) > MAX_CALL_ID_CHARS:
        return f"a call id has 1 to {MAX_CALL_ID_CHARS} characters"
    if not call_id.isprintable() or "/" in call_id:
        return "a call id holds printable characters other than '/'"
    return None


def alias_candidates(raw_id: str) -> list[str]:
    """The speaker aliases that identify a participant: its raw id, and for a phone
    participant (``4:+14255550123``) the number itself."""
    candidates = [raw_id]
    if raw_id.startswith(PHONE_PREFIX) and len(raw_id) > len(PHONE_PREFIX):
        candidates.append(raw_id.removeprefix(PHONE_PREFIX))
    return candidates


class AliasDirectory:
    """Which speaker a live participant is, by its raw id or the phone number in it."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def find(self, raw_id: str) -> str | None:
        return await run_in_threadpool(self._find, raw_id)

    def _find(self, raw_id: str) -> str | None:
        with self._database.session() as session:
            for alias in alias_candidates(raw_id):
                speaker = queries.find_speaker_by_alias(session, alias)
                if speaker is not None:
                    return speaker.speaker_id
        return None
