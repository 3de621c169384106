import numpy as np

from biometrics.audio import detect_speech
from biometrics.audio.quality import QualityMeter
from tests.voices import synthetic_speech


def quality_of(samples):
    return detect_speech(samples).quality


def test_clean_speech_passes_the_gate():
    quality = quality_of(synthetic_speech(4.0))
    assert quality.clipping_ratio == 0.0
    assert quality.snr_db > 20
    assert quality.gate(min_snr_db=3.0, max_clipping_ratio=0.01).issues == ()


def test_noise_lowers_the_snr_estimate():
    speech = synthetic_speech(4.0)
    noisy = speech + np.random.default_rng(0).normal(0, 0.1, len(speech)).astype(np.float32)
    assert quality_of(noisy).snr_db < quality_of(speech).snr_db - 10


def test_clipping_is_measured_and_flagged():
    clipped = np.clip(synthetic_speech(4.0) * 20, -1, 1)
    quality = quality_of(clipped)
    assert quality.clipping_ratio > 0.05
    assert quality.gate(min_snr_db=3.0, max_clipping_ratio=0.01).issues == ("CLIPPING",)


def test_silence_has_no_snr():
    assert quality_of(np.zeros(32_000, dtype=np.float32)).snr_db is None


def test_the_noise_floor_is_the_pauses_once_there_are_enough_of_them():
    meter = QualityMeter()
    speech = np.full(320, 0.1, dtype=np.float32)
    pause = np.full(320, 0.001, dtype=np.float32)
    for _ in range(20):
        meter.add(speech, True)
    for _ in range(12):
        meter.add(pause, False)
    quality = meter.measure()
    assert quality.speech_seconds == 0.4
    assert abs(quality.snr_db - 40.0) < 1e-6


def test_a_low_snr_fails_the_gate_with_its_reason():
    meter = QualityMeter()
    for _ in range(20):
        meter.add(np.full(320, 0.01, dtype=np.float32), True)
        meter.add(np.full(320, 0.009, dtype=np.float32), False)
    quality = meter.measure().gate(min_snr_db=3.0, max_clipping_ratio=0.01)
    assert quality.snr_db < 3.0 and quality.issues == ("LOW_SNR",)
