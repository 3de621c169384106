"""Training audio: speech-only recordings per speaker, speed-perturbed into more
voices, cut into random crops and augmented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr
from scipy.signal import butter, sosfilt

from biometrics.audio import SAMPLE_RATE, SpeechDetector, decode_audio
from biometrics.audio.decode import Samples
from biometrics.evaluation.protocol import find_speakers

# train-clean-5 speakers kept out of training (3 F, 3 M) to measure on.
HELD_OUT_SPEAKERS = ("19", "163", "1737", "2136", "4640", "8629")

_TELEPHONE_BAND = butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")


@dataclasses.dataclass(frozen=True)
class Voice:
    """One training class: a speaker at one speed (speed changes the voice too)."""

    label: str
    speech: Samples  # all of the speaker's speech, concatenated


def load_voices(
    folders: list[Path], exclude: set[str], speeds: tuple[float, ...], min_seconds: float = 2.0
) -> list[Voice]:
    """Every speaker in ``folders`` but the excluded ones, once per speed."""
    detector = SpeechDetector()
    speech: dict[str, list[Samples]] = {}
    for folder in folders:
        for speaker, paths in find_speakers(folder).items():
            if speaker in exclude:
                continue
            for path in paths:
                segments = detector.detect(decode_audio(path.read_bytes()))
                speech.setdefault(speaker, []).append(segments.speech())
    voices = []
    for speaker, pieces in sorted(speech.items()):
        joined = np.concatenate(pieces)
        if len(joined) < min_seconds * SAMPLE_RATE:
            continue
        for speed in speeds:
            changed = (
                joined if speed == 1.0 else soxr.resample(joined, SAMPLE_RATE * speed, SAMPLE_RATE)
            )
            voices.append(Voice(f"{speaker}@{speed:g}", np.asarray(changed, dtype=np.float32)))
    return voices


@dataclasses.dataclass(frozen=True)
class Batch:
    clean: npt.NDArray[np.float32]  # (batch, samples): what the teacher hears
    augmented: npt.NDArray[np.float32]  # what the student hears
    labels: npt.NDArray[np.int64]  # voice index of each crop


@dataclasses.dataclass(frozen=True)
class Augmentation:
    gain_db: float = 6.0
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    telephone_probability: float = 0.3


class CropSampler:
    """Random crops of random voices; the batch for a step depends only on the
    seed and the step, so a resumed run sees the same data it would have."""

    def __init__(
        self,
        voices: list[Voice],
        batch_size: int,
        crop_seconds: tuple[float, float],
        augmentation: Augmentation,
        seed: int,
    ) -> None:
        self.voices = voices
        self.batch_size = batch_size
        self.crop_seconds = crop_seconds
        self.augmentation = augmentation
        self.seed = seed

    def batch(self, step: int, stream: int = 0) -> Batch:
        """The crops for ``step``; other streams give batches independent of training's."""
        rng = np.random.default_rng([self.seed, stream, step])
        length = int(rng.uniform(*self.crop_seconds) * SAMPLE_RATE)
        labels = rng.integers(0, len(self.voices), self.batch_size)
        clean = np.stack([self._crop(self.voices[label].speech, length, rng) for label in labels])
        augmented = np.stack([augment(crop, self.augmentation, rng) for crop in clean])
        return Batch(clean=clean, augmented=augmented, labels=labels)

    @staticmethod
    def _crop(speech: Samples, length: int, rng: np.random.Generator) -> Samples:
        if len(speech) <= length:
            speech = np.tile(speech, length // len(speech) + 1)
        start = rng.integers(0, len(speech) - length + 1)
        return speech[start : start + length]


def augment(crop: Samples, settings: Augmentation, rng: np.random.Generator) -> Samples:
    out = crop.astype(np.float64)
    if rng.random() < settings.telephone_probability:
        out = telephone(out)
    if rng.random() < settings.noise_probability:
        snr = rng.uniform(*settings.snr_db)
        power = np.mean(out**2) + 1e-12
        out = out + rng.standard_normal(len(out)) * np.sqrt(power / 10 ** (snr / 10))
    out *= 10 ** (rng.uniform(-settings.gain_db, settings.gain_db) / 20)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def telephone(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Narrowband as on a phone line: a round trip through 8 kHz, 300-3400 Hz."""
    narrow = soxr.resample(samples, SAMPLE_RATE, 8_000)
    wide = soxr.resample(narrow, 8_000, SAMPLE_RATE)[: len(samples)]
    wide = np.pad(wide, (0, len(samples) - len(wide)))
    return sosfilt(_TELEPHONE_BAND, wide)
