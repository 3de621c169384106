"""A typed client for the service's REST API and its server-sent events.

    from biometrics.client import Client

    with Client("http://127.0.0.1:8000", api_key=key) as service:
        service.enroll("alice", Path("alice.wav"), replace=True)
        verdict = service.verify(Path("call.wav"), "alice")
        print(verdict.decision, verdict.score)
        for event in service.events("call-1"):
            print(event.type, event.data)

Every method sends one request under one retry policy (``RetryPolicy``): connection
errors, timeouts, HTTP 429 (but a speaker's lockout), 502, 503 and 504 are retried with
exponential backoff, waiting at least what ``Retry-After`` asks; nothing else is. Each
request carries an ``X-Request-ID`` of its own, the same on its retries, and an
``ApiError`` the one the service answered under. A timeout after a POST was sent is not
retried, because the service may have acted on it (an enrollment would count twice). An
error answer raises ``ApiError`` with the service's ``{"error": code, "detail": text}``; no
answer at all raises ``TransportError``. Replies are read leniently: unknown keys are
ignored and missing optional ones are None, so the client works across service versions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from biometrics.config import DEFAULT_SERVICE_URL as DEFAULT_URL

CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
END_EVENTS = frozenset({"call.ended"})  # the service ends an event stream after these
SSE_RETRY_SECONDS = 2.0  # until the stream says otherwise with ``retry:``
# 429s that waiting a few seconds cannot change: the speaker stays locked out for minutes
# (its Retry-After says until when).
FINAL_429_CODES = frozenset({"speaker_locked_out"})
# Each request names itself, the same id on every retry, so that the service's log lines
# of it can be found from the client's side (the service answers with the same header).
REQUEST_ID_HEADER = "X-Request-ID"

Json = Mapping[str, Any]


# --- Errors ---------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything that kept a request from getting its answer."""


class TransportError(ClientError):
    """No answer from the service, even after the retries."""


class ApiError(ClientError):
    """The service answered with an error: ``status``, its ``code`` and ``detail``, and the
    ``request_id`` it answered under (what its log lines of that request carry)."""

    def __init__(self, status: int, code: str, detail: str, request_id: str | None = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"HTTP {status} {code}" + (f": {detail}" if detail else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        request_id = response.headers.get(REQUEST_ID_HEADER)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = str(body.get("error") or f"http_{response.status_code}")
            return cls(response.status_code, code, str(body.get("detail") or ""), request_id)
        status = response.status_code
        return cls(status, f"http_{status}", response.text[:200], request_id)


# --- Retries --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Attempt ``retries + 1`` times, waiting ``backoff_seconds * 2**n`` (at most
    ``max_backoff_seconds``, at least what ``Retry-After`` asks, also capped) between."""

    retries: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        wait = self.backoff_seconds * 2.0**attempt
        asked = _retry_after_seconds(retry_after)
        if asked is not None:
            wait = max(wait, asked)
        return min(wait, self.max_backoff_seconds)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


# --- What the service answers ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    source: str
    sha256: str
    name: str | None = None
    notice: str | None = None

    @classmethod
    def parse(cls, body: Json) -> ModelInfo:
        return cls(
            str(body.get("source", "")),
            str(body.get("sha256", "")),
            _opt_str(body, "name"),
            _opt_str(body, "notice"),
        )


@dataclasses.dataclass(frozen=True)
class Quality:
    speech_seconds: float | None
    clipping_ratio: float | None
    snr_db: float | None
    issues: tuple[str, ...]

    @classmethod
    def parse(cls, body: Json) -> Quality:
        return cls(
            _opt_float(body, "speech_seconds"),
            _opt_float(body, "clipping_ratio"),
            _opt_float(body, "snr_db"),
            tuple(str(issue) for issue in body.get("issues") or ()),
        )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A decision on a claimed speaker: ``decision`` is one of ACCEPT, REJECT,
    NOT_ENOUGH_SPEECH, POOR_AUDIO_QUALITY, SPEAKER_NOT_ENROLLED, SPEAKER_OPTED_OUT,
    SPEAKER_EXPIRED or SPEAKER_ID_NOT_PROVIDED. The same shape for an uploaded recording
    and for a live call (then ``call_id`` and ``participant_raw_id`` are set)."""

    decision: str
    speaker_id: str | None
    score: float | None
    similarity: float | None
    normalized_score: float | None
    threshold: float | None
    calibrated: bool
    speech_seconds: float
    quality: Quality | None
    model: ModelInfo | None
    verdict_id: str | None
    call_id: str | None
    participant_raw_id: str | None
    first_audio_at: datetime | None
    last_audio_at: datetime | None
    final: bool
    detail: str | None
    created_at: datetime | None

    @property
    def accepted(self) -> bool:
        return self.decision == "ACCEPT"

    def describe(self) -> str:
        """One line: the decision, then the score against the threshold when scored."""
        parts = [f"{self.decision} {self.speaker_id or ''}".rstrip()]
        if self.score is not None:
            parts.append(f"score {self.score:.1f} (threshold {self.threshold:g})")
        parts.append(f"{self.speech_seconds:.1f} s of speech")
        if self.quality is not None and self.quality.issues:
            parts.append("quality: " + ", ".join(self.quality.issues))
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)

    @classmethod
    def parse(cls, body: Json) -> Verdict:
        quality, model = body.get("quality"), body.get("model")
        return cls(
            decision=str(body.get("decision", "")),
            speaker_id=_opt_str(body, "speaker_id"),
            score=_opt_float(body, "score"),
            similarity=_opt_float(body, "similarity"),
            normalized_score=_opt_float(body, "normalized_score"),
            threshold=_opt_float(body, "threshold"),
            calibrated=bool(body.get("calibrated", False)),
            speech_seconds=_opt_float(body, "speech_seconds") or 0.0,
            quality=Quality.parse(quality) if isinstance(quality, dict) else None,
            model=ModelInfo.parse(model) if isinstance(model, dict) else None,
            verdict_id=_opt_str(body, "verdict_id"),
            call_id=_opt_str(body, "call_id"),
            participant_raw_id=_opt_str(body, "participant_raw_id"),
            first_audio_at=_opt_time(body, "first_audio_at"),
            last_audio_at=_opt_time(body, "last_audio_at"),
            final=bool(body.get("final", False)),
            detail=_opt_str(body, "detail"),
            created_at=_opt_time(body, "created_at"),
        )


