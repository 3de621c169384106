"""biometrics.streaming.speech: the frame-by-frame speech filter finds exactly the speech
frames that the REST path's detector finds in the whole recording."""

from __future__ import annotations

import numpy as np

from biometrics.audio import SpeechDetector
from biometrics.audio.speech import FRAME_SAMPLES
from biometrics.streaming.speech import SpeechFilter
from tests.voices import synthetic_speech


def test_live_speech_frames_match_the_whole_recording_detector():
    samples = synthetic_speech(6.0, seed=3)
    whole = SpeechDetector().detect(samples)
    speech_filter = SpeechFilter(SpeechDetector())
    live = [
        kept
        for start in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
        for kept in speech_filter.push(samples[start : start + FRAME_SAMPLES])
    ]
    assert len(live) == int(whole.speech_mask.sum()) > 100
    assert np.array_equal(np.concatenate(live), whole.speech())


def test_silent_frames_skip_the_detector_and_long_pauses_are_not_bridged():
    class Always:
        def is_speech(self, frame):
            return True

    speech_filter = SpeechFilter(Always())  # type: ignore[arg-type]
    frame = np.ones(FRAME_SAMPLES, dtype=np.float32)
    assert len(speech_filter.push(frame)) == 1
    assert [len(speech_filter.push(frame, silent=True)) for _ in range(3)] == [0, 0, 0]
    assert len(speech_filter.push(frame)) == 4  # a 60 ms pause inside speech is speech
    for _ in range(4):
        speech_filter.push(frame, silent=True)
    assert len(speech_filter.push(frame)) == 1  # an 80 ms pause is not
