"""Audio quality signals: clipping and an SNR estimate, measured frame by frame from the
speech detector's decisions, so that an upload and a live stream are measured alike.
A verification whose audio fails the gate says why (``issues``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from biometrics.audio.decode import SAMPLE_RATE
from biometrics.audio.framing import FRAME_SECONDS

CLIPPING_LEVEL = 0.99
# With fewer pauses than this the noise floor is the quietest tenth of all frames.
MIN_PAUSE_FRAMES = 10
_SILENCE_ENERGY = 1e-10


@dataclasses.dataclass(frozen=True)
class Quality:
    speech_seconds: float
    clipping_ratio: float  # share of samples at full scale
    snr_db: float | None  # speech energy over the noise floor's
    issues: tuple[str, ...] = ()  # what failed the gate: CLIPPING, LOW_SNR

    def gate(self, min_snr_db: float, max_clipping_ratio: float) -> Quality:
        """This measurement with the gate's verdict on it."""
        found = []
        if self.clipping_ratio > max_clipping_ratio:
            found.append("CLIPPING")
        if self.snr_db is not None and self.snr_db < min_snr_db:
            found.append("LOW_SNR")
        return dataclasses.replace(self, issues=tuple(found))

    def as_dict(self) -> dict[str, Any]:
        return {
            "speech_seconds": round(self.speech_seconds, 2),
            "clipping_ratio": round(self.clipping_ratio, 5),
            "snr_db": None if self.snr_db is None else round(self.snr_db, 1),
            "issues": list(self.issues),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Quality:
        return cls(
            speech_seconds=float(values["speech_seconds"]),
            clipping_ratio=float(values["clipping_ratio"]),
            snr_db=None if values.get("snr_db") is None else float(values["snr_db"]),
            issues=tuple(values.get("issues", ())),
        )


class QualityMeter:
    """Feed every 20 ms frame, in order, with the speech detector's decision on it.

    Memory stays bounded: once enough pauses are heard the noise floor is their mean,
    and the per-frame energies kept for the fallback are dropped.
    """

    def __init__(self) -> None:
        self._samples = 0
        self._clipped = 0
        self._speech_frames = 0
        self._speech_energy = 0.0
        self._pause_frames = 0
        self._pause_energy = 0.0
        self._energies: list[float] | None = []  # every frame's, until pauses suffice

    def add(self, frame: npt.NDArray[np.float32], is_speech: bool) -> None:
        """One frame of a live stream: runs on the event loop per 20 ms, so no arrays are
        made for it beyond one float64 copy."""
        samples = frame.astype(np.float64)
        energy = float(samples @ samples) / len(samples)
        clipped = int(np.count_nonzero(np.abs(frame) >= CLIPPING_LEVEL))
        if is_speech:
            self._count(len(frame), clipped, [energy], 1, energy, 0, 0.0)
        else:
            self._count(len(frame), clipped, [energy], 0, 0.0, 1, energy)

    def add_frames(self, frames: npt.NDArray[np.float32], is_speech: npt.NDArray[np.bool_]) -> None:
        """Frames in order, one row each: a whole recording at once, without a Python loop."""
        samples = frames.astype(np.float64)
        energies = np.einsum("ij,ij->i", samples, samples) / frames.shape[1]
        self._count(
            frames.size,
            int(np.count_nonzero(np.abs(frames) >= CLIPPING_LEVEL)),
            energies.tolist(),
            int(np.count_nonzero(is_speech)),
            float(energies[is_speech].sum()),
            int(np.count_nonzero(~is_speech)),
            float(energies[~is_speech].sum()),
        )

    def _count(
        self,
        samples: int,
        clipped: int,
        energies: list[float],
        speech_frames: int,
        speech_energy: float,
        pause_frames: int,
        pause_energy: float,
    ) -> None:
        self._samples += samples
        self._clipped += clipped
        self._speech_frames += speech_frames
        self._speech_energy += speech_energy
        self._pause_frames += pause_frames
        self._pause_energy += pause_energy
        if self._energies is not None:
            self._energies.extend(energies)
            if self._pause_frames >= MIN_PAUSE_FRAMES:
                self._energies = None

    @property
    def audio_seconds(self) -> float:
        return self._samples / SAMPLE_RATE

    def measure(self) -> Quality:
        speech_seconds = self._speech_frames * FRAME_SECONDS
        clipping = self._clipped / self._samples if self._samples else 0.0
        if self._speech_frames == 0:
            return Quality(speech_seconds, clipping, None)
        if self._energies is None:
            floor = self._pause_energy / self._pause_frames
        else:
            quietest = np.sort(np.asarray(self._energies))
            floor = float(np.mean(quietest[: max(1, len(quietest) // 10)]))
        noise = max(floor, _SILENCE_ENERGY)
        speech = self._speech_energy / self._speech_frames
        return Quality(speech_seconds, clipping, float(10 * np.log10(speech / noise)))
