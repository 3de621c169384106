"""biometrics.streaming.protocol: every message shape ACS sends, and every bad input a peer
could send instead, each either dropped and counted or closing the socket with its code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from biometrics.streaming import (
    CLOSE_INVALID_DATA,
    CLOSE_POLICY_VIOLATION,
    AudioFormat,
    AudioFrame,
    DropReason,
    DtmfFrame,
    IgnoredFrame,
    ProtocolViolation,
    StreamParser,
    encode_audio,
    encode_dtmf,
    encode_metadata,
    format_timestamp,
)
from biometrics.streaming.protocol import MAX_CONSECUTIVE_BAD_FRAMES, MAX_REASON_BYTES

SUBSCRIPTION = "89e8cb59-1d1b-4c5a-9a53-0a0d0f7b3c11"
ALICE = "8:acs:3d20e1de-1111-2222-3333-444455556666_00000000-aaaa-bbbb-cccc-dddddddddddd"
PCM_20MS = bytes(range(256)) * 2 + bytes(128)  # 640 bytes
STAMP = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)
FORMAT = AudioFormat(SUBSCRIPTION, 16000, 1, 640)


def changed(message: str, **changes: Any) -> str:
    """An encoded message with fields of its payload replaced (``None`` included)."""
    decoded = json.loads(message)
    payload = next(value for key, value in decoded.items() if key != "kind")
    payload.update(changes)
    return json.dumps(decoded)


def without(message: str, field: str) -> str:
    decoded = json.loads(message)
    decoded["audioData"].pop(field)
    return json.dumps(decoded)


def metadata(**changes: Any) -> str:
    return changed(encode_metadata(FORMAT), **changes)


def audio(pcm: bytes = PCM_20MS, **changes: Any) -> str:
    return changed(encode_audio(AudioFrame(STAMP, ALICE, pcm, silent=False)), **changes)


def started(**changes: Any) -> StreamParser:
    parser = StreamParser()
    assert isinstance(parser.feed_text(metadata(**changes)), AudioFormat)
    return parser


def violation(parser: StreamParser, text: str | bytes) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as caught:
        if isinstance(text, bytes):
            parser.feed_binary(text)
        else:
            parser.feed_text(text)
    return caught.value


# --- Good messages ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["PCM", "pcm", "Pcm"])
@pytest.mark.parametrize(("rate", "length"), [(16000, 640), (24000, 960)])
def test_metadata_is_read_with_any_encoding_case(encoding: str, rate: int, length: int) -> None:
    parser = StreamParser()
    announced = parser.feed_text(metadata(encoding=encoding, sampleRate=rate, length=length))
    assert announced == AudioFormat(SUBSCRIPTION, rate, 1, length)
    assert parser.format == announced
    assert announced.frame_seconds == pytest.approx(0.02)
    assert parser.counters["metadata_frames"] == 1


def test_an_audio_frame_carries_its_participant_pcm_and_utc_timestamp() -> None:
    parser = started()
    frame = parser.feed_text(audio(silent=True))
    assert frame == AudioFrame(
        timestamp=datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC),
        participant_raw_id=ALICE,
        pcm=PCM_20MS,
        silent=True,
    )
    assert parser.counters["audio_frames"] == 1
    assert parser.counters["frames"] == 2


def test_frames_shorter_than_the_announced_length_are_accepted() -> None:
    frame = started().feed_text(audio(PCM_20MS[:320]))
    assert isinstance(frame, AudioFrame) and len(frame.pcm) == 320


@pytest.mark.parametrize("participant", [None, ""])
def test_mixed_audio_with_a_null_or_empty_participant(participant: str | None) -> None:
    frame = started().feed_text(audio(participantRawID=participant))
    assert isinstance(frame, AudioFrame) and frame.participant_raw_id is None


def test_mixed_audio_without_a_participant_field() -> None:
    frame = started().feed_text(without(audio(), "participantRawID"))
    assert isinstance(frame, AudioFrame) and frame.participant_raw_id is None


def test_a_missing_silent_flag_means_not_silent() -> None:
    frame = started().feed_text(without(audio(), "silent"))
    assert isinstance(frame, AudioFrame) and frame.silent is False


def test_unmixed_frames_of_several_participants_interleave() -> None:
    parser = started()
    bob = "4:+15551234567"
    frames = [parser.feed_text(audio(participantRawID=who)) for who in [ALICE, bob, ALICE]]
    assert [f.participant_raw_id for f in frames if isinstance(f, AudioFrame)] == [
        ALICE,
        bob,
        ALICE,
    ]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-11-15T19:16:12.925Z", datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)),
        ("2024-11-15T19:16:12.9250000Z", datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)),
        ("2024-11-15T19:16:12Z", datetime(2024, 11, 15, 19, 16, 12, tzinfo=UTC)),
        ("2024-11-15T21:16:12.925+02:00", datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)),
        ("2024-11-15T19:16:12.925", datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_parsed_as_utc(stamp: str, expected: datetime) -> None:
    frame = started().feed_text(audio(timestamp=stamp))
    assert isinstance(frame, AudioFrame)
    assert frame.timestamp == expected
    assert frame.timestamp.utcoffset() == timedelta(0)


def test_dtmf_is_passed_on_and_counted() -> None:
    parser = started()
    assert parser.feed_text(encode_dtmf(DtmfFrame("3", None, None))) == DtmfFrame("3", None, None)
    full = DtmfFrame("#", datetime(2024, 11, 15, 19, 16, 12, tzinfo=UTC), ALICE)
    assert parser.feed_text(encode_dtmf(full)) == full
    assert parser.counters["dtmf_frames"] == 2


def test_dtmf_and_unknown_kinds_may_come_before_the_metadata() -> None:
    parser = StreamParser()
    assert isinstance(parser.feed_text(encode_dtmf(DtmfFrame("1", None, None))), DtmfFrame)
    assert parser.feed_text('{"kind":"Hello"}') == IgnoredFrame("Hello")
    assert isinstance(parser.feed_text(metadata()), AudioFormat)


def test_unknown_kinds_are_counted_and_ignored() -> None:
    parser = started()
    assert parser.feed_text('{"kind":"TranscriptionData","transcriptionData":{}}') == (
        IgnoredFrame("TranscriptionData")
    )
    assert parser.feed_text(json.dumps({"kind": "x" * 1000})) == IgnoredFrame("x" * 64)
    assert parser.counters["ignored_kinds"] == 2
    assert parser.counters["dropped"] == 0


def test_a_repeated_identical_metadata_is_ignored() -> None:
    parser = started()
    assert parser.feed_text(metadata(encoding="pcm")) is None  # same format, other spelling
    assert parser.counters["metadata_frames"] == 2
    assert parser.counters["dropped"] == 0


# --- Writing: parse(encode(x)) == x ------------------------------------------------------------

FORMATS = [
    AudioFormat(SUBSCRIPTION, 16000, 1, 640),
    AudioFormat("sub-24k", 24000, 1, 960),
    AudioFormat("sub-24k-default-length", 24000, 1, 640),
    AudioFormat("ü-subscription", 16000, 1, 2),
    AudioFormat("", 16000, 1, 65_536),
]
FRAMES = [
    AudioFrame(STAMP, ALICE, PCM_20MS, silent=False),
    AudioFrame(STAMP, None, PCM_20MS[:2], silent=False),  # mixed, a final short frame
    AudioFrame(STAMP, "4:+14255550123", bytes(640), silent=True),
    AudioFrame(STAMP + timedelta(microseconds=1), "mixed", PCM_20MS, silent=False),
    AudioFrame(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "8:acs:ü/é", b"\xff\x7f", True),
]
TONES = [
    DtmfFrame("3", None, None),
    DtmfFrame("#", STAMP, ALICE),
    DtmfFrame("*", None, "4:+14255550123"),
    DtmfFrame("0", datetime(2030, 1, 1, tzinfo=UTC), None),
]


@pytest.mark.parametrize("announced", FORMATS)
def test_an_encoded_metadata_parses_to_the_same_format(announced: AudioFormat) -> None:
    assert StreamParser().feed_text(encode_metadata(announced)) == announced


@pytest.mark.parametrize("frame", FRAMES)
def test_an_encoded_audio_frame_parses_to_the_same_frame(frame: AudioFrame) -> None:
    parser = StreamParser()
    parser.feed_text(encode_metadata(FORMAT))
    assert parser.feed_text(encode_audio(frame)) == frame


@pytest.mark.parametrize("tone", TONES)
def test_an_encoded_dtmf_tone_parses_to_the_same_tone(tone: DtmfFrame) -> None:
    assert StreamParser().feed_text(encode_dtmf(tone)) == tone


def test_messages_are_written_as_acs_writes_them() -> None:
    assert json.loads(encode_metadata(FORMAT)) == {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": SUBSCRIPTION,
            "encoding": "PCM",
            "sampleRate": 16000,
            "channels": 1,
            "length": 640,
        },
    }
    written = json.loads(encode_audio(AudioFrame(STAMP, ALICE, b"\x01\x00", silent=False)))
    assert written == {
        "kind": "AudioData",
        "audioData": {
            "timestamp": "2024-11-15T19:16:12.925Z",
            "participantRawID": ALICE,
            "data": "AQA=",
            "silent": False,
        },
    }
    mixed = json.loads(encode_audio(AudioFrame(STAMP, None, b"\x01\x00", silent=False)))
    assert "participantRawID" not in mixed["audioData"]


@pytest.mark.parametrize(
    ("moment", "written"),
    [
        (STAMP, "2024-11-15T19:16:12.925Z"),
        (
            datetime(2024, 11, 15, 21, 16, 12, tzinfo=timezone(timedelta(hours=2))),
            "2024-11-15T19:16:12.000Z",
        ),
        (datetime(2024, 11, 15, 19, 16, 12, 925_000), "2024-11-15T19:16:12.925Z"),  # naive: UTC
        (datetime(2024, 11, 15, 19, 16, 12, 925_001, tzinfo=UTC), "2024-11-15T19:16:12.925001Z"),
    ],
)
def test_timestamps_are_written_in_utc_with_milliseconds(moment: datetime, written: str) -> None:
    assert format_timestamp(moment) == written


# --- What ACS may send that older parsers refused ---------------------------------------------


def test_a_24_khz_stream_announcing_the_16_khz_length_keeps_its_20_ms_frames() -> None:
    parser = started(sampleRate=24000, length=640)
    frame = parser.feed_text(audio(bytes(960)))
    assert isinstance(frame, AudioFrame) and len(frame.pcm) == 960
    assert parser.format is not None and parser.format.max_frame_bytes == 960
    assert parser.feed_text(audio(bytes(962))) is None  # beyond 20 ms: still too long
    assert parser.counters["dropped_over_length"] == 1


def test_a_longer_announced_length_is_the_limit() -> None:
    parser = started(length=1280)
    assert isinstance(parser.feed_text(audio(bytes(1280))), AudioFrame)
    assert parser.feed_text(audio(bytes(1282))) is None


@pytest.mark.parametrize(("rate", "size"), [(16000, 640), (24000, 960)])
@pytest.mark.parametrize("data", ["", None, "absent"])
def test_a_silent_frame_without_data_is_20_ms_of_silence(
    rate: int, size: int, data: str | None
) -> None:
    parser = started(sampleRate=rate, length=size)
    message = without(audio(), "data") if data == "absent" else audio(data=data)
    frame = parser.feed_text(changed(message, silent=True))
    assert frame == AudioFrame(STAMP, ALICE, bytes(size), silent=True)
    assert parser.counters["dropped"] == 0


def test_empty_data_that_is_not_silent_is_still_dropped() -> None:
    parser = started()
    assert parser.feed_text(audio(data="", silent=False)) is None
    assert parser.counters["dropped_empty_data"] == 1


def test_a_frame_without_timestamp_is_stamped_when_it_arrives() -> None:
    arrived = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    parser = StreamParser(clock=lambda: arrived)
    parser.feed_text(metadata())
    frame = parser.feed_text(without(audio(), "timestamp"))
    assert isinstance(frame, AudioFrame) and frame.timestamp == arrived
    stamped = parser.feed_text(audio())
    assert isinstance(stamped, AudioFrame) and stamped.timestamp == STAMP


def test_the_default_clock_stamps_now_in_utc() -> None:
    before = datetime.now(UTC)
    frame = started().feed_text(without(audio(), "timestamp"))
    assert isinstance(frame, AudioFrame)
    assert before <= frame.timestamp <= datetime.now(UTC)
    assert frame.timestamp.utcoffset() == timedelta(0)


def test_the_first_frame_naming_a_participant_makes_the_stream_unmixed() -> None:
    parser = started()
    assert parser.mixed is None
    parser.feed_text(audio())
    assert parser.mixed is False


@pytest.mark.parametrize(
    "unnamed",
    [
        without(audio(), "participantRawID"),
        audio(participantRawID=None),
        audio(participantRawID=""),
        changed(without(audio(), "participantRawID"), participantRawId=ALICE),  # wrong casing
    ],
    ids=["absent", "null", "empty", "participantRawId"],
)
def test_in_an_unmixed_stream_a_frame_naming_nobody_is_dropped(unnamed: str) -> None:
    parser = started()
    parser.feed_text(audio())
    assert parser.feed_text(unnamed) is None
    assert parser.counters["dropped_missing_participant"] == 1
    assert parser.counters["audio_frames"] == 1
    assert parser.mixed is False


@pytest.mark.parametrize(
    "unnamed",
    [
        without(audio(), "participantRawID"),
        audio(participantRawID=None),
        audio(participantRawID=""),
        changed(without(audio(), "participantRawID"), participantRawId=ALICE),
    ],
    ids=["absent", "null", "empty", "participantRawId"],
)
def test_a_first_frame_naming_nobody_makes_the_stream_mixed(unnamed: str) -> None:
    parser = started()
    frame = parser.feed_text(unnamed)
    assert isinstance(frame, AudioFrame) and frame.participant_raw_id is None
    assert parser.mixed is True
    assert parser.feed_text(audio()) is None  # a named frame is not merged into the mix
    assert parser.counters["dropped_unexpected_participant"] == 1


def test_a_participant_called_mixed_is_an_ordinary_participant() -> None:
    parser = started()
    frame = parser.feed_text(audio(participantRawID="mixed"))
    assert isinstance(frame, AudioFrame) and frame.participant_raw_id == "mixed"
    assert parser.mixed is False
    assert parser.feed_text(audio(participantRawID=None)) is None
    assert parser.counters["dropped_missing_participant"] == 1


def test_a_dropped_first_frame_does_not_fix_the_mode() -> None:
    parser = started()
    assert parser.feed_text(audio(participantRawID=None, data="%%%%")) is None
    assert parser.mixed is None
    assert isinstance(parser.feed_text(audio()), AudioFrame)
    assert parser.mixed is False


# --- Bad input that closes the socket -----------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        "not json",
        "",
        "[" * 100_000,  # nested past the recursion limit
        "[1, 2]",
        '{"audioMetadata": {}}',
        '{"kind": 7}',
        b"\x00\x01",
    ],
)
def test_an_unreadable_first_frame_closes_with_1007(first: str | bytes) -> None:
    assert violation(StreamParser(), first).close_code == CLOSE_INVALID_DATA


def test_audio_before_metadata_closes_with_1008() -> None:
    error = violation(StreamParser(), audio())
    assert error.close_code == CLOSE_POLICY_VIOLATION
    assert "before AudioMetadata" in error.reason


@pytest.mark.parametrize(
    "bad",
    [
        '{"kind": "AudioMetadata"}',
        '{"kind": "AudioMetadata", "audioMetadata": [1]}',
        metadata(subscriptionId=None),
        metadata(subscriptionId="s" * 1000),
        metadata(encoding=None),
        metadata(sampleRate="16000"),
        metadata(sampleRate=16000.0),
        metadata(channels=True),
        metadata(length=None),
    ],
)
def test_malformed_metadata_closes_with_1007(bad: str) -> None:
    assert violation(StreamParser(), bad).close_code == CLOSE_INVALID_DATA


@pytest.mark.parametrize(
    ("bad", "mentions"),
    [
        (metadata(encoding="OPUS"), "OPUS"),
        (metadata(encoding="mulaw"), "mulaw"),
        (metadata(sampleRate=8000), "8000"),
        (metadata(sampleRate=48000), "48000"),
        (metadata(channels=2), "channels"),
        (metadata(length=0), "length"),
        (metadata(length=641), "length"),
        (metadata(length=10_000_000), "length"),
    ],
)
def test_unsupported_settings_close_with_1008(bad: str, mentions: str) -> None:
    error = violation(StreamParser(), bad)
    assert error.close_code == CLOSE_POLICY_VIOLATION
    assert mentions in error.reason


@pytest.mark.parametrize(
    "second",
    [
        metadata(sampleRate=24000, length=960),
        metadata(length=320),
        metadata(subscriptionId="another-subscription"),
    ],
)
def test_a_second_metadata_that_changes_the_format_closes_with_1008(second: str) -> None:
    error = violation(started(), second)
    assert error.close_code == CLOSE_POLICY_VIOLATION
    assert "second AudioMetadata" in error.reason


def test_a_malformed_second_metadata_closes_with_1007() -> None:
    assert violation(started(), metadata(sampleRate="fast")).close_code == CLOSE_INVALID_DATA


# --- Bad frames that are dropped and counted ------------------------------------------------

DROPPED = [
    ("not json", DropReason.INVALID_JSON),
    ('{"kind": "AudioData", "audioData": ', DropReason.INVALID_JSON),
    ("[" * 100_000, DropReason.INVALID_JSON),
    ("[1, 2]", DropReason.INVALID_MESSAGE),
    ("null", DropReason.INVALID_MESSAGE),
    ('{"audioData": {}}', DropReason.INVALID_MESSAGE),
    ('{"kind": null}', DropReason.INVALID_MESSAGE),
    ('{"kind": "AudioData"}', DropReason.MISSING_FIELD),
    ('{"kind": "AudioData", "audioData": "AAAA"}', DropReason.MISSING_FIELD),
    (without(audio(), "data"), DropReason.MISSING_FIELD),
    (audio(timestamp="yesterday"), DropReason.INVALID_TIMESTAMP),
    (audio(timestamp=1731698172925), DropReason.INVALID_TIMESTAMP),
    (audio(timestamp="0001-01-01T00:00:00+01:00"), DropReason.INVALID_TIMESTAMP),
    (audio(participantRawID=42), DropReason.INVALID_PARTICIPANT),
    (audio(participantRawID={"rawId": ALICE}), DropReason.INVALID_PARTICIPANT),
    (audio(participantRawID="8:acs:" + "x" * 1000), DropReason.INVALID_PARTICIPANT),
    (audio(silent="false"), DropReason.INVALID_SILENT),
    (audio(silent=0), DropReason.INVALID_SILENT),
    (audio(data="not base64!"), DropReason.INVALID_BASE64),
    (audio(data="AAA"), DropReason.INVALID_BASE64),  # bad padding
    (audio(data="AA AA"), DropReason.INVALID_BASE64),
    (audio(data="ÀÀÀÀ"), DropReason.INVALID_BASE64),
    (audio(data=12), DropReason.INVALID_BASE64),
    (audio(data=""), DropReason.EMPTY_DATA),
    (audio(b"\x00\x01\x02"), DropReason.ODD_LENGTH),
    (audio(PCM_20MS + b"\x00\x00"), DropReason.OVER_LENGTH),
    (audio(bytes(64_000)), DropReason.OVER_LENGTH),
    ('{"kind": "DtmfData"}', DropReason.INVALID_DTMF),
    ('{"kind": "DtmfData", "dtmfData": {"data": 3}}', DropReason.INVALID_DTMF),
    ('{"kind": "DtmfData", "dtmfData": {"data": "3", "timestamp": "?"}}', DropReason.INVALID_DTMF),
]


@pytest.mark.parametrize(("bad", "reason"), DROPPED)
def test_a_bad_frame_after_metadata_is_dropped_and_counted(bad: str, reason: DropReason) -> None:
    parser = started()
    assert parser.feed_text(bad) is None
    assert parser.counters[f"dropped_{reason}"] == 1
    assert parser.counters["dropped"] == 1
    assert parser.counters["audio_frames"] == 0
    assert isinstance(parser.feed_text(audio()), AudioFrame)  # the stream goes on


def test_a_binary_frame_after_metadata_is_dropped_and_counted() -> None:
    parser = started()
    parser.feed_binary(PCM_20MS)
    assert parser.counters["dropped_binary_frame"] == 1
    assert parser.counters["frames"] == 2


def test_every_drop_reason_has_a_counter_from_the_start() -> None:
    counters = StreamParser().counters
    assert all(counters[f"dropped_{reason}"] == 0 for reason in DropReason)
    assert {"frames", "metadata_frames", "audio_frames", "dtmf_frames", "ignored_kinds"} <= set(
        counters
    )


# --- The consecutive-bad-frames limit -----------------------------------------------------


def test_too_many_bad_frames_in_a_row_close_with_1007() -> None:
    parser = started()
    for _ in range(MAX_CONSECUTIVE_BAD_FRAMES - 1):
        assert parser.feed_text(audio(data="%%%%")) is None
    error = violation(parser, "garbage")
    assert error.close_code == CLOSE_INVALID_DATA
    assert f"{MAX_CONSECUTIVE_BAD_FRAMES} bad frames in a row" in error.reason
    assert "invalid_json" in error.reason


def test_binary_frames_count_toward_the_limit() -> None:
    parser = StreamParser(max_consecutive_bad=3)
    parser.feed_text(metadata())
    parser.feed_binary(b"a")
    parser.feed_binary(b"b")
    assert violation(parser, b"c").close_code == CLOSE_INVALID_DATA


def test_a_good_frame_resets_the_run_of_bad_ones() -> None:
    parser = started()
    for _ in range(5):
        for _ in range(MAX_CONSECUTIVE_BAD_FRAMES - 1):
            parser.feed_text(audio(b"\x00"))
        assert isinstance(parser.feed_text(audio()), AudioFrame)
    assert parser.counters["dropped_odd_length"] == 5 * (MAX_CONSECUTIVE_BAD_FRAMES - 1)
    assert parser.counters["audio_frames"] == 5


# --- Close reasons ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        metadata(encoding="é" * 500),
        metadata(encoding="x" * 10_000),
        metadata(sampleRate=10**300),
    ],
)
def test_close_reasons_fit_a_close_frame(bad: str) -> None:
    error = violation(StreamParser(), bad)
    assert len(error.reason.encode("utf-8")) <= MAX_REASON_BYTES


def test_a_long_reason_is_cut_to_123_bytes_on_a_character_boundary() -> None:
    error = ProtocolViolation(CLOSE_POLICY_VIOLATION, "ü" * 200)
    encoded = error.reason.encode("utf-8")
    assert len(encoded) <= MAX_REASON_BYTES
    assert error.reason.endswith("...")
    assert error.close_code == CLOSE_POLICY_VIOLATION
