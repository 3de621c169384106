"""The ACS audio-streaming WebSocket, ``/ws/acs``: owns the socket, knows no JSON field
names (:mod:`biometrics.streaming.protocol` parses) and keeps no call state
(:mod:`biometrics.streaming.call` does).

The socket's life: accept; check its credential, ACS's signed token or a ``stream`` API
key (close 1008 without one), and the key's quota of open sockets (close 1013 when it holds
them all, before any audio is read); wait up to ``metadata_timeout_seconds`` for
``AudioMetadata`` (close 1008 otherwise); name the call (``x-ms-call-connection-id``, else
``?call_id=``, else the subscription id), which must be a call token's own call (close 1008
otherwise); then feed every ``AudioData`` frame to the call until the peer closes, or until
it sends nothing for ``idle_timeout_seconds`` (close 1008). A message over
``max_message_bytes`` closes 1009; whatever the parser refuses closes with its code (1007
or 1008) and reason; anything unexpected closes 1011. However a socket ends, only its own
call is touched, the call ends (or waits for a reconnect) cleanly, and its key's quota is
given back. A socket that joined its call leaves two ``call.socket`` rows in the audit
trail: ``accepted``, then ``closed <code>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from biometrics.errors import Forbidden, TooManyCalls
from biometrics.logs import bind_log_context
from biometrics.metrics import Metrics
from biometrics.store.audit import ANONYMOUS, AuditLog, Origin
from biometrics.streaming.auth import (
    SocketGate,
    SocketQuota,
    Streamer,
    TooManySockets,
    Unauthorized,
)
from biometrics.streaming.call import CallSession
from biometrics.streaming.identity import SocketIdentity, call_id_problem, socket_identity
from biometrics.streaming.protocol import (
    CLOSE_POLICY_VIOLATION,
    AudioFormat,
    AudioFrame,
    ProtocolViolation,
    StreamParser,
)
from biometrics.streaming.registry import CallRegistry

logger = logging.getLogger(__name__)

SOCKET = "call.socket"  # the audit action of a socket that joined its call

CLOSE_NO_STATUS = 1005  # the peer's close frame named no code
CLOSE_ABNORMAL = 1006  # no close at all: the handler was cancelled (the server stopping)
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class _PeerGone(Exception):
    """The peer closed the socket (or the connection dropped), with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclasses.dataclass(frozen=True)
class StreamLimits:
    max_message_bytes: int  # close 1009 above (GA frames are about 1.5 KB)
    metadata_timeout_seconds: float  # close 1008 when no AudioMetadata came by then
    idle_timeout_seconds: float  # close 1008 when no message came for this long after it