@dataclasses.dataclass(frozen=True)
class Speaker:
    speaker_id: str
    status: str  # PENDING_ENROLLMENT, ENROLLED, OPTED_OUT or EXPIRED
    display_name: str | None
    aliases: tuple[str, ...]
    enrolled_speech_seconds: float
    remaining_speech_seconds: float | None
    model: ModelInfo | None
    created_at: datetime | None
    updated_at: datetime | None
    last_accessed_at: datetime | None
    expires_at: datetime | None = None  # past it, every verdict is SPEAKER_EXPIRED

    @classmethod
    def parse(cls, body: Json) -> Speaker:
        model = body.get("model")
        return cls(
            speaker_id=str(body.get("speaker_id", "")),
            status=str(body.get("status", "")),
            display_name=_opt_str(body, "display_name"),
            aliases=tuple(str(alias) for alias in body.get("aliases") or ()),
            enrolled_speech_seconds=_opt_float(body, "enrolled_speech_seconds") or 0.0,
            remaining_speech_seconds=_opt_float(body, "remaining_speech_seconds"),
            model=ModelInfo.parse(model) if isinstance(model, dict) else None,
            created_at=_opt_time(body, "created_at"),
            updated_at=_opt_time(body, "updated_at"),
            last_accessed_at=_opt_time(body, "last_accessed_at"),
            expires_at=_opt_time(body, "expires_at"),
        )


@dataclasses.dataclass(frozen=True)
class SpeakerPage:
    speakers: tuple[Speaker, ...]
    next_cursor: str | None  # pass it back as ``cursor`` for the next page


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """One accepted upload: the speech it added and where the speaker now stands."""

    speaker_id: str
    status: str
    speech_seconds: float
    enrolled_speech_seconds: float
    remaining_speech_seconds: float | None

    @classmethod
    def parse(cls, body: Json) -> Enrollment:
        return cls(
            speaker_id=str(body.get("speaker_id", "")),
            status=str(body.get("status", "")),
            speech_seconds=_opt_float(body, "speech_seconds") or 0.0,
            enrolled_speech_seconds=_opt_float(body, "enrolled_speech_seconds") or 0.0,
            remaining_speech_seconds=_opt_float(body, "remaining_speech_seconds"),
        )


@dataclasses.dataclass(frozen=True)
class Claim:
    speaker_id: str
    threshold: float | None
    source: str | None  # "api", or "alias" when matched from the caller's number

    @classmethod
    def parse(cls, body: Json) -> Claim:
        return cls(
            str(body.get("speaker_id", "")), _opt_float(body, "threshold"), _opt_str(body, "source")
        )


