"""A fixed-capacity store of speech frames: the memory a participant holds never grows with
the length of the call.

A decision needs at most the maximum decision speech (10 s by default: 640 KB of float32),
and an enrollment chunk the same; the array is allocated once at that size. Frames offered
once it is full are refused, and the caller counts them.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt

from biometrics.audio.framing import FRAME_SAMPLES, FRAME_SECONDS


class SpeechBuffer:
    def __init__(self, capacity_frames: int) -> None:
        if capacity_frames < 1:
            raise ValueError("a speech buffer holds at least one frame")
        self.capacity_frames = capacity_frames
        self._samples = np.zeros(capacity_frames * FRAME_SAMPLES, dtype=np.float32)
        self.frames = 0
        self.first_at: datetime | None = None  # the audio the frames came from
        self.last_at: datetime | None = None

    @property
    def full(self) -> bool:
        return self.frames >= self.capacity_frames

    @property
    def speech_seconds(self) -> float:
        return self.frames * FRAME_SECONDS

    def append(
        self, frame: npt.NDArray[np.float32], started_at: datetime, ended_at: datetime
    ) -> bool:
        """Keep one 20 ms frame heard between the two times; False (and nothing kept) if full."""
        if self.full:
            return False
        start = self.frames * FRAME_SAMPLES
        self._samples[start : start + FRAME_SAMPLES] = frame
        self.frames += 1
        if self.first_at is None:
            self.first_at = started_at
        self.last_at = ended_at
        return True

    def speech(self) -> npt.NDArray[np.float32]:
        """A copy of the frames so far, concatenated (safe to hand to another thread)."""
        return self._samples[: self.frames * FRAME_SAMPLES].copy()

    def clear(self) -> None:
        self.frames = 0
        self.first_at = self.last_at = None
