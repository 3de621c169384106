import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE, SpeechDetector, detect_speech
from biometrics.audio.framing import FRAME_SAMPLES
from biometrics.audio.speech import SpeechFilter
from tests.conftest import LIBRISPEECH
from tests.voices import synthetic_speech


def test_silence_and_faint_noise_are_not_speech():
    detector = SpeechDetector()
    assert detector.detect(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)).speech_seconds == 0
    noise = np.random.default_rng(0).normal(0, 0.001, 3 * SAMPLE_RATE).astype(np.float32)
    assert detector.detect(noise).speech_seconds == 0


def test_pauses_do_not_count_as_speech():
    speech = synthetic_speech(4.0)
    padded = np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), speech])
    detector = SpeechDetector()
    alone, with_pause = detector.detect(speech), detector.detect(padded)
    assert 2.5 < alone.speech_seconds < 4.0
    assert with_pause.speech_seconds == pytest.approx(alone.speech_seconds, abs=0.1)
    assert with_pause.total_seconds == pytest.approx(7.0)


def test_speech_returns_only_the_speech_frames():
    segments = SpeechDetector().detect(synthetic_speech(3.0))
    assert len(segments.speech()) == int(segments.speech_mask.sum()) * FRAME_SAMPLES


def test_short_gaps_inside_speech_are_bridged():
    detector = SpeechDetector(bridge_frames=3)
    mask = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    assert detector._bridge(mask).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]


@pytest.mark.skipif(not LIBRISPEECH.is_dir(), reason="shared LibriSpeech excerpts absent")
def test_read_speech_is_mostly_speech():
    import soundfile

    path = sorted((LIBRISPEECH / "test-other-dev").glob("*/*.flac"))[0]
    samples, _ = soundfile.read(path, dtype="float32")
    segments = SpeechDetector().detect(samples)
    assert 0.6 * segments.total_seconds < segments.speech_seconds <= segments.total_seconds


def test_live_speech_frames_match_the_whole_recording_detector():
    samples = synthetic_speech(6.0, seed=3)
    whole = SpeechDetector().detect(samples)
    speech_filter = SpeechFilter(SpeechDetector())
    decided = [
        pair
        for start in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
        for pair in speech_filter.push(samples[start : start + FRAME_SAMPLES])
    ]
    live = [frame for frame, is_speech in decided if is_speech]
    assert len(live) == int(whole.speech_mask.sum()) > 100
    assert np.array_equal(np.concatenate(live), whole.speech())
    # Every frame is decided once, in order; only the bridge's last few may still wait.
    assert len(whole.speech_mask) - 3 <= len(decided) <= len(whole.speech_mask)
    mask = [is_speech for _, is_speech in decided]
    assert mask == list(whole.speech_mask[: len(mask)])


def test_silent_frames_skip_the_detector_and_long_pauses_are_not_bridged():
    class Always(SpeechDetector):
        def is_speech(self, frame):
            return True

    speech_filter = SpeechFilter(Always())
    frame = np.ones(FRAME_SAMPLES, dtype=np.float32)
    assert len(speech_filter.push(frame)) == 1
    assert [len(speech_filter.push(frame, silent=True)) for _ in range(3)] == [0, 0, 0]
    assert [s for _, s in speech_filter.push(frame)] == [True] * 4  # a 60 ms pause is speech
    for _ in range(4):
        speech_filter.push(frame, silent=True)
    assert [s for _, s in speech_filter.push(frame)] == [True]  # an 80 ms pause is not


def test_each_recording_gets_a_detector_of_its_own():
    """The VAD adapts to what it heard: a shared one would judge the same file differently
    after other uploads."""
    target = synthetic_speech(4.0, seed=5)
    first = detect_speech(target)
    for seed in range(3):
        noisy = synthetic_speech(3.0, seed=seed) + np.random.default_rng(seed).normal(
            0, 0.05, 3 * SAMPLE_RATE
        ).astype(np.float32)
        detect_speech(noisy)
    again = detect_speech(target)
    assert again.speech_seconds == first.speech_seconds
    assert np.array_equal(again.samples, first.samples)
    assert again.quality == first.quality