@dataclasses.dataclass(frozen=True)
class CallEnrollment:
    """Enrolling a speaker from a participant's speech in a call."""

    speaker_id: str
    status: str
    enrolled_speech_seconds: float
    remaining_speech_seconds: float | None
    call_speech_seconds: float
    active: bool
    detail: str | None

    @classmethod
    def parse(cls, body: Json) -> CallEnrollment:
        return cls(
            speaker_id=str(body.get("speaker_id", "")),
            status=str(body.get("status", "")),
            enrolled_speech_seconds=_opt_float(body, "enrolled_speech_seconds") or 0.0,
            remaining_speech_seconds=_opt_float(body, "remaining_speech_seconds"),
            call_speech_seconds=_opt_float(body, "call_speech_seconds") or 0.0,
            active=bool(body.get("active", False)),
            detail=_opt_str(body, "detail"),
        )


@dataclasses.dataclass(frozen=True)
class Participant:
    participant_raw_id: str
    mixed: bool
    frames: int
    net_speech_seconds: float
    claim: Claim | None
    latest_verdict: Verdict | None
    enrollment: CallEnrollment | None
    joined_at: datetime | None
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    call_id: str | None  # set when read alone (not inside a Call)
    call_status: str | None

    @classmethod
    def parse(cls, body: Json) -> Participant:
        claim, verdict, enrollment = (
            body.get(k) for k in ("claim", "latest_verdict", "enrollment")
        )
        return cls(
            participant_raw_id=str(body.get("participant_raw_id", "")),
            mixed=bool(body.get("mixed", False)),
            frames=int(_opt_float(body, "frames") or 0),
            net_speech_seconds=_opt_float(body, "net_speech_seconds") or 0.0,
            claim=Claim.parse(claim) if isinstance(claim, dict) else None,
            latest_verdict=Verdict.parse(verdict) if isinstance(verdict, dict) else None,
            enrollment=CallEnrollment.parse(enrollment) if isinstance(enrollment, dict) else None,
            joined_at=_opt_time(body, "joined_at"),
            first_frame_at=_opt_time(body, "first_frame_at"),
            last_frame_at=_opt_time(body, "last_frame_at"),
            call_id=_opt_str(body, "call_id"),
            call_status=_opt_str(body, "call_status"),
        )


@dataclasses.dataclass(frozen=True)
class Call:
    call_id: str
    status: str  # PENDING, ONGOING, ENDED
    correlation_id: str | None
    subscription_id: str | None
    sockets: int
    counters: Mapping[str, int]
    participants: tuple[Participant, ...]
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None

    def participant(self, raw_id: str) -> Participant | None:
        return next((p for p in self.participants if p.participant_raw_id == raw_id), None)

    @classmethod
    def parse(cls, body: Json) -> Call:
        counters = body.get("counters")
        return cls(
            call_id=str(body.get("call_id", "")),
            status=str(body.get("status", "")),
            correlation_id=_opt_str(body, "correlation_id"),
            subscription_id=_opt_str(body, "subscription_id"),
            sockets=int(_opt_float(body, "sockets") or 0),
            counters=dict(counters) if isinstance(counters, dict) else {},
            participants=tuple(
                Participant.parse(p) for p in body.get("participants") or () if isinstance(p, dict)
            ),
            created_at=_opt_time(body, "created_at"),
            started_at=_opt_time(body, "started_at"),
            ended_at=_opt_time(body, "ended_at"),
        )


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool
    status: str
    database: str | None
    model: ModelInfo | None
    scoring: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Event:
    """One server-sent event: ``id`` (resume after it), ``type`` (e.g. ``verdict.changed``)
    and its JSON ``data``; ``verdict`` reads the data of a verdict event."""

    id: str | None
    type: str
    data: Any

    @property
    def verdict(self) -> Verdict | None:
        return Verdict.parse(self.data) if self.type == "verdict.changed" else None


# --- The client -------------------------------------------------------------------------------


