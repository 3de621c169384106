"""The REST API's bodies as pydantic models: what a request may send and what a response
holds. The handlers validate with them and shape their answers through them, and the
OpenAPI document (:mod:`biometrics.api.openapi`) is generated from the same classes, so the
spec cannot drift from the code.

Request models ignore fields they do not know (as the API always has); response models
forbid them, so that a field added to a response without its model fails loudly in the
tests instead of leaving the spec behind. A request that does not validate is 400
``invalid_request`` whose detail names each field and what is wrong with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse

from biometrics.clock import utcnow
from biometrics.errors import InvalidRequest
from biometrics.statuses import CallStatus, Decision, Role, SpeakerStatus
from biometrics.store.call_tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS

SPEAKER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"
MAX_ALIASES = 16
DEFAULT_PAGE = 50
MAX_PAGE = 500
DEFAULT_VERDICTS = 100
MAX_VERDICTS = 1000

Model = TypeVar("Model", bound=BaseModel)


# --- reading requests -----------------------------------------------------------------------


def invalid(error: ValidationError) -> InvalidRequest:
    """One actionable 400 for every problem pydantic found, each naming its field."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        # A validator's own message already names its field.
        problems.append(message if item["type"] == "value_error" else f"{field}: {message}")
    return InvalidRequest("; ".join(problems))


def validated(model: type[Model], values: Mapping[str, Any]) -> Model:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise invalid(error) from None


async def json_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON object as ``model``."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return validated(model, body)


def query(request: Request, model: type[Model]) -> Model:
    """The request's query parameters as ``model``."""
    return validated(model, request.query_params)


def respond(
    model: type[BaseModel], payload: Mapping[str, Any], status_code: int = 200
) -> JSONResponse:
    """``payload`` checked against its response model, then sent: a response that does not
    match its documented shape is a bug of ours, and fails here rather than in a client."""
    shaped = model.model_validate(payload).model_dump(mode="json", exclude_unset=True)
    return JSONResponse(shaped, status_code=status_code)


# --- shared pieces ----------------------------------------------------------------------------


class Incoming(BaseModel):
    """A request body or query: unknown fields are ignored, as the API always did."""

    model_config = ConfigDict(extra="ignore")


class QueryParams(Incoming):
    """Query parameters (an empty filter or cursor, ``?cursor=``, is as if absent)."""


class Outgoing(BaseModel):
    """A response body: exactly the fields documented."""

    model_config = ConfigDict(extra="forbid")


Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-12-01T19:20:02.123Z"])
]
SPEAKER_ID_RULE = (
    "speaker_id must be 1-128 characters of letters, digits and . _ : @ + -, "
    "starting with a letter or digit"
)


def check_speaker_id(speaker_id: str) -> str:
    """``speaker_id``, or :class:`InvalidRequest` saying what a speaker id is."""
    if re.fullmatch(SPEAKER_ID_PATTERN, speaker_id) is None:
        raise InvalidRequest(SPEAKER_ID_RULE)
    return speaker_id


def _speaker_id(value: str) -> str:
    if re.fullmatch(SPEAKER_ID_PATTERN, value) is None:
        raise ValueError(SPEAKER_ID_RULE)
    return value


def _stripped(value: str) -> str:
    if not value.strip():
        raise ValueError("names and aliases must not be blank")
    return value.strip()


# The pattern is checked by the validator (whose message says what an id is), and shown in
# the schema for clients.
SpeakerId = Annotated[
    str,
    AfterValidator(_speaker_id),
    Field(json_schema_extra={"pattern": SPEAKER_ID_PATTERN}, examples=["cust-42"]),
]
Text = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_stripped)]
Score = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
Cursor = Annotated[str, Field(pattern=r"^[0-9]*$", description="a next_cursor this route returned")]
MAX_ROW_ID = 2**63 - 1  # the largest id a row can have (a 64-bit signed key)


def after(cursor: str | None) -> int | None:
    """The row id a cursor reads after (an id past any row's is past them all)."""
    return min(int(cursor), MAX_ROW_ID) if cursor else None


def _moment(value: object) -> datetime:
    """An RFC 3339 time with its zone, as text: never a number (pydantic would read one as
    seconds since 1970)."""
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError("times are RFC 3339 with a zone, e.g. 2026-12-01T00:00:00Z")
    return moment


Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]


def _whole(value: object) -> object:
    """JSON's integers include 16.0; a bool is not one."""
    if isinstance(value, bool):
        raise ValueError("ttl_seconds must be an integer")
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _future(moment: datetime) -> datetime:
    if moment <= utcnow():
        raise ValueError("expires_at must be in the future")
    return moment


YES = ("1", "true", "True", "yes")
NO = ("", "0", "false", "False", "no")


