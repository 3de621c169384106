"""The hostile-input properties, each a strategy for its arguments and a check of one
generated case: the test suite runs each a fixed number of times (tests/hostile/test_*.py),
``scripts/fuzz.py`` for as long as it is given. One definition, so that a long run fuzzes
exactly what CI does.

A check returns when the service handled the case as documented and raises
``AssertionError`` otherwise (an unexpected exception is a failure too). Checks of the
``json`` and ``multipart`` targets take a test client of the application first.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from hypothesis import strategies as st

from biometrics.audio import AudioFormat as UploadFormat
from biometrics.audio import decode_audio
from biometrics.errors import InvalidAudio, InvalidRequest, PayloadTooLarge
from biometrics.streaming import (
    CLOSE_INVALID_DATA,
    CLOSE_POLICY_VIOLATION,
    AudioFrame,
    ProtocolViolation,
    StreamParser,
    encode_metadata,
)
from biometrics.streaming.protocol import MAX_REASON_BYTES, AudioFormat, encode_audio
from tests.voices import flac_bytes, synthetic_speech, wav_bytes

TARGETS = ("parser", "audio", "json", "multipart")


@dataclasses.dataclass(frozen=True)
class Property:
    name: str
    target: str  # one of TARGETS
    arguments: tuple[st.SearchStrategy[Any], ...]  # one strategy per argument of check
    check: Callable[..., None]
    ci_examples: int  # cases in each run of the test suite

    @property
    def needs_client(self) -> bool:
        return self.target in ("json", "multipart")


# --- ACS socket messages ----------------------------------------------------------------------

METADATA = encode_metadata(AudioFormat("sub", 16_000, 1, 640))
FIXED_CLOCK = datetime(2024, 11, 15, tzinfo=UTC)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Messages shaped like ACS's, with any field wrong: the likely way a real peer goes wrong.
audio_payloads = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": st.one_of(json_values, st.just("2024-11-15T19:16:12.925Z")),
        "participantRawID": st.one_of(json_values, st.just("8:acs:alice")),
        "data": st.one_of(json_values, st.binary(max_size=900).map(b64)),
        "silent": json_values,
    },
)
acs_like = st.one_of(
    st.builds(lambda p: {"kind": "AudioData", "audioData": p}, audio_payloads),
    st.builds(lambda p: {"kind": "AudioMetadata", "audioMetadata": p}, json_values),
    st.builds(lambda p: {"kind": "DtmfData", "dtmfData": p}, json_values),
    st.builds(lambda k, p: {"kind": k, **p}, json_values, st.dictionaries(st.text(), json_values)),
)
texts = st.one_of(acs_like.map(json.dumps), json_values.map(json.dumps), st.text(max_size=200))


def feed_all(parser: StreamParser, messages: list[str]) -> None:
    """Each message is a typed value or a counted drop, until one closes with 1007/1008 and a
    reason that fits a close frame; the drop counters add up."""
    for message in messages:
        frames_before = parser.counters["frames"]
        try:
            parsed = parser.feed_text(message)
        except ProtocolViolation as violation:
            assert violation.close_code in (CLOSE_INVALID_DATA, CLOSE_POLICY_VIOLATION)
            assert 0 < len(violation.reason.encode()) <= MAX_REASON_BYTES
            return
        assert parser.counters["frames"] == frames_before + 1
        if isinstance(parsed, AudioFrame):
            assert parsed.timestamp.tzinfo is not None
            assert len(parsed.pcm) % 2 == 0 and parsed.pcm
    counted = sum(v for k, v in parser.counters.items() if k.startswith("dropped_"))
    assert counted == parser.counters["dropped"]


def after_metadata(messages: list[str]) -> None:
    parser = StreamParser(clock=lambda: FIXED_CLOCK)
    parser.feed_text(METADATA)
    feed_all(parser, messages)


def as_first_message(messages: list[str]) -> None:
    feed_all(StreamParser(clock=lambda: FIXED_CLOCK), messages)


def encoder_round_trip(pcm: bytes, raw_id: str | None, silent: bool) -> None:
    frame = AudioFrame(FIXED_CLOCK, raw_id, pcm, silent)
    parser = StreamParser(clock=lambda: FIXED_CLOCK)
    parser.feed_text(METADATA)
    assert parser.feed_text(encode_audio(frame)) == frame


AFTER_METADATA = Property(
    "after the metadata", "parser", (st.lists(texts, max_size=8),), after_metadata, 3000
)
FIRST_MESSAGE = Property(
    "as the first message",
    "parser",
    (st.lists(texts, min_size=1, max_size=4),),
    as_first_message,
    1500,
)
ROUND_TRIP = Property(
    "encoder round trip",
    "parser",
    (
        st.binary(min_size=2, max_size=640).filter(lambda b: len(b) % 2 == 0),
        st.one_of(st.none(), st.text(min_size=1, max_size=64)),
        st.booleans(),
    ),
    encoder_round_trip,
    1000,
)

# --- audio uploads ----------------------------------------------------------------------------

VALID = [wav_bytes(synthetic_speech(0.3)), flac_bytes(synthetic_speech(0.3))]


def wav_header(channels: int, rate: int, bits: int, fmt: int, size: int) -> bytes:
    block = channels * bits // 8 % 65_536
    return (
        b"RIFF"
        + struct.pack("<I", (36 + size) % 2**32)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block % 2**32, block, bits)
        + b"data"
        + struct.pack("<I", size)
    )


headers = st.builds(
    wav_header,
    st.integers(0, 65_535),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 1, 7, 8, 12, 16, 24, 32, 64, 65_535]),
    st.sampled_from([0, 1, 2, 3, 6, 7, 0xFFFE, 0xFFFF]),
    st.integers(0, 2**32 - 1),
)
uploads = st.one_of(
    st.binary(max_size=2048),
    st.tuples(headers, st.binary(max_size=2048)).map(lambda parts: parts[0] + parts[1]),
    st.tuples(st.sampled_from(VALID), st.integers(0, 400), st.binary(max_size=64)).map(
        lambda parts: parts[0][: parts[1]] + parts[2] + parts[0][parts[1] + len(parts[2]) :]
    ),
)


def decodes_or_refuses(data: bytes, audio_format: UploadFormat) -> None:
    """16 kHz float32 in [-1, 1], or the typed error the API turns into a 4xx."""
    try:
        samples = decode_audio(data, audio_format, max_seconds=60.0)
    except (InvalidAudio, InvalidRequest, PayloadTooLarge) as refused:
        assert refused.detail
        return
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.all(np.isfinite(samples)) and np.max(np.abs(samples), initial=0.0) <= 1.0


def container_bytes(data: bytes, channel: int | None) -> None:
    try:
        audio_format = UploadFormat(channel=channel)
    except InvalidRequest as refused:
        assert channel is not None and channel < 0 and refused.detail
        return
    decodes_or_refuses(data, audio_format)


def raw_pcm(data: bytes, rate: int, channels: int) -> None:
    try:
        audio_format = UploadFormat(raw_pcm_rate=rate, raw_pcm_channels=channels)
    except (InvalidAudio, InvalidRequest) as refused:
        assert refused.detail
        return
    decodes_or_refuses(data, audio_format)


CONTAINERS = Property(
    "container bytes",
    "audio",
    (uploads, st.one_of(st.none(), st.integers(-2, 3))),
    container_bytes,
    2500,
)
RAW_PCM = Property(
    "raw PCM",
    "audio",
    (st.binary(max_size=4096), st.integers(-10, 200_000), st.integers(-1, 9)),
    raw_pcm,
    1000,
)

# --- request bodies ---------------------------------------------------------------------------

speaker_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "speaker_id": st.one_of(json_values, st.from_regex(r"[A-Za-z0-9][\w.:@+-]{0,130}")),
            "display_name": json_values,
            "aliases": st.one_of(json_values, st.lists(json_values, max_size=20)),
            "expires_at": st.one_of(json_values, st.just("2999-01-01T00:00:00Z")),
        },
    ),
)
claim_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"speaker_id": json_values, "threshold": json_values}),
)
verify_fields = st.dictionaries(
    st.sampled_from(["speaker_id", "threshold", "format", "sample_rate", "channels", "channel"]),
    st.text(max_size=12),
)
part_types = st.sampled_from(
    ["audio/wav", "audio/pcm", "application/octet-stream", "text/plain", ""]
)


def answered(response: Any) -> None:
    """A 2xx, or a 4xx with the JSON error body; never a 5xx."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"} and body["detail"]