class AcsStream:
    """The ``/ws/acs`` endpoint: :meth:`serve` runs once per socket."""

    def __init__(
        self,
        calls: CallRegistry,
        limits: StreamLimits,
        gate: SocketGate,
        quota: SocketQuota,
        audit: AuditLog,
        metrics: Metrics,
    ) -> None:
        self._calls = calls
        self._limits = limits
        self._gate = gate
        self._quota = quota
        self._audit = audit
        self._metrics = metrics

    async def serve(self, websocket: WebSocket) -> None:
        identity = socket_identity(websocket.headers, websocket.query_params)
        parser = StreamParser()
        streamer = Streamer(ANONYMOUS)
        await websocket.accept()
        if not self._gate.open:
            try:
                streamer = await run_in_threadpool(
                    self._gate.check, websocket.headers, websocket.query_params
                )
            except Unauthorized as refused:
                await self._refused(websocket, ANONYMOUS, identity.call_id, refused.code)
                await _close(
                    websocket, identity.call_id, CLOSE_POLICY_VIOLATION, refused.detail, parser
                )
                return
            except Exception:  # the key store failing in a way it could not tell apart
                logger.exception(
                    "call socket credential not checked", extra={"call_id": identity.call_id}
                )
                await _close(
                    websocket,
                    identity.call_id,
                    CLOSE_TRY_AGAIN_LATER,
                    "the credential could not be checked now; reconnect shortly",
                    parser,
                )
                return
            logger.info(
                "call socket authenticated",
                extra={"call_id": identity.call_id, "by": streamer.who},
            )
        who = streamer.who
        try:
            with (
                self._quota.hold(None if who == ANONYMOUS else who),
                self._metrics.socket(parser.counters),
            ):
                joined = await self._stream(websocket, identity, parser, streamer)
        except TooManySockets as refused:
            if self._quota.refusals.first(who):
                await self._refused(websocket, who, identity.call_id, refused.code)
            await _close(websocket, identity.call_id, CLOSE_TRY_AGAIN_LATER, refused.detail, parser)
            return
        if joined is not None:  # written once the key's quota has its socket back
            call_id, code = joined
            await self._record(websocket, who, call_id, f"closed {code}")

    async def _stream(
        self,
        websocket: WebSocket,
        identity: SocketIdentity,
        parser: StreamParser,
        streamer: Streamer,
    ) -> tuple[str, int] | None:
        """The authenticated socket, from its metadata to its close: the call it joined and
        the code it closed with, or None if it never joined one."""
        call: CallSession | None = None
        call_id = identity.call_id
        closed_with = CLOSE_ABNORMAL  # unless the socket ends by a close (it was cancelled)
        try:
            max_bytes = self._limits.max_message_bytes
            timeout = self._limits.metadata_timeout_seconds
            audio_format = await _read_metadata(websocket, parser, max_bytes, timeout)
            call_id = call_id or audio_format.subscription_id
            problem = call_id_problem(call_id)
            if problem is not None:
                raise ProtocolViolation(CLOSE_POLICY_VIOLATION, f"bad call id: {problem}")
            # Only now is the call id final (it may be the subscription id): every line
            # logged for this socket from here on names it, and a call token's socket is
            # held to its call, before any audio reaches a call.
            bind_log_context(call_id=call_id)
            if streamer.call_id not in (None, call_id):
                await self._refused(websocket, streamer.who, call_id, Forbidden.code)
                raise ProtocolViolation(
                    CLOSE_POLICY_VIOLATION,
                    f"this call token is bound to call {streamer.call_id!r}, not {call_id!r}",
                )
            try:
                call = await self._calls.connect(
                    call_id, identity.correlation_id, audio_format, parser.counters
                )
            except TooManyCalls as error:
                raise ProtocolViolation(CLOSE_TRY_AGAIN_LATER, error.detail) from None
            logger.info(
                "call socket open",
                extra={
                    "call_id": call_id,
                    "correlation_id": identity.correlation_id,
                    "sample_rate": audio_format.sample_rate,
                    "sockets": call.sockets,
                },
            )
            await self._record(websocket, streamer.who, call_id, "accepted")
            idle = self._limits.idle_timeout_seconds
            while True:
                try:
                    message = await asyncio.wait_for(websocket.receive(), idle)
                except TimeoutError:
                    # ACS sends a frame every 20 ms, silent ones included: a quiet socket is
                    # a stalled peer, and would otherwise hold its call open for ever.
                    raise ProtocolViolation(
                        CLOSE_POLICY_VIOLATION, f"no message for {idle:g} s"
                    ) from None
                parsed = _feed(parser, message, max_bytes)
                if isinstance(parsed, AudioFrame):
                    call.feed(parsed, audio_format.sample_rate)
        except _PeerGone as gone:
            closed_with = gone.code
        except ProtocolViolation as violation:
            closed_with = violation.close_code
            await _close(websocket, call_id, violation.close_code, violation.reason, parser)
        except Exception:
            logger.exception("call socket failed", extra={"call_id": call_id})
            closed_with = CLOSE_INTERNAL_ERROR
            await _close(
                websocket, call_id, CLOSE_INTERNAL_ERROR, "internal error; see the log", parser
            )
        finally:
            if call is not None:
                await self._calls.disconnect(call, parser.counters)
                logger.info(
                    "call socket closed",
                    extra={"call_id": call.call_id, "status": call.status, **parser.counters},
                )
        return None if call is None else (call.call_id, closed_with)

    async def _refused(
        self, websocket: WebSocket, actor: str, call_id: str | None, code: str
    ) -> None:
        origin = _origin(websocket, actor)
        subject = f"WS {websocket.url.path}"
        await run_in_threadpool(
            self._audit.record, origin, "auth.refused", subject, code, call_id=call_id
        )

    async def _record(self, websocket: WebSocket, who: str, call_id: str, outcome: str) -> None:
        """A ``call.socket`` row: the socket joined its call, or how it closed."""
        origin = _origin(websocket, who)
        await run_in_threadpool(
            self._audit.record, origin, SOCKET, call_id, outcome, call_id=call_id
        )


def _origin(websocket: WebSocket, actor: str) -> Origin:
    client = websocket.client
    request_id = websocket.scope.get("state", {}).get("request_id")
    return Origin(actor, request_id, None if client is None else client.host)


async def _read_metadata(
    websocket: WebSocket, parser: StreamParser, max_bytes: int, timeout: float
) -> AudioFormat:
    """Messages until the parser has the format; DtmfData and unknown kinds may come first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while parser.format is None:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(websocket.receive(), remaining)
        except TimeoutError:
            raise ProtocolViolation(
                CLOSE_POLICY_VIOLATION, f"no AudioMetadata within {timeout:g} s"
            ) from None
        _feed(parser, message, max_bytes)
    return parser.format


def _feed(parser: StreamParser, message: Message, max_bytes: int) -> object:
    """One ASGI WebSocket message into the parser; the parsed value, if any."""
    if message["type"] == "websocket.disconnect":
        raise _PeerGone(int(message.get("code", CLOSE_NO_STATUS)))
    text, data = message.get("text"), message.get("bytes")
    size = len(text) if text is not None else len(data or b"")  # characters: ACS sends ASCII
    if size > max_bytes:
        raise ProtocolViolation(
            CLOSE_MESSAGE_TOO_BIG, f"a message of {size} bytes exceeds the limit of {max_bytes}"
        )
    if text is not None:
        return parser.feed_text(text)
    parser.feed_binary(data or b"")
    return None


async def _close(
    websocket: WebSocket, call_id: str | None, code: int, reason: str, parser: StreamParser
) -> None:
    logger.warning(
        "closing call socket",
        extra={"call_id": call_id, "close_code": code, "reason": reason, **parser.counters},
    )
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await websocket.close(code, reason)
