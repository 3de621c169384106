"""The soak's voices: real speech (LibriSpeech's readers, or any folder of speaker folders),
each speaker's first recordings to enroll and the following ones as call audio."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biometrics import simulator
from biometrics.soak.options import SoakError

SAMPLE_RATE = 16_000
ENROLL_AUDIO_SECONDS = 30.0  # of audio per speaker; the service wants 20 s of net speech


@dataclasses.dataclass(frozen=True)
class Voice:
    speaker_id: str
    enrollment: tuple[Path, ...]
    call_audio: np.ndarray  # float32 at 16 kHz, ``call_seconds`` long, from other files


def speech_folder(path: Path) -> Path:
    """LibriSpeech's development readers when ``path`` holds them, else ``path`` itself."""
    dev = path / "test-other-dev"
    return dev if dev.is_dir() else path


def load_voices(path: Path, count: int, call_seconds: float) -> list[Voice]:
    """``count`` speakers (subfolders, in name order), each with its first recordings for
    enrollment and the following ones as call audio."""
    folder = speech_folder(path)
    if not folder.is_dir():
        raise SoakError(f"no speech at {path}: give --librispeech a folder of speakers")
    voices = []
    for speaker in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in speaker.iterdir() if f.suffix.lower() in (".flac", ".wav"))
        voice = _voice(f"soak-{speaker.name}", files, call_seconds)
        if voice is not None:
            voices.append(voice)
        if len(voices) == count:
            return voices
    raise SoakError(
        f"{folder} has {len(voices)} speaker(s) with {ENROLL_AUDIO_SECONDS:g} s of audio to "
        f"enroll and more for calls; the soak needs {count} (at least 2, for impostors)"
    )


def _voice(speaker_id: str, files: Sequence[Path], call_seconds: float) -> Voice | None:
    enrollment: list[Path] = []
    enrolled = 0.0
    rest: list[np.ndarray] = []
    for path in files:
        samples = simulator.load_samples(path, SAMPLE_RATE)
        if enrolled < ENROLL_AUDIO_SECONDS:
            enrollment.append(path)
            enrolled += len(samples) / SAMPLE_RATE
        else:
            rest.append(samples)
    if enrolled < ENROLL_AUDIO_SECONDS or not rest:
        return None
    audio = np.concatenate(rest)
    wanted = int(call_seconds * SAMPLE_RATE)
    audio = np.tile(audio, -(-wanted // len(audio)))[:wanted]  # repeated if short
    return Voice(speaker_id, tuple(enrollment), audio.astype(np.float32))
