"""Speakers: create, list, read, delete, opt out, and enroll their voices. Creating,
deleting, opting out and enrolling each leave a row in the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.audit import Auditor
from biometrics.api.auth import Guard
from biometrics.api.openapi import UPLOAD, WITH_BODY, Operation, Reply
from biometrics.api.uploads import read_audio_upload
from biometrics.audio import detect_speech
from biometrics.clock import isoformat, utcnow
from biometrics.embedding import Urgency
from biometrics.enrollment import Enroller, remaining_seconds
from biometrics.statuses import Role, SpeakerStatus
from biometrics.store import Database, Speaker, queries
from biometrics.store.recordings import Recordings


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


TAG = "speakers"
NOT_FOUND = {404: ("speaker_not_found",)}
BAD_ID = {400: ("invalid_request",)}
# What a speaker made by POST leads to: its own routes.
SPEAKER_LINKS = {
    name: {"speaker_id": "$response.body#/speaker_id"}
    for name in (
        "getSpeaker",
        "deleteSpeaker",
        "optOutSpeaker",
        "enrollSpeaker",
        "clearSpeakerLockout",
    )
}
CREATE = Operation(
    "createSpeaker",
    "Create a speaker (enrollment also creates a missing one)",
    TAG,
    [Reply(201, "the speaker, PENDING_ENROLLMENT", schemas.Speaker, links=SPEAKER_LINKS)],
    {status: ("invalid_request",) for status in WITH_BODY} | {409: ("speaker_exists",)},
    body=schemas.SpeakerCreate,
)
LIST = Operation(
    "listSpeakers",
    "List speakers by id, a page at a time",
    TAG,
    [Reply(200, "a page of speakers; next_cursor reads the next", schemas.SpeakerPage)],
    BAD_ID,
    query=schemas.SpeakerPageQuery,
)
GET = Operation(
    "getSpeaker",
    "Read a speaker and their enrollment",
    TAG,
    [Reply(200, "the speaker", schemas.Speaker)],
    NOT_FOUND,
)
DELETE = Operation(
    "deleteSpeaker",
    "Delete a speaker, their voiceprint and verdicts (the audit rows stay)",
    TAG,
    [Reply(204, "deleted")],
    NOT_FOUND,
)
OPT_OUT = Operation(
    "optOutSpeaker",
    "Delete the voiceprint and refuse future enrollment (creates an unknown speaker)",
    TAG,
    [Reply(200, "the speaker, OPTED_OUT", schemas.Speaker)],
    BAD_ID,
)
ENROLL = Operation(
    "enrollSpeaker",
    "Add a recording's speech to the speaker's voiceprint",
    TAG,
    [Reply(201, "the enrollment's progress; repeat until ENROLLED", schemas.Enrollment)],
    {status: () for status in UPLOAD}
    | {400: ("invalid_request", "invalid_audio"), 409: ("speaker_opted_out", "model_mismatch")}
    | {422: ("insufficient_speech",)},
    form=schemas.EnrollmentFields,
)
UNLOCK = Operation(
    "clearSpeakerLockout",
    "Clear a lockout: failed verifications before now no longer count",
    TAG,
    [Reply(200, "the speaker", schemas.Speaker)],
    NOT_FOUND,
)


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
            guard.route("/v1/speakers", Role.ENROLL, self.create_speaker, "POST", CREATE),
            guard.route("/v1/speakers", Role.READ, self.list_speakers, "GET", LIST),
            guard.route(speaker, Role.READ, self.get_speaker, "GET", GET),
            guard.route(speaker, Role.ADMIN, self.delete_speaker, "DELETE", DELETE),
            guard.route(speaker + "/opt-out", Role.ENROLL, self.opt_out, "POST", OPT_OUT),
            guard.route(speaker + "/enrollments", Role.ENROLL, self.enroll, "POST", ENROLL),
            guard.route(speaker + "/lockout", Role.ADMIN, self.clear_lockout, "DELETE", UNLOCK),
        ]

    def _json(self, speaker: Speaker) -> dict[str, Any]:
        return speaker_json(speaker, self._enroller.minimum)

    async def create_speaker(self, request: Request) -> Response:
        body = await schemas.json_body(request, schemas.SpeakerCreate)

        def create() -> dict[str, Any]:
            with self._database.session() as session:
                speaker = queries.create_speaker(
                    session,
                    body.speaker_id,
                    body.display_name,
                    body.aliases,
                    expires_at=body.expires_at,
                )
                return self._json(speaker)

        async with self._auditor.act(request, "speaker.create", body.speaker_id):
            created = await run_in_threadpool(create)
        return schemas.respond(schemas.Speaker, created, 201)

    async def list_speakers(self, request: Request) -> Response:
        page_query = schemas.query(request, schemas.SpeakerPageQuery)
        limit, cursor = page_query.limit, page_query.cursor or None

        def page() -> dict[str, Any]:
            with self._database.session() as session:
                speakers = queries.list_speakers(session, after=cursor, limit=limit + 1)
                shown = speakers[:limit]
                return {
                    "speakers": [self._json(speaker) for speaker in shown],
                    "next_cursor": shown[-1].speaker_id if len(speakers) > limit else None,
                }

        return schemas.respond(schemas.SpeakerPage, await run_in_threadpool(page))

    async def get_speaker(self, request: Request) -> Response:
        speaker_id = request.path_params["speaker_id"]

        def read() -> dict[str, Any]:
            with self._database.session() as session:
                return self._json(queries.get_speaker(session, speaker_id))

        return schemas.respond(schemas.Speaker, await run_in_threadpool(read))

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
        return schemas.respond(schemas.Speaker, cleared)

    async def opt_out(self, request: Request) -> Response:
        """Delete the voiceprint and refuse future enrollment. An unknown speaker is
        created opted out, so that consent withdrawn before enrollment still holds."""
        speaker_id = schemas.check_speaker_id(request.path_params["speaker_id"])

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
        return schemas.respond(schemas.Speaker, withdrawn)

    async def enroll(self, request: Request) -> Response:
        speaker_id = schemas.check_speaker_id(request.path_params["speaker_id"])
        async with self._auditor.act(request, "speaker.enroll", speaker_id) as outcome:
            upload = await read_audio_upload(request, self._max_audio_seconds)
            fields = schemas.validated(schemas.EnrollmentFields, upload.fields)
            speech = await run_in_threadpool(detect_speech, upload.samples)
            urgency = Urgency.BULK if fields.bulk else Urgency.REST  # bulk yields to verifying
            result = await self._enroller.enroll(
                speaker_id, speech, replace=fields.replace, urgency=urgency
            )
            outcome.append(result.status.value)
        return schemas.respond(schemas.Enrollment, result.as_dict(), 201)
