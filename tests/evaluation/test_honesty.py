"""The calibration honesty study: folds by speaker, intervals, the telephone line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from biometrics.audio import SAMPLE_RATE
from biometrics.evaluation import honesty
from biometrics.evaluation.protocol import SpeakerSpeech
from biometrics.scoring.calibration import Calibration


def synthetic_set(rng: np.random.Generator) -> honesty.TrialSet:
    """Six enrolled speakers and thirty impostor-only voices in 16 dimensions; tests
    lie near their speaker's direction, tighter on longer tests."""
    enrolled = [f"e{i}" for i in range(6)]
    voices = enrolled + [f"i{i}" for i in range(30)]
    directions = {v: rng.normal(size=16) for v in voices}
    unit = {v: d / np.linalg.norm(d) for v, d in directions.items()}
    speakers, seconds, tests = [], [], []
    for length in (2.0, 5.0):
        for voice in voices:
            for _ in range(4):
                noisy = unit[voice] + rng.normal(scale=0.6 / np.sqrt(length), size=16)
                tests.append(noisy / np.linalg.norm(noisy))
                speakers.append(voice)
                seconds.append(length)
    return honesty.TrialSet(
        enrolled=np.array(enrolled),
        voiceprints=np.stack([unit[s] for s in enrolled]).astype(np.float32),
        test_speakers=np.array(speakers),
        test_seconds=np.array(seconds),
        tests=np.stack(tests).astype(np.float32),
    )


def test_no_measured_trial_involves_a_speaker_the_calibration_was_fitted_on() -> None:
    trial_set = synthetic_set(np.random.default_rng(0))
    trials = trial_set.trials()
    folds = honesty.assign_folds(
        list(trial_set.enrolled), sorted(set(trials.test_speakers[trials.impostor_only])), 3, 0
    )
    seen: list[set[str]] = []

    def fit(fitting: honesty.Trials) -> Calibration:
        seen.append(set(fitting.enrolled) | set(fitting.test_speakers))
        return honesty.duration_aware_fit(fitting)

    held_out = honesty.cross_validate(trials, folds, fit, (0.01,))
    assert len(seen) == 3
    for fold, fitted_speakers in enumerate(seen):
        measured = {s for s, f in folds.items() if f == fold}
        assert not measured & fitted_speakers
    # every fold measures some targets and some impostors of both kinds
    assert held_out.trials.is_target.any() and held_out.trials.impostor_only.any()
    rows = honesty.operating_rows(held_out, (0.01,))
    assert [row["test_seconds"] for row in rows] == [2.0, 5.0]
    assert all(row["far_trials"] > 0 and row["frr_trials"] > 0 for row in rows)


def test_wilson_intervals_hold_zero_errors_and_shrink_with_trials() -> None:
    low, high = honesty.wilson(0, 100)
    assert low == 0.0 and high == pytest.approx(0.037, abs=0.001)
    low, high = honesty.wilson(10, 1000)
    assert low == pytest.approx(0.0054, abs=0.0002) and high == pytest.approx(0.0183, abs=0.0002)
    assert np.subtract(*honesty.wilson(100, 10_000)[::-1]) < high - low


def test_the_telephone_line_keeps_the_length_and_cuts_the_wide_band() -> None:
    rng = np.random.default_rng(0)
    wide = (0.1 * rng.normal(size=SAMPLE_RATE)).astype(np.float32)
    narrow = honesty.telephone(wide)
    assert narrow.dtype == np.float32 and len(narrow) == len(wide)
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    frequencies = np.fft.rfftfreq(len(narrow), 1 / SAMPLE_RATE)
    assert spectrum[frequencies > 4_500].sum() < 1e-3 * spectrum[frequencies < 3_500].sum()
    # the 8-bit mu-law code adds an error of its own, small against the signal
    band_limited = soxr.resample(soxr.resample(wide, SAMPLE_RATE, 8_000), 8_000, SAMPLE_RATE)
    error = np.sqrt(np.mean((narrow - band_limited) ** 2) / np.mean(band_limited**2))
    assert 0.005 < error < 0.1


def test_impostor_crops_spread_over_the_speech_and_skip_short_voices() -> None:
    speech = [
        SpeakerSpeech("long", [np.arange(10 * SAMPLE_RATE, dtype=np.float32)]),
        SpeakerSpeech("short", [np.zeros(SAMPLE_RATE, dtype=np.float32)]),
    ]
    crops = honesty.impostor_crops(speech, 3.0, 3)
    assert [crop.speaker for crop in crops] == ["long"] * 3
    assert [int(crop.samples[0]) for crop in crops] == [0, 56_000, 112_000]
    assert all(len(crop.samples) == 3 * SAMPLE_RATE for crop in crops)


def test_a_trial_set_survives_its_cache(tmp_path: Path) -> None:
    trial_set = synthetic_set(np.random.default_rng(1))
    trial_set.save(tmp_path / "trials.npz")
    loaded = honesty.TrialSet.load(tmp_path / "trials.npz")
    np.testing.assert_array_equal(loaded.tests, trial_set.tests)
    assert list(loaded.test_speakers) == list(trial_set.test_speakers)
