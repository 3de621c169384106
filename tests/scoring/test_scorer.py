import numpy as np
import pytest

from biometrics.scoring.calibration import Calibration, DurationModel
from biometrics.scoring.normalization import Cohort
from biometrics.scoring.scorer import UNCALIBRATED_THRESHOLD, Scorer

CALIBRATION = Calibration(
    slope=10.0, intercept=-3.0, normalized=False, thresholds={0.001: 90.0, 0.01: 70.0, 0.1: 20.0}
)
A = np.array([1.0, 0.0])
B = np.array([0.6, 0.8])


def test_without_calibration_the_score_is_cosine_and_says_so():
    scorer = Scorer()
    trial = scorer.score(A, B, 3.0)
    assert trial.similarity == pytest.approx(0.6)
    assert trial.score == 60.0
    assert trial.calibrated is False
    assert scorer.default_threshold == UNCALIBRATED_THRESHOLD
    assert scorer.describe()["calibrated"] is False


def test_calibration_sets_the_score_and_the_threshold_from_the_target_far():
    scorer = Scorer(calibration=CALIBRATION, target_far=0.01)
    trial = scorer.score(A, B, 3.0)
    assert trial.calibrated is True
    assert trial.score == pytest.approx(100 / (1 + np.exp(-3.0)), abs=0.01)
    assert scorer.default_threshold == 70.0
    assert Scorer(calibration=CALIBRATION, target_far=0.001).default_threshold == 90.0


def test_an_operator_threshold_wins():
    assert Scorer(calibration=CALIBRATION, fixed_threshold=55.0).default_threshold == 55.0


def test_a_normalised_calibration_needs_its_cohort():
    normalised = Calibration(1.0, 0.0, normalized=True, thresholds={0.01: 80.0})
    assert Scorer(calibration=normalised).usable_calibration is None
    rng = np.random.default_rng(0)
    cohort_vectors = rng.normal(size=(20, 2))
    cohort = Cohort(cohort_vectors / np.linalg.norm(cohort_vectors, axis=1, keepdims=True))
    scorer = Scorer(cohort=cohort, calibration=normalised)
    trial = scorer.score(A, B, 3.0)
    assert scorer.normalizing and trial.normalized is not None
    assert trial.score == pytest.approx(100 / (1 + np.exp(-trial.normalized)), abs=0.01)
    assert scorer.describe()["normalization"] == "as-norm"


def test_a_duration_model_reads_the_same_cosine_by_the_length_of_speech():
    # impostors centre at 0.1 and spread 0.1 at 3 s, twice as wide at 1.5 s and under
    duration = DurationModel(
        mean=(0.1, 0.0), log_spread=(np.log(0.1), -1.0), seconds_range=(1.5, 12.0)
    )
    aware = Calibration(1.0, -2.0, False, {0.01: 50.0}, duration)
    scorer = Scorer(calibration=aware)
    short, long = scorer.score(A, B, 1.0), scorer.score(A, B, 3.0)
    assert short.similarity == long.similarity
    # at 3 s: (0.6 - 0.1) / 0.1 = 5 -> llr 3; at 1.5 s (the bound): spread 0.2 -> 2.5 -> llr 0.5
    assert long.score == pytest.approx(100 / (1 + np.exp(-3.0)), abs=0.01)
    assert short.score == pytest.approx(100 / (1 + np.exp(-0.5)), abs=0.01)
