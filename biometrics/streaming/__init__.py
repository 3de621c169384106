"""Live calls: the ACS audio-streaming protocol (read and written), the call and its
participants, the registry of calls, and the WebSocket endpoint that feeds them. Streaming
decides *when* a participant is judged; the verification service decides the verdict."""

from biometrics.streaming.protocol import (
    CLOSE_INVALID_DATA,
    CLOSE_POLICY_VIOLATION,
    AudioFormat,
    AudioFrame,
    DropReason,
    DtmfFrame,
    IgnoredFrame,
    Message,
    ProtocolViolation,
    StreamParser,
    encode_audio,
    encode_dtmf,
    encode_metadata,
    format_timestamp,
)

__all__ = [
    "CLOSE_INVALID_DATA",
    "CLOSE_POLICY_VIOLATION",
    "AudioFormat",
    "AudioFrame",
    "DropReason",
    "DtmfFrame",
    "IgnoredFrame",
    "Message",
    "ProtocolViolation",
    "StreamParser",
    "encode_audio",
    "encode_dtmf",
    "encode_metadata",
    "format_timestamp",
]
