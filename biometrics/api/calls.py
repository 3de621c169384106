"""Live calls over REST: claims, progress and verdicts, enrollment from a call, and the
call's events as server-sent events.

Participant raw ids travel URL-encoded in paths (``8%3Aacs%3A...``, ``4%3A%2B1425...``);
the routes take them as ``:path`` so that an id holding ``/`` (which servers decode from
``%2F`` before routing) still reaches the handler whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.audit import Auditor
from biometrics.api.auth import Guard
from biometrics.api.openapi import WITH_BODY, Operation, Reply
from biometrics.cluster.events import SharedEvents
from biometrics.errors import (
    CallNotFound,
    InvalidRequest,
    ParticipantNotFound,
    SharedStateUnavailable,
    SpeakerExists,
    SpeakerOptedOut,
)
from biometrics.events import Broker, Subscription, sse
from biometrics.snapshots import CallSummary, ParticipantSummary, SpeakerClaim, participant_view
from biometrics.statuses import CallStatus, Role, SpeakerStatus
from biometrics.store import Database, queries
from biometrics.store.calls import CallStore
from biometrics.store.verdicts import VerdictHistory
from biometrics.streaming.identity import MAX_CALL_ID_CHARS, call_id_problem
from biometrics.streaming.registry import CallRegistry

TAG = "calls"
BAD_ID = ("invalid_request",)
NO_CALL = {400: BAD_ID, 404: ("call_not_found",)}
NO_PARTICIPANT = {400: BAD_ID, 404: ("call_not_found", "participant_not_found")}
# A claimed participant's own routes (not its call's events: they stream until it ends).
PARTICIPANT_LINKS = {
    name: {
        "call_id": "$response.body#/call_id",
        "participant_raw_id": "$response.body#/participant_raw_id",
    }
    for name in ("getParticipant", "listParticipantVerdicts")
}
GET_CALL = Operation(
    "getCall",
    "Read a call: its status, counters and participants",
    TAG,
    [Reply(200, "the call", schemas.Call)],
    NO_CALL,
)
CALL_EVENTS = Operation(
    "streamCallEvents",
    "The call's events as server-sent events, until it ends",
    TAG,
    [
        Reply(
            200,
            "the events retained, then each as it happens",
            schemas.ServerSentEvent,
            sse.MEDIA_TYPE,
        )
    ],
    NO_CALL,
    description=(
        "Each event is a CloudEvent in JSON (`call.started`, `participant.joined`, "
        "`verdict`, `call.ended`, ...); send `Last-Event-ID` to resume after one."
    ),
)
LIST_VERDICTS = Operation(
    "listParticipantVerdicts",
    "A participant's verdicts, newest first",
    TAG,
    [Reply(200, "the verdicts", schemas.VerdictList)],
    NO_PARTICIPANT,
    query=schemas.VerdictsQuery,
)
CLAIM = Operation(
    "claimParticipant",
    "Judge a participant as a speaker (before its audio arrives, or during the call)",
    TAG,
    [
        Reply(
            200,
            "the participant; its first verdict follows as an event",
            schemas.Participant,
            links=PARTICIPANT_LINKS,
        )
    ],
    {status: BAD_ID for status in WITH_BODY}
    | {404: ("speaker_not_found",), 409: ("too_many_participants",), 503: ("too_many_calls",)},
    body=schemas.ClaimRequest,
)
ENROLL = Operation(
    "enrollFromCall",
    "Enroll a speaker from a participant's speech, so far and as it arrives",
    TAG,
    [
        Reply(200, "the speech so far is enrolled", schemas.Participant),
        Reply(202, "too little speech yet: enrollment goes on as it arrives", schemas.Participant),
    ],
    {status: BAD_ID for status in WITH_BODY}
    | {
        404: ("call_not_found", "participant_not_found"),
        409: ("speaker_opted_out", "enrollment_in_progress", "model_mismatch"),
    },
    body=schemas.EnrollFromCallRequest,
)
GET_PARTICIPANT = Operation(
    "getParticipant",
    "Read a participant: claim, speech so far, latest verdict, enrollment",
    TAG,
    [Reply(200, "the participant", schemas.Participant)],
    NO_PARTICIPANT,
)


class CallRoutes:
    """Live calls over REST, over the call registry, the stores and the event broker."""

    def __init__(
        self,
        calls: CallRegistry,
        store: CallStore,
        history: VerdictHistory,
        database: Database,
        broker: Broker,
        auditor: Auditor,
        shared_events: SharedEvents | None = None,
    ) -> None:
        self._shared_events = shared_events
        self._auditor = auditor
        self._calls = calls
        self._store = store
        self._history = history
        self._database = database
        self._broker = broker

    def routes(self, guard: Guard) -> list[Route]:
        call = "/v1/calls/{call_id}"
        participant = call + "/participants/{participant_raw_id:path}"
        # Raw ids may hold "/" once decoded: the suffixed routes come before the bare one.
        return [
            guard.route(call, Role.READ, self.get_call, "GET", GET_CALL),
            guard.route(call + "/events", Role.READ, self.call_events, "GET", CALL_EVENTS),
            guard.route(
                participant + "/verdicts", Role.READ, self.list_verdicts, "GET", LIST_VERDICTS
            ),
            guard.route(participant + "/claim", Role.VERIFY, self.put_claim, "PUT", CLAIM),
            guard.route(
                participant + "/enroll", Role.ENROLL, self.enroll_from_call, "POST", ENROLL
            ),
            guard.route(participant, Role.READ, self.get_participant, "GET", GET_PARTICIPANT),
        ]

    async def get_call(self, request: Request) -> Response:
        summary = await self._summary(request)
        return schemas.respond(schemas.Call, summary.as_dict())

    async def get_participant(self, request: Request) -> Response:
        summary = await self._summary(request)
        return schemas.respond(
            schemas.Participant, participant_view(summary, _participant_of(request, summary))
        )

    async def list_verdicts(self, request: Request) -> Response:
        call_id, raw_id = _call_id(request), _raw_id(request)
        limit = schemas.query(request, schemas.VerdictsQuery).limit
        await self._store.flush()  # the participant row, if it is new
        _participant_of(request, await self._summary(request))
        verdicts = await run_in_threadpool(self._history.of_participant, call_id, raw_id, limit)
        return schemas.respond(
            schemas.VerdictList,
            {
                "call_id": call_id,
                "participant_raw_id": raw_id,
                "verdicts": [verdict.as_dict() for verdict in verdicts],
            },
        )

    async def put_claim(self, request: Request) -> Response:
        """Judge a participant as a speaker, before its audio arrives (the call is then
        PENDING) or during the call; the first verdict follows at once as an event."""
        call_id, raw_id = _call_id(request), _raw_id(request)
        claim = await schemas.json_body(request, schemas.ClaimRequest)
        await run_in_threadpool(self._require_speaker, claim.speaker_id)
        claimed = await self._calls.claim(
            call_id, raw_id, SpeakerClaim(claim.speaker_id, claim.threshold, "api")
        )
        return schemas.respond(schemas.Participant, claimed)

    async def enroll_from_call(self, request: Request) -> Response:
        """Enroll a speaker from a participant's speech so far, then from each further chunk
        until the speaker is ENROLLED. 200 once the speech so far is enrolled; 202 when
        there is too little speech yet (enrollment starts as it arrives). The audit row's
        outcome is ``ok``, or ``started`` for a 202."""
        call_id, raw_id = _call_id(request), _raw_id(request)
        speaker_id = (await schemas.json_body(request, schemas.EnrollFromCallRequest)).speaker_id
        where = {"call_id": call_id, "participant_raw_id": raw_id}
        async with self._auditor.act(request, "speaker.enroll", speaker_id, **where) as outcome:
            if await self._calls.summary(call_id) is None:
                raise CallNotFound(f"call {call_id!r} is not known")
            call = await self._calls.obtain(call_id)
            participant = call.participants.get(raw_id)
            if participant is None:
                raise ParticipantNotFound(f"call {call_id!r} has no participant {raw_id!r}")
            await run_in_threadpool(self._prepare_enrollment, speaker_id)
            task = participant.start_enrollment(speaker_id)
            if task is None:
                outcome.append("started")
            else:
                await asyncio.shield(task)  # the enrollment goes on if the client leaves
        return schemas.respond(
            schemas.Participant,
            participant_view(call.summary(), participant.summary()),
            202 if task is None else 200,
        )

    async def call_events(self, request: Request) -> Response:
        """The call's events as ``text/event-stream``: first those retained (or those after
        ``Last-Event-ID``), then each as it happens, ending after ``call.ended``."""
        call_id = _call_id(request)
        after = request.headers.get("last-event-id")
        subscription = await self._subscribe(call_id, after)
        unsubscribe = (
            self._broker.unsubscribe
            if self._shared_events is None
            else self._shared_events.unsubscribe
        )

        async def body() -> Any:
            try:
                async for chunk in sse.stream(subscription):
                    yield chunk
            finally:
                unsubscribe(subscription)

        return StreamingResponse(
            body(),
            media_type=sse.MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _subscribe(self, call_id: str, after: str | None) -> Subscription:
        """The call's events from this process's broker (while the call is in memory), or
        from the replicas' shared streams (while Redis keeps them, or while the call is
        known anywhere: its first events may still be on their way). CallNotFound for a
        call nobody knows, or one that ended and whose events are no longer held."""
        if self._shared_events is None:
            if self._calls.find(call_id) is None:
                raise _gone(call_id, await self._calls.summary(call_id))
            return self._broker.subscribe(call_id, after=after)
        try:
            subscription, known = await self._shared_events.subscribe(call_id, after)
        except (RedisError, OSError) as error:
            raise _events_unavailable(call_id, error) from error
        if known:
            return subscription
        try:
            refusal = await self._refusal(call_id)
        except BaseException:
            self._shared_events.unsubscribe(subscription)
            raise
        if refusal is None:
            return subscription  # (its replay is empty: the first events are still to come)
        self._shared_events.unsubscribe(subscription)
        raise refusal

    async def _refusal(self, call_id: str) -> CallNotFound | None:
        """Why a call with no events in Redis cannot be followed; None while it is pending
        or live somewhere. Asked after subscribing, so that an event published meanwhile
        reaches the subscription."""
        summary = await self._calls.summary(call_id)
        if summary is not None:
            # Only an ended call whose stream expired has nothing more to send.
            return None if summary.status is not CallStatus.ENDED else _gone(call_id, summary)
        # Not stored yet: the replica holding the call (pending on a claim made there a
        # moment ago, its snapshot still on its way to the database) names it in its lease.
        try:
            held = await self._calls.held(call_id)
        except (RedisError, OSError) as error:
            raise _events_unavailable(call_id, error) from error
        return None if held else _gone(call_id, None)

    async def _summary(self, request: Request) -> CallSummary:
        call_id = _call_id(request)
        summary = await self._calls.summary(call_id)
        if summary is None:
            raise CallNotFound(f"call {call_id!r} is not known")
        return summary

    def _require_speaker(self, speaker_id: str) -> None:
        with self._database.session() as session:
            queries.get_speaker(session, speaker_id)  # SpeakerNotFound: 404

    def _prepare_enrollment(self, speaker_id: str) -> None:
        """Refuse an opted-out speaker now; create a missing one, so that its progress
        shows on GET /v1/speakers/{id} from the start."""
        # SpeakerExists: another request created it meanwhile, which is as good.
        with contextlib.suppress(SpeakerExists), self._database.session() as session:
            speaker = queries.find_speaker(session, speaker_id)
            if speaker is None:
                queries.create_speaker(session, speaker_id)
            elif speaker.status is SpeakerStatus.OPTED_OUT:
                raise SpeakerOptedOut(f"speaker {speaker_id!r} opted out; enrollment is refused")


# --- helpers --------------------------------------------------------------------------------


def _participant_of(request: Request, summary: CallSummary) -> ParticipantSummary:
    raw_id = _raw_id(request)
    participant = summary.participant(raw_id)
    if participant is None:
        raise ParticipantNotFound(f"call {summary.call_id!r} has no participant {raw_id!r}")
    return participant


def _gone(call_id: str, summary: CallSummary | None) -> CallNotFound:
    """Why the call's events cannot be followed: nobody knows it, or it ended (as
    ``summary`` says) and its events are no longer held."""
    if summary is None:
        return CallNotFound(f"call {call_id!r} is not known")
    return CallNotFound(
        f"call {call_id!r} ended and its events are no longer held: read "
        f"GET /v1/calls/{call_id} and its participants' verdicts instead"
    )


def _events_unavailable(call_id: str, error: Exception) -> SharedStateUnavailable:
    return SharedStateUnavailable(
        f"the events of call {call_id!r} are kept in Redis",
        error,
        f"read GET /v1/calls/{call_id} meanwhile, or try again shortly",
    )


def _call_id(request: Request) -> str:
    call_id: str = request.path_params["call_id"]
    problem = call_id_problem(call_id)
    if problem is not None:
        raise InvalidRequest(f"bad call id: {problem}")
    return call_id


def _raw_id(request: Request) -> str:
    raw_id: str = request.path_params["participant_raw_id"]
    if not raw_id or len(raw_id) > MAX_CALL_ID_CHARS or not raw_id.isprintable():
        raise InvalidRequest(
            f"a participant raw id has 1 to {MAX_CALL_ID_CHARS} printable characters "
            "(URL-encode it in the path)"
        )
    return raw_id
