import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE, SpeechDetector
from biometrics.audio.speech import FRAME_SAMPLES
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
