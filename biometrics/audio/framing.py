"""Audio in 20 ms frames, the unit of speech detection and of every speech count, and the
framer that turns a live stream's PCM (as ACS sends it) into them at 16 kHz.

A 24 kHz call is resampled by a stateful :class:`soxr.ResampleStream`, one per participant:
resampling each 20 ms frame on its own would restart the filter at every frame edge and
add a click 50 times a second. The resampler hands back bursts of uneven length, so the
samples are cut into whole 320-sample frames and the remainder is kept for the next call.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import soxr

from biometrics.audio.decode import SAMPLE_RATE

FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)


def frames_for(seconds: float) -> int:
    """Whole 20 ms frames in ``seconds``, rounded up (3 s is 150 frames, not 149)."""
    return max(1, math.ceil(round(seconds / FRAME_SECONDS, 6)))


class PcmFramer:
    """s16le mono PCM at ``sample_rate`` in, 16 kHz float32 frames of 320 samples out."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler = (
            None
            if sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        self._carry: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)  # under a frame

    def frames(self, pcm: bytes) -> list[npt.NDArray[np.float32]]:
        """The whole 20 ms frames completed by ``pcm`` (an even number of bytes)."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        if len(self._carry):
            samples = np.concatenate([self._carry, samples])
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        self._carry = samples[whole:].copy()
        return list(samples[:whole].reshape(-1, FRAME_SAMPLES))
