"""Speech detection: which 20 ms frames hold speech, and how much net speech there is.

WebRTC's voice activity detector decides per frame; an energy floor keeps faint
line noise out, and short gaps inside speech are bridged so that a word is not
cut into pieces. Only speech counts toward any minimum and only speech is
embedded.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import webrtcvad

from biometrics.audio.decode import SAMPLE_RATE

FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)


@dataclasses.dataclass(frozen=True)
class SpeechSegments:
    samples: np.ndarray  # the input, 16 kHz mono float32
    speech_mask: np.ndarray  # one bool per 20 ms frame

    @property
    def speech_seconds(self) -> float:
        return float(self.speech_mask.sum()) * FRAME_SECONDS

    @property
    def total_seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def speech(self) -> np.ndarray:
        """The speech frames, concatenated."""
        frames = len(self.speech_mask)
        framed = self.samples[: frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES)
        return np.ascontiguousarray(framed[self.speech_mask].reshape(-1))


class SpeechDetector:
    """Frame-level speech detector; cheap enough to run on the event loop per frame."""

    def __init__(
        self, aggressiveness: int = 2, energy_floor_dbfs: float = -50.0, bridge_frames: int = 3
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._energy_floor = 10.0 ** (energy_floor_dbfs / 20.0)
        self._bridge_frames = bridge_frames

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one 20 ms frame of 16 kHz float32 samples."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"a frame is {FRAME_SAMPLES} samples, got {len(frame)}")
        if float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) < self._energy_floor:
            return False
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return self._vad.is_speech(pcm, SAMPLE_RATE)

    def detect(self, samples: np.ndarray) -> SpeechSegments:
        frames = len(samples) // FRAME_SAMPLES
        framed = samples[: frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES)
        mask = np.fromiter((self.is_speech(frame) for frame in framed), dtype=bool, count=frames)
        return SpeechSegments(samples=samples, speech_mask=self._bridge(mask))

    def _bridge(self, mask: np.ndarray) -> np.ndarray:
        """Mark as speech any run of at most ``bridge_frames`` silent frames between speech."""
        bridged = mask.copy()
        speech_at = np.flatnonzero(mask)
        for start, end in itertools.pairwise(speech_at):
            if 1 < end - start <= self._bridge_frames + 1:
                bridged[start + 1 : end] = True
        return bridged
