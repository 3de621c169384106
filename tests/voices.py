"""Synthetic voices for tests that need speech but not a real speaker's.

A voice is a glottal pulse train (pitch with vibrato and drift) shaped by
formant resonators, cut into syllables and words with pauses between them.
Different pitch and formants make different voices. The speech detector hears
these as speech; only a trained model could tell them apart reliably.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile
from scipy.signal import lfilter

RATE = 16_000


def synthetic_speech(
    seconds: float,
    *,
    pitch_hz: float = 120.0,
    formants: tuple[float, ...] = (700.0, 1200.0, 2500.0),
    seed: int = 0,
    rate: int = RATE,
) -> np.ndarray:
    """About ``seconds`` of speech-like audio, roughly 80 % voiced, at ``rate`` Hz."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), dtype=np.float64)
    position = int(0.1 * rate)
    while position < len(out):
        syllables = rng.integers(2, 6)
        for _ in range(syllables):
            length = int(rng.uniform(0.12, 0.3) * rate)
            end = min(position + length, len(out))
            out[position:end] = _syllable(end - position, pitch_hz, formants, rng, rate)
            position = end + int(rng.uniform(0.0, 0.03) * rate)
            if position >= len(out):
                break
        position += int(rng.uniform(0.08, 0.25) * rate)
    return (0.3 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def _syllable(
    length: int, pitch_hz: float, formants: tuple[float, ...], rng: np.random.Generator, rate: int
) -> np.ndarray:
    t = np.arange(length) / rate
    pitch = pitch_hz * (1 + 0.05 * np.sin(2 * np.pi * 5 * t) + rng.uniform(-0.08, 0.08))
    phase = np.cumsum(pitch / rate)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    signal = pulses + 0.02 * rng.standard_normal(length)
    for formant in formants:
        centre = formant * rng.uniform(0.9, 1.1)
        radius = np.exp(-np.pi * 80.0 / rate)
        theta = 2 * np.pi * centre / rate
        signal = lfilter([1.0], [1.0, -2 * radius * np.cos(theta), radius**2], signal)
    envelope = np.sin(np.pi * np.linspace(0, 1, length)) ** 0.5
    return signal * envelope


def wav_bytes(samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def flac_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC")
    return buffer.getvalue()


def pcm_bytes(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
