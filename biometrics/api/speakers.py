"""Speakers: create, list, read, delete, opt out, and enroll their voices. Creating,
deleting, opting out and enrolling each leave a row in the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from biometrics.api.audit import Auditor
from biometrics.api.auth import Guard
from biometrics.api.uploads import read_audio_upload
from biometrics.audio import detect_speech
from biometrics.clock import isoformat, utcnow
from biometrics.embedding import Urgency
from biometrics.enrollment import Enroller, remaining_seconds
from biometrics.errors import InvalidRequest
from biometrics.statuses import Role, SpeakerStatus
from biometrics.store import Database, Speaker, queries
from biometrics.store.recordings import Recordings

SPEAKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$")
MAX_ALIASES = 16
DEFAULT_PAGE = 50
MAX_PAGE = 500


def speaker_json(speaker: Speaker, minimum: float) -> dict[str, Any]:
    voiceprint = speaker.voiceprint
    return {
        "speaker_id": speaker.speaker_id,
        "display_name": speaker.display_name,
        "aliases": [alias.alias for alias in speaker.aliases],
        "status": speaker.status.value,
        "enrolled_speech_seconds": round(voiceprint.speech_seconds, 2) if voiceprint else 0.0,
        "remaining_speech_seconds": round(remaining_seconds(speaker, minimum), 2),
        "model": None
        if voiceprint is None
        else {"source": voiceprint.model_source, "sha256": voiceprint.model_sha256},
        "created_at": isoformat(speaker.created_at),
        "updated_at": isoformat(speaker.updated_at),
        "last_accessed_at": isoformat(speaker.last_accessed_at),
        "expires_at": isoformat(speaker.expires_at),
    }


def check_speaker_id(speaker_id: str) -> str:
    if not SPEAKER_ID.match(speaker_id):
        raise InvalidRequest(
            "speaker_id must be 1-128 characters of letters, digits and . _ : @ + -, "
            "starting with a letter or digit"
        )
    return speaker_id


class SpeakerRoutes:
    """Speakers and their enrollment, over the database and the enroller they are given."""

    def __init__(
        self,
        database: Database,
        enroller: Enroller,
        max_audio_seconds: float,
        auditor: Auditor,
        forget_claim: Callable[[str], None] | None = None,
        recordings: Recordings | None = None,
    ) -> None:
        self._database = database
        self._enroller = enroller
        self._max_audio_seconds = max_audio_seconds
        self._auditor = auditor
        # What the verification service remembers of a speaker for an outage; dropped
        # when their voiceprint is deleted or withdrawn, or their lockout cleared.
        self._forget_claim = forget_claim or (lambda speaker_id: None)
        # Deleting a speaker deletes the call recordings of participants taken for them.
        self._recordings = recordings

    def routes(self, guard: Guard) -> list[Route]:
        speaker = "/v1/speakers/{speaker_id}"
        return [
            guard.route("/v1/speakers", Role.ENROLL, self.create_speaker, "POST"),
            guard.route("/v1/speakers", Role.READ, self.list_speakers, "GET"),
            guard.route(speaker, Role.READ, self.get_speaker, "GET"),
            guard.route(speaker, Role.ADMIN, self.delete_speaker, "DELETE"),
            guard.route(speaker + "/opt-out", Role.ENROLL, self.opt_out, "POST"),
            guard.route(speaker + "/enrollments", Role.ENROLL, self.enroll, "POST"),
            guard.route(speaker + "/lockout", Role.ADMIN, self.clear_lockout, "DELETE"),
        ]

    def _json(self, speaker: Speaker) -> dict[str, Any]:
        return speaker_json(speaker, self._enroller.minimum)

    async def create_speaker(self, request: Request) -> Response:
        body = await json_object(request)
        speaker_id = check_speaker_id(_string(body, "speaker_id", required=True) or "")
        display_name = _string(body, "display_name", required=False)
        aliases = _aliases(body.get("aliases", []))
        expires_at = _future_time(body.get("expires_at"), "expires_at")

        def create() -> dict[str, Any]:
            with self._database.session() as session:
                speaker = queries.create_speaker(
                    session, speaker_id, display_name, aliases, expires_at=expires_at
                )
                return self._json(speaker)

        async with self._auditor.act(request, "speaker.create", speaker_id):
            created = await run_in_threadpool(create)
        return JSONResponse(created, status_code=201)

    async def list_speakers(self, request: Request) -> Response:
        limit = _page_size(request.query_params.get("limit"))
        cursor = request.query_params.get("cursor") or None

        def page() -> dict[str, Any]:
            with self._database.session() as session:
                speakers = queries.list_speakers(session, after=cursor, limit=limit + 1)
                shown = speakers[:limit]
                return {
                    "speakers": [self._json(speaker) for speaker in shown],
                    "next_cursor": shown[-1].speaker_id if len(speakers) > limit else None,
                }

        return JSONResponse(await run_in_threadpool(page))

    async def get_speaker(self, request: Request) -> Response:
        speaker_id = request.path_params["speaker_id"]

        def read() -> dict[str, Any]:
            with self._database.session() as session:
                return self._json(queries.get_speaker(session, speaker_id))

        return JSONResponse(await run_in_threadpool(read))

    async def delete_speaker(self, request: Request) -> Response:
        speaker_id = request.path_params["speaker_id"]

        recordings = self._recordings

        def delete() -> None:
            with self._database.session() as session:
                # Before the verdicts go: they say which participants claimed the speaker.
                removed = (
                    [] if recordings is None else recordings.forget_speaker(session, speaker_id)
                )
                queries.delete_speaker(session, speaker_id)
            if recordings is not None:  # committed: the files' keys are gone with their rows
                recordings.files.remove(removed)

        async with self._auditor.act(request, "speaker.delete", speaker_id):
            await run_in_threadpool(delete)
        self._forget_claim(speaker_id)
        return Response(status_code=204)

    async def clear_lockout(self, request: Request) -> Response:
        """Judge the speaker again at once: failed attempts before now no longer count."""
        speaker_id = request.path_params["speaker_id"]

        def clear() -> dict[str, Any]:
            with self._database.session() as session:
                speaker = queries.get_speaker(session, speaker_id, for_update=True)
                speaker.lockout_cleared_at = utcnow()
                return self._json(speaker)

        async with self._auditor.act(request, "speaker.clear_lockout", speaker_id):
            cleared = await run_in_threadpool(clear)
        self._forget_claim(speaker_id)
        return JSONResponse(cleared)

    async def opt_out(self, request: Request) -> Response:
        """Delete the voiceprint and refuse future enrollment. An unknown speaker is
        created opted out, so that consent withdrawn before enrollment still holds."""
        speaker_id = check_speaker_id(request.path_params["speaker_id"])

        def withdraw() -> dict[str, Any]:
            with self._database.session() as session:
                speaker = queries.find_speaker(session, speaker_id, for_update=True)
                if speaker is None:
                    speaker = queries.create_speaker(
                        session, speaker_id, status=SpeakerStatus.OPTED_OUT
                    )
                speaker.voiceprint = None
                speaker.status = SpeakerStatus.OPTED_OUT
                session.flush()
                return self._json(speaker)

        async with self._auditor.act(request, "speaker.opt_out", speaker_id):
            withdrawn = await run_in_threadpool(withdraw)
        self._forget_claim(speaker_id)
        return JSONResponse(withdrawn)

    async def enroll(self, request: Request) -> Response:
        speaker_id = check_speaker_id(request.path_params["speaker_id"])
        async with self._auditor.act(request, "speaker.enroll", speaker_id) as outcome:
            upload = await read_audio_upload(request, self._max_audio_seconds)
            replace = _flag(upload.fields.get("replace"), "replace")
            bulk = _flag(upload.fields.get("bulk"), "bulk")  # yield to verifications
            speech = await run_in_threadpool(detect_speech, upload.samples)
            result = await self._enroller.enroll(
                speaker_id, speech, replace=replace, urgency=Urgency.BULK if bulk else Urgency.REST
            )
            outcome.append(result.status.value)
        return JSONResponse(result.as_dict(), status_code=201)


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidRequest(f"{name} must be a non-empty string of at most 256 characters")
    return value.strip()


def _aliases(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ALIASES:
        raise InvalidRequest(f"aliases must be a list of at most {MAX_ALIASES} strings")
    aliases = []
    for alias in value:
        if not isinstance(alias, str) or not alias.strip() or len(alias) > 256:
            raise InvalidRequest("each alias must be a non-empty string of at most 256 characters")
        if alias.strip() not in aliases:
            aliases.append(alias.strip())
    return aliases


def _future_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidRequest(
            f"{name} must be an RFC 3339 time with a zone, e.g. 2027-01-31T00:00:00Z"
        )
    if moment <= utcnow():
        raise InvalidRequest(f"{name} must be in the future")
    return moment


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(value)


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise InvalidRequest(f"{name} must be true or false")
