"""biometrics.audio.buffers: a speech buffer never holds more than its capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from biometrics.audio.buffers import SpeechBuffer

T0 = datetime(2024, 11, 15, tzinfo=UTC)


def test_a_full_buffer_refuses_frames_and_keeps_its_times():
    buffer = SpeechBuffer(3)
    frames = [np.full(320, value, dtype=np.float32) for value in (0.1, 0.2, 0.3, 0.4)]
    kept = [
        buffer.append(frame, T0 + timedelta(milliseconds=20 * i), T0 + timedelta(seconds=1 + i))
        for i, frame in enumerate(frames)
    ]
    assert kept == [True, True, True, False]
    assert buffer.full and buffer.speech_seconds == pytest.approx(0.06)
    assert buffer.first_at == T0 and buffer.last_at == T0 + timedelta(seconds=3)
    speech = buffer.speech()
    assert len(speech) == 960 and speech[-1] == pytest.approx(0.3)
    speech[0] = 9.0  # a copy
    assert buffer.speech()[0] == pytest.approx(0.1)
    buffer.clear()
    assert buffer.frames == 0 and buffer.first_at is None and len(buffer.speech()) == 0