class Client:
    """The service at ``base_url`` (which may carry a path prefix behind a proxy).

    ``api_key`` is sent as ``Authorization: Bearer <key>``; ``timeout`` bounds each wait
    for the service (an event stream waits for events without limit).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url + "/", headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- health -----------------------------------------------------------------------------

    def health(self) -> str:
        """``GET /healthz``: the process answers ("ok")."""
        return str(self._json("GET", "healthz").get("status", ""))

    def ready(self) -> Readiness:
        """``GET /readyz``, asked once: a 503 is the answer "not ready", not an error."""
        response = self._send("GET", "readyz", retry=RetryPolicy(retries=0))
        if response.status_code not in (200, 503):
            raise ApiError.from_response(response)
        body = _body(response)
        model = body.get("model")
        scoring = body.get("scoring")
        return Readiness(
            ready=response.status_code == 200,
            status=str(body.get("status", "")),
            database=_opt_str(body, "database"),
            model=ModelInfo.parse(model) if isinstance(model, dict) else None,
            scoring=scoring if isinstance(scoring, dict) else {},
        )

    # --- speakers ---------------------------------------------------------------------------

    def create_speaker(
        self, speaker_id: str, *, display_name: str | None = None, aliases: tuple[str, ...] = ()
    ) -> Speaker:
        body: dict[str, Any] = {"speaker_id": speaker_id, "aliases": list(aliases)}
        if display_name is not None:
            body["display_name"] = display_name
        return Speaker.parse(self._json("POST", "v1/speakers", json=body))

    def get_speaker(self, speaker_id: str) -> Speaker:
        return Speaker.parse(self._json("GET", _path("v1/speakers", speaker_id)))

    def list_speakers(self, *, limit: int | None = None, cursor: str | None = None) -> SpeakerPage:
        params = {key: value for key, value in (("limit", limit), ("cursor", cursor)) if value}
        body = self._json("GET", "v1/speakers", params=params)
        return SpeakerPage(
            tuple(Speaker.parse(s) for s in body.get("speakers") or () if isinstance(s, dict)),
            _opt_str(body, "next_cursor"),
        )

    def delete_speaker(self, speaker_id: str) -> None:
        self._raise_for_error(self._send("DELETE", _path("v1/speakers", speaker_id)))

    def opt_out(self, speaker_id: str) -> Speaker:
        """Delete the voiceprint and refuse future enrollment (an unknown id is kept as
        opted out)."""
        return Speaker.parse(self._json("POST", _path("v1/speakers", speaker_id, "opt-out")))

    def enroll(
        self,
        speaker_id: str,
        audio: bytes | Path,
        *,
        replace: bool = False,
        content_type: str | None = None,
        bulk: bool = False,
    ) -> Enrollment:
        """Add a recording's speech to the speaker's voiceprint (``replace``: start it anew;
        ``bulk``: one of many, so the service lets verifications go first).

        ``audio`` is a file's bytes or its path (WAV, FLAC or Ogg; the type is taken from a
        path's suffix unless ``content_type`` says it)."""
        content, kind = _audio(audio, content_type)
        params = {"replace": "true"} if replace else {}
        if bulk:
            params["bulk"] = "true"
        path = _path("v1/speakers", speaker_id, "enrollments")
        return Enrollment.parse(
            self._json("POST", path, content=content, params=params, content_type=kind)
        )

    def verify(
        self,
        audio: bytes | Path,
        speaker_id: str,
        *,
        threshold: float | None = None,
        content_type: str | None = None,
    ) -> Verdict:
        """Is the voice in ``audio`` the speaker's? ``threshold`` overrides the service's
        (0-100). Decisions other than ACCEPT and REJECT are verdicts too, not errors."""
        content, kind = _audio(audio, content_type)
        params: dict[str, str] = {"speaker_id": speaker_id}
        if threshold is not None:
            params["threshold"] = repr(float(threshold))
        return Verdict.parse(
            self._json("POST", "v1/verify", content=content, params=params, content_type=kind)
        )

    # --- live calls -------------------------------------------------------------------------

    def claim(
        self, call_id: str, raw_id: str, speaker_id: str, *, threshold: float | None = None
    ) -> Participant:
        """Judge a call participant as ``speaker_id``; allowed before the call streams."""
        body: dict[str, Any] = {"speaker_id": speaker_id}
        if threshold is not None:
            body["threshold"] = threshold
        path = _path("v1/calls", call_id, "participants", raw_id, "claim")
        return Participant.parse(self._json("PUT", path, json=body))

    def get_call(self, call_id: str) -> Call:
        return Call.parse(self._json("GET", _path("v1/calls", call_id)))

    def get_participant(self, call_id: str, raw_id: str) -> Participant:
        return Participant.parse(
            self._json("GET", _path("v1/calls", call_id, "participants", raw_id))
        )

    def verdicts(self, call_id: str, raw_id: str, *, limit: int | None = None) -> list[Verdict]:
        """A participant's verdicts, oldest first."""
        path = _path("v1/calls", call_id, "participants", raw_id, "verdicts")
        body = self._json("GET", path, params={"limit": limit} if limit else {})
        return [Verdict.parse(v) for v in body.get("verdicts") or () if isinstance(v, dict)]

    def enroll_from_call(self, call_id: str, raw_id: str, speaker_id: str) -> Participant:
        """Enroll ``speaker_id`` from the participant's speech so far and as it comes."""
        path = _path("v1/calls", call_id, "participants", raw_id, "enroll")
        return Participant.parse(self._json("POST", path, json={"speaker_id": speaker_id}))

    def events(self, call_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The call's events as they happen, ending after ``call.ended``.

        A stream that breaks off is reopened with ``Last-Event-ID`` (after the delay the
        stream asked for with ``retry:``), so no event is lost or repeated; opening it is
        retried under the client's policy. An unknown call raises ``ApiError`` (404)."""
        path = _path("v1/calls", call_id, "events")
        wait = SSE_RETRY_SECONDS
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            reader = _EventReader()
            try:
                with self._open_stream(path, headers) as response:
                    for line in response.iter_lines():
                        event = reader.feed(line)
                        if event is None:
                            continue
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.type in END_EVENTS:
                            return
            except (httpx.TransportError, httpx.StreamError):
                pass  # broken off: reopen below
            wait = reader.retry_seconds if reader.retry_seconds is not None else wait
            time.sleep(wait)

    # --- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open_stream(self, path: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """An event stream's response, open; an error answer raises ``ApiError``."""
        request = self._http.build_request(
            "GET",
            path,
            headers={**headers, REQUEST_ID_HEADER: uuid.uuid4().hex},
            timeout=httpx.Timeout(self.timeout, read=None),
        )
        response = self._with_retries(request, self.retry, stream=True)
        try:
            if response.is_error:
                response.read()
                raise ApiError.from_response(response)
            yield response
        finally:
            response.close()

    def _json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        content_type: str | None = None,
    ) -> Json:
        response = self._send(
            method, path, json=json, content=content, params=params, content_type=content_type
        )
        self._raise_for_error(response)
        return _body(response)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        headers = {REQUEST_ID_HEADER: uuid.uuid4().hex}
        if content_type:
            headers["Content-Type"] = content_type
        request = self._http.build_request(
            method, path, json=json, content=content, params=params, headers=headers
        )
        return self._with_retries(request, retry or self.retry)

    def _with_retries(
        self, request: httpx.Request, policy: RetryPolicy, *, stream: bool = False
    ) -> httpx.Response:
        what = f"{request.method} {request.url.raw_path.decode('ascii', 'replace')}"
        for attempt in range(policy.retries + 1):
            last = attempt == policy.retries
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                if last or not _retryable(error, request.method):
                    raise TransportError(f"{what}: {_describe(error, self.timeout)}") from error
                time.sleep(policy.delay(attempt))
                continue
            if last or not self._retryable_answer(response, policy, stream=stream):
                return response
            if stream:
                response.close()
            time.sleep(policy.delay(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _retryable_answer(response: httpx.Response, policy: RetryPolicy, *, stream: bool) -> bool:
        """An answer worth asking again for: overloaded or a gateway's, but not a speaker's
        lockout (429 too), which lasts minutes, past any retry."""
        if response.status_code not in policy.statuses:
            return False
        if response.status_code != 429 or stream:
            return True
        return ApiError.from_response(response).code not in FINAL_429_CODES

    @staticmethod
    def _raise_for_error(response: httpx.Response) -> None:
        if response.is_error:
            raise ApiError.from_response(response)


class _EventReader:
    """Lines of ``text/event-stream`` in, events out (the WHATWG rules the service needs)."""

    def __init__(self) -> None:
        self.retry_seconds: float | None = None
        self._id: str | None = None
        self._type = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_seconds = int(value) / 1000
        return None

    def _dispatch(self) -> Event | None:
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        return Event(self._id, kind, payload)


def _retryable(error: httpx.TransportError, method: str) -> bool:
    """Nothing reached the service, or asking again cannot do a thing twice."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or (
        method in IDEMPOTENT_METHODS
    )


def _describe(error: httpx.TransportError, timeout: float) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


def _path(*parts: str) -> str:
    """Path segments joined, each URL-encoded whole (raw ids hold ``:``, ``+`` and ``/``)."""
    head, *rest = parts
    return "/".join([head, *(urllib.parse.quote(part, safe="") for part in rest)])


def _audio(audio: bytes | Path, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(audio, Path):
        kind = content_type or CONTENT_TYPES.get(audio.suffix.lower(), "application/octet-stream")
        return audio.read_bytes(), kind
    return audio, content_type or "application/octet-stream"


def _body(response: httpx.Response) -> Json:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _opt_str(body: Json, key: str) -> str | None:
    value = body.get(key)
    return None if value is None else str(value)


def _opt_float(body: Json, key: str) -> float | None:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_time(body: Json, key: str) -> datetime | None:
    value = body.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