def _flag(name: str) -> BeforeValidator:
    """A form field that says yes or no, in the ways the schema lists."""

    def parse(value: object) -> object:
        if value in NO or value is False:
            return False
        if value in YES or value is True:
            return True
        raise ValueError(f"{name} must be true or false")

    return BeforeValidator(parse)


Flag = Field(default=False, json_schema_extra={"type": "string", "enum": [*YES, *NO]})


# --- requests -------------------------------------------------------------------------------


class SpeakerCreate(Incoming):
    speaker_id: SpeakerId
    display_name: Text | None = Field(default=None, examples=["Ada"])
    aliases: list[Text] = Field(
        default_factory=list,
        max_length=MAX_ALIASES,
        description="phone numbers or other ids that name this speaker on a call",
        examples=[["+14255550123"]],
    )
    expires_at: Annotated[Moment, AfterValidator(_future)] | None = Field(
        default=None, description="when the voiceprint expires, RFC 3339 with a zone"
    )

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, aliases: list[str]) -> list[str]:
        return list(dict.fromkeys(aliases))


class SpeakerPageQuery(QueryParams):
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, description="a next_cursor this route returned")


class UploadFields(Incoming):
    """The form fields (or query parameters) beside the ``audio`` file. Raw PCM bodies give
    ``sample_rate`` and ``channels``; ``channel`` picks one channel of a multi-channel file
    (else the channels are mixed)."""

    sample_rate: int | None = Field(default=None, ge=1, description="raw PCM only")
    channels: int | None = Field(default=None, ge=1, description="raw PCM only")
    channel: int | None = Field(default=None, ge=0)


class EnrollmentFields(UploadFields):
    replace: Annotated[bool, _flag("replace"), Flag] = Field(
        description="start a new voiceprint instead of adding to it"
    )
    bulk: Annotated[bool, _flag("bulk"), Flag] = Field(
        description="bulk work: waits behind live and REST verifications"
    )


class VerifyFields(UploadFields):
    speaker_id: SpeakerId
    threshold: Score | None = Field(
        default=None, description="a decision threshold for this request, 0-100"
    )


class ClaimRequest(Incoming):
    model_config = ConfigDict(strict=True)

    speaker_id: SpeakerId
    threshold: Score | None = Field(default=None, examples=[50.0])

    @field_validator("threshold", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"threshold must be a number from 0 to 100, got {value!r}")
        return float(value) if isinstance(value, int) else value


class EnrollFromCallRequest(Incoming):
    speaker_id: SpeakerId


class CallTokenRequest(Incoming):
    model_config = ConfigDict(strict=True)

    role: Literal["enroll", "verify", "read", "stream"] = Field(
        default="verify",
        description="the token's role: any but admin and metrics, no wider than the key's",
    )
    ttl_seconds: Annotated[int, BeforeValidator(_whole)] = Field(
        default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS
    )


class VerdictsQuery(QueryParams):
    limit: int = Field(default=DEFAULT_VERDICTS, ge=1, le=MAX_VERDICTS)


class AuditFilter(QueryParams):
    subject: str | None = None
    action: str | None = Field(default=None, examples=["speaker.verify"])
    since: Moment | None = Field(default=None, description="inclusive, RFC 3339")
    until: Moment | None = Field(default=None, description="exclusive, RFC 3339")
    cursor: Cursor | None = None
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class DeadLetterFilter(QueryParams):
    url: str | None = None
    call_id: str | None = None
    delivered: Literal["true", "false"] | None = None
    cursor: Cursor | None = None
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


# --- responses ------------------------------------------------------------------------------


class Error(Outgoing):
    """Every error: a stable machine code and a sentence for a person."""

    error: str = Field(examples=["invalid_request"])
    detail: str = Field(examples=["speaker_id: Field required"])


class VoiceprintModel(Outgoing):
    source: str
    sha256: str


class ModelIdentity(Outgoing):
    source: str = Field(examples=["bundled:ecapa-distilled"])
    sha256: str
    name: str
    notice: str | None = None


class Speaker(Outgoing):
    speaker_id: str
    display_name: str | None
    aliases: list[str]
    status: SpeakerStatus
    enrolled_speech_seconds: float
    remaining_speech_seconds: float
    model: VoiceprintModel | None
    created_at: Timestamp
    updated_at: Timestamp
    last_accessed_at: Timestamp | None
    expires_at: Timestamp | None


class SpeakerPage(Outgoing):
    speakers: list[Speaker]
    next_cursor: str | None


class Enrollment(Outgoing):
    speaker_id: str
    status: SpeakerStatus
    enrolled_speech_seconds: float
    remaining_speech_seconds: float
    speech_seconds: float = Field(description="net speech this upload added")


class Quality(Outgoing):
    speech_seconds: float
    clipping_ratio: float
    snr_db: float | None
    issues: list[str]


