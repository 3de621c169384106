import numpy as np

from biometrics.audio import SpeechDetector
from biometrics.audio.quality import measure
from tests.voices import synthetic_speech


def quality_of(samples):
    return measure(SpeechDetector().detect(samples))


def test_clean_speech_passes_the_gate():
    quality = quality_of(synthetic_speech(4.0))
    assert quality.clipping_ratio == 0.0
    assert quality.snr_db > 20
    assert quality.issues(min_snr_db=3.0, max_clipping_ratio=0.01) == []


def test_noise_lowers_the_snr_estimate():
    speech = synthetic_speech(4.0)
    noisy = speech + np.random.default_rng(0).normal(0, 0.1, len(speech)).astype(np.float32)
    assert quality_of(noisy).snr_db < quality_of(speech).snr_db - 10


def test_clipping_is_measured_and_flagged():
    clipped = np.clip(synthetic_speech(4.0) * 20, -1, 1)
    quality = quality_of(clipped)
    assert quality.clipping_ratio > 0.05
    assert "CLIPPING" in quality.issues(min_snr_db=3.0, max_clipping_ratio=0.01)


def test_silence_has_no_snr():
    assert quality_of(np.zeros(32_000, dtype=np.float32)).snr_db is None
