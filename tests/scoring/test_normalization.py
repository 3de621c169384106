import numpy as np
import pytest

from biometrics.scoring.normalization import Cohort, as_norm


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_statistics_use_only_the_top_n_cohort_scores():
    cohort = Cohort(np.eye(4), top_n=2)
    vector = np.array([[0.8, 0.6, 0.0, 0.0]])
    mean, std = cohort.statistics(vector)
    assert mean[0] == pytest.approx(0.7)
    assert std[0] == pytest.approx(0.1)


def test_as_norm_is_the_mean_of_both_sides_z_scores():
    rng = np.random.default_rng(0)
    cohort = Cohort(unit_rows(rng.normal(size=(50, 8))), top_n=10)
    enroll = unit_rows(rng.normal(size=(2, 8)))
    tests = unit_rows(rng.normal(size=(3, 8)))
    scores = tests @ enroll.T
    normalised = as_norm(scores, enroll, tests, cohort)
    e_mean, e_std = cohort.statistics(enroll)
    t_mean, t_std = cohort.statistics(tests)
    expected = 0.5 * ((scores[1, 0] - e_mean[0]) / e_std[0] + (scores[1, 0] - t_mean[1]) / t_std[1])
    assert normalised.shape == (3, 2)
    assert normalised[1, 0] == pytest.approx(expected)


def test_as_norm_removes_a_speaker_offset_that_defeats_a_fixed_threshold():
    """A 'hub' voiceprint close to everyone gets high raw impostor scores; AS-norm
    brings its impostors back in line with other speakers'."""
    rng = np.random.default_rng(1)
    dim = 16
    common = unit_rows(rng.normal(size=(1, dim)))[0]
    cohort = Cohort(unit_rows(rng.normal(size=(200, dim)) + 1.5 * common), top_n=50)
    hub = common[None]
    plain = unit_rows(rng.normal(size=(1, dim)))
    impostors = unit_rows(rng.normal(size=(100, dim)) + 1.5 * common)
    enroll = np.concatenate([hub, plain])
    raw = impostors @ enroll.T
    normalised = as_norm(raw, enroll, impostors, cohort)
    raw_gap = abs(raw[:, 0].mean() - raw[:, 1].mean())
    normalised_gap = abs(normalised[:, 0].mean() - normalised[:, 1].mean())
    assert raw_gap > 0.3  # the hub would pass impostors at a threshold fit for others
    assert normalised_gap / normalised[:, 1].std() < 0.5 * raw_gap / raw[:, 1].std()


def test_a_cohort_needs_embeddings():
    with pytest.raises(ValueError):
        Cohort(np.zeros((1, 4)))
