"""Hostile audio, generated: whatever bytes an upload holds (broken WAV, FLAC and Ogg
headers, raw PCM), decoding returns 16 kHz float32 in [-1, 1] or raises the typed error the
API turns into a 4xx. Never another exception."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics.audio import AudioFormat, decode_audio
from biometrics.errors import InvalidAudio, InvalidRequest, PayloadTooLarge
from tests.voices import flac_bytes, synthetic_speech, wav_bytes

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


def assert_decodes_or_refuses(data: bytes, audio_format: AudioFormat) -> None:
    try:
        samples = decode_audio(data, audio_format, max_seconds=60.0)
    except (InvalidAudio, InvalidRequest, PayloadTooLarge) as refused:
        assert refused.detail
        return
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.all(np.isfinite(samples)) and np.max(np.abs(samples), initial=0.0) <= 1.0


@settings(max_examples=2500, deadline=None)
@given(uploads, st.one_of(st.none(), st.integers(-2, 3)))
def test_any_container_bytes_decode_or_are_refused(data: bytes, channel: int | None) -> None:
    try:
        audio_format = AudioFormat(channel=channel)
    except InvalidRequest as refused:
        assert channel is not None and channel < 0 and refused.detail
        return
    assert_decodes_or_refuses(data, audio_format)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=4096), st.integers(-10, 200_000), st.integers(-1, 9))
def test_any_raw_pcm_decodes_or_is_refused(data: bytes, rate: int, channels: int) -> None:
    try:
        audio_format = AudioFormat(raw_pcm_rate=rate, raw_pcm_channels=channels)
    except (InvalidAudio, InvalidRequest) as refused:
        assert refused.detail
        return
    assert_decodes_or_refuses(data, audio_format)
