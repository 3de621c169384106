"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): the audio its uploads carry. Random bytes
alone would only ever test the refusal of garbage; a real WAV of speech-like sound, among
them, reaches speech detection, embedding and scoring too."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.api.helpers import speech_wav

WAV = speech_wav(3.0)

schemathesis.openapi.format("binary", st.one_of(st.just(WAV), st.binary(max_size=4096)))
