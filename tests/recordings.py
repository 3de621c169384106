"""Folders of recordings for bulk enrollment, and the service's record of a speaker."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile

from tests.conftest import bearer
from tests.voices import RATE, flac_bytes, synthetic_speech, wav_bytes

ALICE = {"pitch_hz": 120.0, "formants": (700.0, 1200.0, 2500.0)}
BOB = {"pitch_hz": 210.0, "formants": (850.0, 1600.0, 2900.0)}


def speech(voice: dict[str, Any], seed: int, seconds: float = 6.0) -> np.ndarray:
    return synthetic_speech(seconds, seed=seed, **voice)


def ogg_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="OGG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def two_speaker_folder(root: Path) -> Path:
    """alice: a WAV and a FLAC; bob: a WAV and an OGG; about 10 s of speech each."""
    write(root / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(root / "alice" / "2.flac", flac_bytes(speech(ALICE, seed=2)))
    write(root / "bob" / "1.wav", wav_bytes(speech(BOB, seed=3)))
    write(root / "bob" / "2.ogg", ogg_bytes(speech(BOB, seed=4)))
    return root


def key_headers() -> dict[str, str]:
    """The live_server fixture's admin key, from where the client commands look too."""
    return bearer(os.environ["BIOMETRICS_API_KEY"])


def server_speaker(url: str, speaker_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{url}/v1/speakers/{speaker_id}", headers=key_headers())
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def summary_row(summary: str, speaker_id: str) -> str:
    rows = [line for line in summary.splitlines() if line.split()[:1] == [speaker_id]]
    assert len(rows) == 1, summary
    return rows[0]
