"""Live calls: the ACS audio-streaming protocol, read and written (and, beside it, the call
sessions and the WebSocket endpoint that use it)."""

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