class Verdict(Outgoing):
    verdict_id: str
    speaker_id: str | None
    decision: Decision
    score: float | None = Field(description="0-100, only for ACCEPT and REJECT")
    similarity: float | None
    normalized_score: float | None
    threshold: float | None
    calibrated: bool
    speech_seconds: float
    quality: Quality | None
    call_id: str | None
    participant_raw_id: str | None
    first_audio_at: Timestamp | None
    last_audio_at: Timestamp | None
    final: bool
    model: ModelIdentity
    detail: str | None
    created_at: Timestamp


class Claim(Outgoing):
    speaker_id: str
    threshold: float | None
    source: str


class EnrollmentProgress(Outgoing):
    speaker_id: str
    status: str
    enrolled_speech_seconds: float
    remaining_speech_seconds: float | None
    call_speech_seconds: float
    active: bool
    detail: str | None


class CallParticipant(Outgoing):
    participant_raw_id: str
    mixed: bool
    joined_at: Timestamp | None
    first_frame_at: Timestamp | None
    last_frame_at: Timestamp | None
    frames: int
    net_speech_seconds: float
    claim: Claim | None
    latest_verdict: Verdict | None
    enrollment: EnrollmentProgress | None


class Participant(CallParticipant):
    call_id: str
    call_status: CallStatus


class StreamFormat(Outgoing):
    encoding: str
    sample_rate: int
    channels: int
    frame_bytes: int
    mixed: bool | None


class Call(Outgoing):
    call_id: str
    correlation_id: str | None
    subscription_id: str | None
    status: CallStatus
    created_at: Timestamp
    started_at: Timestamp | None
    ended_at: Timestamp | None
    sockets: int
    counters: dict[str, int]
    audio_format: StreamFormat | None
    participants: list[CallParticipant]


class VerdictList(Outgoing):
    call_id: str
    participant_raw_id: str
    verdicts: list[Verdict]


class RecordingRequest(Incoming):
    model_config = ConfigDict(strict=True)

    enabled: bool = Field(description="record this call from now on, or stop recording it")


class AudioQuery(QueryParams):
    format: Literal["wav", "pcm"] = Field(
        default="wav", description="a 16 kHz WAV, or the PCM as received (s16le mono)"
    )


class RecordingChoice(Outgoing):
    call_id: str
    recording: bool = Field(description="whether this call is recorded")
    default: bool = Field(
        description="whether calls are recorded unless told (BIOMETRICS_RECORDINGS)"
    )


class CallToken(Outgoing):
    token: str = Field(examples=["bmc.eyJjYWxsIjoi…"])
    call_id: str
    role: Role
    expires_at: Timestamp


class AuditEntry(Outgoing):
    id: int
    at: Timestamp
    actor: str
    action: str
    subject: str | None
    call_id: str | None
    participant_raw_id: str | None
    outcome: str
    request_id: str | None
    source: str | None


class AuditPage(Outgoing):
    entries: list[AuditEntry]
    next_cursor: str | None


class DeadLetter(Outgoing):
    id: int
    url: str
    event_id: str
    event_type: str
    call_id: str
    event: dict[str, Any] = Field(description="the CloudEvent as it was sent")
    attempts: int
    reason: str
    last_status: int | None
    problem: str | None
    created_at: Timestamp
    retried_at: Timestamp | None
    delivered_at: Timestamp | None


class DeadLetterPage(Outgoing):
    dead_letters: list[DeadLetter]
    next_cursor: str | None


class RetryRefused(Outgoing):
    id: int
    error: str
    detail: str


class RetryReport(Outgoing):
    retried: list[DeadLetter]
    refused: list[RetryRefused]


class ServerSentEvent(BaseModel):
    """One event of a call's stream, as a client's parser sees it: ``data`` is a CloudEvent
    in JSON (the first message only sets the client's ``retry``)."""

    model_config = ConfigDict(extra="allow")

    event: str | None = Field(default=None, examples=["verdict.changed"])
    id: str | None = None
    data: str | None = None
    retry: int | None = None


class Health(Outgoing):
    status: Literal["ok"]


class Scoring(Outgoing):
    calibrated: bool
    normalization: str | None
    cohort_size: int | None
    default_threshold: float
    target_far: float | None


class SpoolCounts(Outgoing):
    pending: int
    written: int
    dropped: int


class InferenceCounters(Outgoing):
    batches: int
    mean_batch: float
    queued_pieces: int
    queued_seconds: float
    max_wait_ms: float
    refused: int


class Readiness(Outgoing):
    status: Literal["ready", "unavailable"]
    database: Literal["ok", "unreachable"]
    model: ModelIdentity
    scoring: Scoring
    auth: Literal["on", "off"]
    warnings: list[str] | None = None
    spool: SpoolCounts | None = None
    inference: InferenceCounters | None = None
    redis: Literal["ok", "unreachable"] | None = None
