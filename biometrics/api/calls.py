"""Live calls over REST: claims, progress and verdicts, enrollment from a call, and the
call's events as server-sent events.

Participant raw ids travel URL-encoded in paths (``8%3Aacs%3A...``, ``4%3A%2B1425...``);
the routes take them as ``:path`` so that an id holding ``/`` (which servers decode from
``%2F`` before routing) still reaches the handler whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from biometrics.api.audit import Auditor
from biometrics.api.auth import Guard
from biometrics.api.speakers import check_speaker_id, json_object
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

DEFAULT_VERDICTS = 100
MAX_VERDICTS = 1000


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
            guard.route(call, Role.READ, self.get_call, "GET"),
            guard.route(call + "/events", Role.READ, self.call_events, "GET"),
            guard.route(participant + "/verdicts", Role.READ, self.list_verdicts, "GET"),
            guard.route(participant + "/claim", Role.VERIFY, self.put_claim, "PUT"),
            guard.route(participant + "/enroll", Role.ENROLL, self.enroll_from_call, "POST"),
            guard.route(participant, Role.READ, self.get_participant, "GET"),
        ]

    async def get_call(self, request: Request) -> Response:
        summary = await self._summary(request)
        return JSONResponse(summary.as_dict())

    async def get_participant(self, request: Request) -> Response:
        summary = await self._summary(request)
        return JSONResponse(participant_view(summary, _participant_of(request, summary)))

    async def list_verdicts(self, request: Request) -> Response:
        call_id, raw_id = _call_id(request), _raw_id(request)
        limit = _limit(request.query_params.get("limit"))
        await self._store.flush()  # the participant row, if it is new
        _participant_of(request, await self._summary(request))
        verdicts = await run_in_threadpool(self._history.of_participant, call_id, raw_id, limit)
        return JSONResponse(
            {
                "call_id": call_id,
                "participant_raw_id": raw_id,
                "verdicts": [verdict.as_dict() for verdict in verdicts],
            }
        )

    async def put_claim(self, request: Request) -> Response:
        """Judge a participant as a speaker, before its audio arrives (the call is then
        PENDING) or during the call; the first verdict follows at once as an event."""
        call_id, raw_id = _call_id(request), _raw_id(request)
        body = await json_object(request)
        speaker_id = _speaker_id(body)
        threshold = _threshold(body.get("threshold"))
        await run_in_threadpool(self._require_speaker, speaker_id)
        claimed = await self._calls.claim(
            call_id, raw_id, SpeakerClaim(speaker_id, threshold, "api")
        )
        return JSONResponse(claimed)

    async def enroll_from_call(self, request: Request) -> Response:
        """Enroll a speaker from a participant's speech so far, then from each further chunk
        until the speaker is ENROLLED. 200 once the speech so far is enrolled; 202 when
        there is too little speech yet (enrollment starts as it arrives). The audit row's
        outcome is ``ok``, or ``started`` for a 202."""
        call_id, raw_id = _call_id(request), _raw_id(request)
        body = await json_object(request)
        speaker_id = _speaker_id(body)
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
        return JSONResponse(
            participant_view(call.summary(), participant.summary()),
            status_code=202 if task is None else 200,
        )

    async def call_events(self, request: Request) -> Response:
        """The call's events as ``text/event-stream``: first those retained (or those after
        ``Last-Event-ID``), then each as it happens, ending after ``call.ended``."""
        call_id = _call_id(request)
        after = request.headers.get("last-event-id")
        subscription = await self._subscribe(call_id, after)
        if subscription is None:
            if await self._calls.summary(call_id) is None:
                raise CallNotFound(f"call {call_id!r} is not known")
            raise CallNotFound(
                f"call {call_id!r} ended and its events are no longer held: read "
                f"GET /v1/calls/{call_id} and its participants' verdicts instead"
            )
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

    async def _subscribe(self, call_id: str, after: str | None) -> Subscription | None:
        """The call's events from this process's broker (while the call is in memory), or
        from the replicas' shared streams (while Redis keeps them)."""
        if self._shared_events is not None:
            try:
                subscription, known = await self._shared_events.subscribe(call_id, after)
            except (RedisError, OSError) as error:
                raise SharedStateUnavailable(
                    f"the events of call {call_id!r} are kept in Redis",
                    error,
                    f"read GET /v1/calls/{call_id} meanwhile, or try again shortly",
                ) from error
            summary = None if known else await self._calls.summary(call_id)
            if known or (summary is not None and summary.status is not CallStatus.ENDED):
                return subscription  # (a pending call's first events are still to come)
            self._shared_events.unsubscribe(subscription)
            return None
        if self._calls.find(call_id) is None:
            return None
        return self._broker.subscribe(call_id, after=after)

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


def _speaker_id(body: dict[str, Any]) -> str:
    value = body.get("speaker_id")
    return check_speaker_id(value if isinstance(value, str) else "")


def _threshold(value: object) -> float | None:
    if value is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise InvalidRequest(f"threshold must be a number from 0 to 100, got {value!r}")
    return float(number)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_VERDICTS
    if not value.isdigit() or not 1 <= int(value) <= MAX_VERDICTS:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_VERDICTS}")
    return int(value)
