"""Audio quality signals: clipping and an SNR estimate, from the speech detector's
frame decisions. A verification on audio that fails the gate says why."""

from __future__ import annotations

import dataclasses

import numpy as np

from biometrics.audio.speech import FRAME_SAMPLES, SpeechSegments

CLIPPING_LEVEL = 0.99


@dataclasses.dataclass(frozen=True)
class Quality:
    speech_seconds: float
    clipping_ratio: float  # share of samples at full scale
    snr_db: float | None  # speech energy over the quietest frames' energy

    def issues(self, min_snr_db: float, max_clipping_ratio: float) -> list[str]:
        found = []
        if self.clipping_ratio > max_clipping_ratio:
            found.append("CLIPPING")
        if self.snr_db is not None and self.snr_db < min_snr_db:
            found.append("LOW_SNR")
        return found

    def as_dict(self) -> dict[str, float | None]:
        return {
            "speech_seconds": round(self.speech_seconds, 2),
            "clipping_ratio": round(self.clipping_ratio, 5),
            "snr_db": None if self.snr_db is None else round(self.snr_db, 1),
        }


def measure(segments: SpeechSegments) -> Quality:
    samples = segments.samples
    clipping = float(np.mean(np.abs(samples) >= CLIPPING_LEVEL)) if len(samples) else 0.0
    frames = len(segments.speech_mask)
    energy = np.mean(
        samples[: frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES).astype(np.float64) ** 2,
        axis=1,
    )
    speech = energy[segments.speech_mask]
    if len(speech) == 0:
        return Quality(segments.speech_seconds, clipping, None)
    # The noise floor: non-speech frames when there are enough, else the quietest tenth.
    pauses = energy[~segments.speech_mask]
    floor_frames = pauses if len(pauses) >= 10 else np.sort(energy)[: max(1, frames // 10)]
    noise = max(float(np.mean(floor_frames)), 1e-10)
    return Quality(segments.speech_seconds, clipping, float(10 * np.log10(np.mean(speech) / noise)))