def speaker_body(client: Any, body: object) -> None:
    answered(client.post("/v1/speakers", content=json.dumps(body)))


def claim_body(client: Any, body: object, raw_id: str) -> None:
    path = f"/v1/calls/fuzz/participants/{urllib.parse.quote(raw_id, safe='')}/claim"
    answered(client.put(path, content=json.dumps(body)))


def verify_form(client: Any, fields: dict[str, str], audio: bytes, content_type: str) -> None:
    answered(
        client.post("/v1/verify", data=fields, files={"audio": ("a.wav", audio, content_type)})
    )
    assert client.get("/healthz").status_code == 200


SPEAKER_BODY = Property("speaker body", "json", (speaker_bodies,), speaker_body, 700)
CLAIM_BODY = Property(
    "claim body", "json", (claim_bodies, st.text(min_size=1, max_size=40)), claim_body, 500
)
VERIFY_FORM = Property(
    "verify form",
    "multipart",
    (verify_fields, st.binary(max_size=1024), part_types),
    verify_form,
    500,
)

PROPERTIES = (
    AFTER_METADATA,
    FIRST_MESSAGE,
    ROUND_TRIP,
    CONTAINERS,
    RAW_PCM,
    SPEAKER_BODY,
    CLAIM_BODY,
    VERIFY_FORM,
)
