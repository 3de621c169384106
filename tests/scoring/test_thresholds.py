"""Thresholds at a false-accept rate, on non-target scores whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from biometrics.scoring.thresholds import threshold_at_far

# 99 non-targets at 0 and one at 0.75.
NONTARGETS = np.concatenate([np.zeros(99), [0.75]])


def far_at(threshold: float, nontargets: np.ndarray = NONTARGETS) -> float:
    """The share of non-targets accepted (scores at or above the threshold)."""
    return float(np.mean(nontargets >= threshold))


def test_a_far_that_lets_one_nontarget_pass_puts_the_threshold_just_above_the_rest() -> None:
    threshold = threshold_at_far(NONTARGETS, 0.01)
    assert threshold == pytest.approx(0.0, abs=1e-12)
    assert far_at(threshold) == 0.01


def test_a_far_below_one_nontarget_puts_the_threshold_above_every_nontarget() -> None:
    threshold = threshold_at_far(NONTARGETS, 0.001)
    assert threshold > 0.75
    assert far_at(threshold) == 0.0
    # ... and only just above: the lowest such threshold.
    assert threshold == np.nextafter(0.75, np.inf)


def test_a_far_of_one_accepts_every_nontarget() -> None:
    assert threshold_at_far(NONTARGETS, 1.0) == 0.0
    scores = np.array([0.3, 0.1, 0.2])
    assert far_at(threshold_at_far(scores, 1.0), scores) == 1.0
