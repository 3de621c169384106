"""Folders of synthetic speech in the layouts the evaluation reads (one subfolder
per speaker, and flat LibriSpeech file names), and the harness scripts run as an
operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest

from tests.voices import flac_bytes, synthetic_speech


class Voice(TypedDict):
    pitch_hz: float
    formants: tuple[float, ...]


VOICES: dict[str, Voice] = {
    "1001": {"pitch_hz": 110.0, "formants": (700.0, 1200.0, 2500.0)},
    "2002": {"pitch_hz": 210.0, "formants": (850.0, 1600.0, 2900.0)},
    "3003": {"pitch_hz": 160.0, "formants": (600.0, 1000.0, 2300.0)},
}
ROOT = Path(__file__).resolve().parents[2]
UTTERANCES = 5
UTTERANCE_SECONDS = 6.0
LAYOUTS = ("subfolders", "librispeech")


def write_speech_folder(root: Path, layout: str) -> Path:
    """Three speakers with five utterances each (about 5 s of net speech apiece)."""
    for number, (speaker, voice) in enumerate(VOICES.items()):
        for index in range(UTTERANCES):
            name = f"{speaker}-42-{index:04d}.flac"
            path = root / speaker / name if layout == "subfolders" else root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            audio = synthetic_speech(UTTERANCE_SECONDS, seed=10 * number + index, **voice)
            path.write_bytes(flac_bytes(audio))
    return root


@pytest.fixture(scope="session", params=LAYOUTS)
def speech_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speech_folder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="session")
def subfolder_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speech_folder(tmp_path_factory.mktemp("speakers"), "subfolders")


def run_script(name: str, *argv: str) -> str:
    """What ``scripts/<name>.py`` prints, run in a subprocess; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
