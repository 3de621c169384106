from __future__ import annotations

import numpy as np

from biometrics.audio import SAMPLE_RATE
from biometrics.training.data import Augmentation, CropSampler, Voice, augment, telephone
from tests.voices import synthetic_speech


def voices() -> list[Voice]:
    return [
        Voice(f"v{index}@1", synthetic_speech(4.0, pitch_hz=100 + 40 * index, seed=index))
        for index in range(3)
    ]


def test_a_step_always_gets_the_same_batch() -> None:
    sampler = CropSampler(voices(), 8, (2.0, 3.0), Augmentation(), seed=7)
    first, again = sampler.batch(5), sampler.batch(5)
    assert np.array_equal(first.augmented, again.augmented)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.clean, sampler.batch(6).clean[: len(first.clean)])
    assert not np.array_equal(first.clean, sampler.batch(5, stream=1).clean)


def test_crops_are_two_to_three_seconds_and_labelled() -> None:
    sampler = CropSampler(voices(), 8, (2.0, 3.0), Augmentation(), seed=0)
    for step in range(5):
        batch = sampler.batch(step)
        assert batch.clean.shape == batch.augmented.shape
        assert 2 * SAMPLE_RATE <= batch.clean.shape[1] <= 3 * SAMPLE_RATE
        assert set(batch.labels) <= {0, 1, 2}


def test_telephone_band_removes_energy_above_3400_hz() -> None:
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE)
    spectrum = np.abs(np.fft.rfft(telephone(noise))) ** 2
    frequencies = np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)
    inside = spectrum[(frequencies > 500) & (frequencies < 3000)].mean()
    outside = spectrum[frequencies > 4200].mean()
    assert outside < inside / 100


def test_augmentation_stays_in_range_and_changes_the_crop() -> None:
    crop = synthetic_speech(2.0)
    rng = np.random.default_rng(0)
    out = augment(crop, Augmentation(noise_probability=1.0, telephone_probability=1.0), rng)
    assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
    assert not np.allclose(out, crop)
