import json

import numpy as np
import pytest

from biometrics.scoring.calibration import (
    FAR_GRID,
    IDENTITY,
    CalibrationFormatError,
    fit,
    read_json,
    write_json,
)


@pytest.fixture(scope="module")
def gaussian_trials():
    rng = np.random.default_rng(0)
    return rng.normal(0.6, 0.1, 50_000), rng.normal(0.1, 0.1, 50_000)


def test_fit_recovers_the_true_log_likelihood_ratio(gaussian_trials):
    targets, nontargets = gaussian_trials
    calibration = fit(targets, nontargets, normalized=False)
    # Equal-variance Gaussians: llr(s) = (mu1 - mu0)/var * s - (mu1^2 - mu0^2)/(2 var)
    assert calibration.slope == pytest.approx(50.0, rel=0.05)
    assert calibration.intercept == pytest.approx(-17.5, rel=0.05)
    assert calibration.score(0.35, 3.0) == pytest.approx(50.0, abs=3.0)


def test_scores_are_0_to_100_and_increase_with_the_raw_score(gaussian_trials):
    calibration = fit(*gaussian_trials, normalized=False)
    scores = calibration.score(np.linspace(-1, 1, 101), 3.0)
    assert np.all(np.diff(scores) > 0)
    assert scores.min() >= 0.0 and scores.max() <= 100.0


def test_thresholds_reproduce_their_false_accept_rates(gaussian_trials):
    targets, nontargets = gaussian_trials
    calibration = fit(targets, nontargets, normalized=False)
    calibrated_nontargets = calibration.score(nontargets, 3.0)
    assert set(calibration.thresholds) == set(FAR_GRID)
    for far in (0.001, 0.01, 0.05):
        measured = np.mean(calibrated_nontargets >= calibration.threshold_for_far(far))
        assert measured == pytest.approx(far, abs=far * 0.2 + 1e-4)
    # between kept points the threshold is interpolated monotonically
    assert calibration.threshold_for_far(0.01) > calibration.threshold_for_far(0.015)
    assert calibration.threshold_for_far(0.015) > calibration.threshold_for_far(0.02)


def test_fit_needs_both_classes():
    with pytest.raises(ValueError):
        fit(np.array([0.5]), np.array([0.1, 0.2]), normalized=False)


def _trials_by_duration(rng, seconds, n):
    """Impostors spread wider on short tests (as real ones do), genuine callers score
    higher on long ones: a cosine threshold cannot hold one FAR across lengths."""
    spread = 0.1 * (seconds / 3.0) ** -0.5
    targets = rng.normal(0.5 + 0.05 * np.log(seconds), 0.1, n)
    nontargets = rng.normal(0.05, spread, n)
    return targets, nontargets


@pytest.fixture(scope="module")
def trials_by_duration():
    rng = np.random.default_rng(1)
    lengths = (2.0, 3.0, 5.0, 10.0)
    parts = [_trials_by_duration(rng, seconds, 20_000) for seconds in lengths]
    seconds = np.repeat(lengths, 20_000)
    targets = np.concatenate([t for t, _ in parts])
    nontargets = np.concatenate([n for _, n in parts])
    return targets, nontargets, seconds


def test_a_duration_aware_threshold_holds_its_far_at_every_length(trials_by_duration):
    targets, nontargets, seconds = trials_by_duration
    aware = fit(
        targets,
        nontargets,
        normalized=False,
        target_seconds=seconds,
        nontarget_seconds=seconds,
    )
    blind = fit(targets, nontargets, normalized=False)
    for far in (0.01, 0.001):
        aware_rates, blind_rates = [], []
        for length in (2.0, 3.0, 5.0, 10.0):
            chosen = nontargets[seconds == length]
            aware_scores = aware.score(chosen, length)
            aware_rates.append(np.mean(aware_scores >= aware.threshold_for_far(far)))
            blind_rates.append(np.mean(blind.score(chosen, length) >= blind.threshold_for_far(far)))
        assert max(aware_rates) < 1.5 * far and min(aware_rates) > far / 1.5
        # without the duration model the short tests take most of the false accepts
        assert blind_rates[0] > 3 * blind_rates[-1]


def test_the_slope_bound_keeps_the_even_odds_point_and_spreads_the_scores(gaussian_trials):
    targets, nontargets = gaussian_trials
    free = fit(targets, nontargets, normalized=False)
    bounded = fit(targets, nontargets, normalized=False, max_slope=10.0)
    assert bounded.slope == 10.0
    assert -bounded.intercept / bounded.slope == pytest.approx(-free.intercept / free.slope)
    genuine = bounded.score(targets, 3.0)
    assert np.mean(genuine > 99.9) < np.mean(free.score(targets, 3.0) > 99.9)


def test_a_ridge_penalty_lowers_the_slope(gaussian_trials):
    targets, nontargets = gaussian_trials
    free = fit(targets, nontargets, normalized=False)
    assert fit(targets, nontargets, normalized=False, penalty=1e-3).slope < free.slope


def test_files_round_trip_and_older_formats_still_read(trials_by_duration, tmp_path):
    targets, nontargets, seconds = trials_by_duration
    fitted = fit(
        targets, nontargets, normalized=False, target_seconds=seconds, nontarget_seconds=seconds
    )
    path = write_json(fitted, tmp_path / "calibration.json", fitted_on="synthetic")
    assert json.loads(path.read_text())["format"] == 2
    assert read_json(path) == fitted
    legacy = {"slope": 42.0, "intercept": -15.0, "normalized": False, "thresholds": {"0.01": 40}}
    path.write_text(json.dumps(legacy))
    old = read_json(path)
    assert old.duration == IDENTITY
    assert old.score(0.5, 2.0) == old.score(0.5, 10.0)


def test_an_unknown_format_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"format": 9, "slope": 1.0}))
    with pytest.raises(CalibrationFormatError, match="refit it"):
        read_json(path)


def test_a_duration_blind_calibration_file_is_plain_json(gaussian_trials, tmp_path):
    fitted = fit(*gaussian_trials, normalized=False)
    path = write_json(fitted, tmp_path / "calibration.json")
    body = json.loads(path.read_text())  # strict JSON: no Infinity
    assert body["duration"]["seconds_range"] == [0.0, None]
    assert read_json(path) == fitted
