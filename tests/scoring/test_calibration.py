import numpy as np
import pytest

from biometrics.scoring.calibration import FAR_GRID, fit


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
    assert calibration.score(0.35) == pytest.approx(50.0, abs=3.0)


def test_scores_are_0_to_100_and_increase_with_the_raw_score(gaussian_trials):
    calibration = fit(*gaussian_trials, normalized=False)
    scores = calibration.score(np.linspace(-1, 1, 101))
    assert np.all(np.diff(scores) > 0)
    assert scores.min() >= 0.0 and scores.max() <= 100.0


def test_thresholds_reproduce_their_false_accept_rates(gaussian_trials):
    targets, nontargets = gaussian_trials
    calibration = fit(targets, nontargets, normalized=False)
    calibrated_nontargets = calibration.score(nontargets)
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
