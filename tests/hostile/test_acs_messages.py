"""Hostile input on the ACS socket, generated: whatever a peer sends, the parser returns a
typed value, drops and counts the frame, or asks to close with 1007/1008 and a reason that
fits a close frame. Never another exception, never a counter out of step."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biometrics.streaming import (
    CLOSE_INVALID_DATA,
    CLOSE_POLICY_VIOLATION,
    AudioFrame,
    ProtocolViolation,
    StreamParser,
    encode_metadata,
)
from biometrics.streaming.protocol import MAX_REASON_BYTES, AudioFormat, encode_audio

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


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, max_size=8))
def test_anything_after_the_metadata_is_parsed_dropped_or_closes(messages: list[str]) -> None:
    parser = StreamParser(clock=lambda: FIXED_CLOCK)
    parser.feed_text(METADATA)
    feed_all(parser, messages)


@settings(max_examples=1500, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_anything_as_the_first_message_is_metadata_or_closes(messages: list[str]) -> None:
    feed_all(StreamParser(clock=lambda: FIXED_CLOCK), messages)


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(min_size=2, max_size=640).filter(lambda b: len(b) % 2 == 0),
    st.one_of(st.none(), st.text(min_size=1, max_size=64)),
    st.booleans(),
)
def test_every_frame_the_encoder_writes_parses_back_unchanged(
    pcm: bytes, raw_id: str | None, silent: bool
) -> None:
    frame = AudioFrame(FIXED_CLOCK, raw_id, pcm, silent)
    parser = StreamParser(clock=lambda: FIXED_CLOCK)
    parser.feed_text(METADATA)
    assert parser.feed_text(encode_audio(frame)) == frame
