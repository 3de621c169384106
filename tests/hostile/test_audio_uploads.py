"""Hostile audio, generated: whatever bytes an upload holds (broken WAV, FLAC and Ogg
headers, raw PCM), decoding returns 16 kHz float32 in [-1, 1] or raises the typed error the
API turns into a 4xx. Never another exception."""

from __future__ import annotations

from hypothesis import given, settings

from tests.hostile.properties import CONTAINERS, RAW_PCM


@settings(max_examples=CONTAINERS.ci_examples, deadline=None)
@given(*CONTAINERS.arguments)
def test_any_container_bytes_decode_or_are_refused(data: bytes, channel: int | None) -> None:
    CONTAINERS.check(data, channel)


@settings(max_examples=RAW_PCM.ci_examples, deadline=None)
@given(*RAW_PCM.arguments)
def test_any_raw_pcm_decodes_or_is_refused(data: bytes, rate: int, channels: int) -> None:
    RAW_PCM.check(data, rate, channels)
