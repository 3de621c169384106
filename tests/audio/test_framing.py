"""biometrics.audio.framing: PCM at 16 or 24 kHz into whole 20 ms frames at 16 kHz, with
one resampler per stream rather than one per frame."""

from __future__ import annotations

import numpy as np
import soxr

from biometrics.audio.framing import PcmFramer
from tests.voices import pcm_bytes, synthetic_speech


def test_16_khz_frames_pass_through_unchanged():
    samples = synthetic_speech(1.0, seed=1)
    pcm = pcm_bytes(samples)
    framer = PcmFramer(16_000)
    frames = [
        f for start in range(0, len(pcm), 640) for f in framer.frames(pcm[start : start + 640])
    ]
    assert len(frames) == 50 and all(len(f) == 320 for f in frames)
    assert np.allclose(np.concatenate(frames), np.frombuffer(pcm, "<i2") / 32768.0)


def test_partial_frames_are_carried_to_the_next_call():
    framer = PcmFramer(16_000)
    assert framer.frames(bytes(600)) == []
    assert len(framer.frames(bytes(100))) == 1  # 700 bytes: one frame, 60 carried


def test_24_khz_is_resampled_as_one_continuous_stream():
    samples = synthetic_speech(2.0, seed=2, rate=24_000)
    pcm = pcm_bytes(samples)
    framer = PcmFramer(24_000)
    frames = [
        f for start in range(0, len(pcm), 960) for f in framer.frames(pcm[start : start + 960])
    ]
    streamed = np.concatenate(frames)
    whole = soxr.resample(np.frombuffer(pcm, "<i2") / 32768.0, 24_000, 16_000)
    assert 95 <= len(frames) <= 100  # the resampler holds back a few ms
    # The stream's output is the one-shot resampling of the whole, delayed by nothing:
    # no restart (and no click) at frame edges.
    assert np.max(np.abs(streamed - whole[: len(streamed)])) < 1e-3
