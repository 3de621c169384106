"""Speech detection: which 20 ms frames hold speech, and how much net speech there is.

WebRTC's voice activity detector decides per frame; an energy floor keeps faint
line noise out, and short gaps inside speech are bridged so that a word is not
cut into pieces. Only speech counts toward any minimum and only speech is
embedded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import webrtcvad

from biometrics.audio.decode import SAMPLE_RATE

FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)
# Pauses of up to 60 ms inside speech count as speech.
BRIDGE_FRAMES = 3


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


class SpeechBridge:
    """The bridging rule, frame by frame, so that a whole recording and a live stream
    apply it identically: a pause of at most ``bridge_frames`` between speech frames is
    speech; a longer one is not. A pause is only known to be short once speech resumes."""

    def __init__(self, bridge_frames: int = BRIDGE_FRAMES) -> None:
        self._limit = bridge_frames
        self._after_speech = False
        self.pending = 0  # silent frames since the last speech that may still be bridged

    def push(self, is_speech: bool) -> int:
        """How many frames end as speech with this one: 0, or the pending ones and this one."""
        if is_speech:
            released = self.pending + 1 if self._after_speech else 1
            self.pending = 0
            self._after_speech = True
            return released
        if self._after_speech and self.pending < self._limit:
            self.pending += 1
        else:
            self.pending = 0
            self._after_speech = False
        return 0


class SpeechDetector:
    """Frame-level speech detector; cheap enough to run on the event loop per frame."""

    def __init__(
        self,
        aggressiveness: int = 2,
        energy_floor_dbfs: float = -50.0,
        bridge_frames: int = BRIDGE_FRAMES,
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
        bridge = SpeechBridge(self._bridge_frames)
        bridged = np.zeros_like(mask)
        for index, is_speech in enumerate(mask):
            released = bridge.push(bool(is_speech))
            if released:
                bridged[index - released + 1 : index + 1] = True
        return bridged
