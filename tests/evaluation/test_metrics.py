"""Detection metrics on score sets whose answers are known by hand or by theory."""

from __future__ import annotations

import numpy as np
import pytest

from biometrics.evaluation.metrics import (
    bootstrap_interval,
    eer,
    error_rates,
    frr_at_far,
    min_dcf,
)

TARGETS = np.array([0.6, 0.7, 0.8, 0.9])
NONTARGETS = np.array([0.1, 0.2, 0.3, 0.4])

# 99 non-targets far below every target and one above three of the four targets.
# Normalised DCF = FRR + (1 - P) / P * FAR. Accepting everything from 0.5 up costs
# FAR 1 % (FRR 0); the best threshold with FAR 0 (just above 0.75) costs FRR 3/4.
#   P = 0.01: min(99 * 0.01, 0.75) = 0.75        P = 0.05: min(19 * 0.01, 0.75) = 0.19
HAND_TARGETS = np.array([0.5, 0.6, 0.7, 0.8])
HAND_NONTARGETS = np.concatenate([np.zeros(99), [0.75]])


def eer_value(targets: np.ndarray, nontargets: np.ndarray) -> float:
    return eer(targets, nontargets)[0]


def test_perfect_separation_makes_no_errors() -> None:
    value, threshold = eer(TARGETS, NONTARGETS)
    assert value == 0.0
    assert NONTARGETS.max() < threshold <= TARGETS.min()
    assert min_dcf(TARGETS, NONTARGETS, p_target=0.01) == 0.0
    assert min_dcf(TARGETS, NONTARGETS, p_target=0.05) == 0.0
    assert frr_at_far(TARGETS, NONTARGETS, 0.01) == 0.0
    assert frr_at_far(TARGETS, NONTARGETS, 0.001) == 0.0


def test_fully_inverted_scores_are_always_wrong() -> None:
    """Every non-target above every target: the EER is exactly 1 (no threshold
    does better than rejecting all targets or accepting all non-targets), and so
    is the normalised minDCF (the trivial system's cost)."""
    assert eer_value(NONTARGETS, TARGETS) == 1.0
    assert min_dcf(NONTARGETS, TARGETS, p_target=0.01) == 1.0
    assert frr_at_far(NONTARGETS, TARGETS, 0.01) == 1.0


def test_error_rates_accept_at_or_above_the_threshold() -> None:
    rates = error_rates(np.array([0.5]), np.array([0.5]))
    assert list(rates.thresholds) == [0.5, np.inf]
    assert list(rates.frr) == [0.0, 1.0]
    assert list(rates.far) == [1.0, 0.0]
    with pytest.raises(ValueError):
        error_rates(np.array([]), NONTARGETS)


def test_min_dcf_on_a_hand_computed_example() -> None:
    assert min_dcf(HAND_TARGETS, HAND_NONTARGETS, p_target=0.01) == pytest.approx(0.75)
    assert min_dcf(HAND_TARGETS, HAND_NONTARGETS, p_target=0.05) == pytest.approx(0.19)


def test_frr_at_far_on_a_hand_computed_example() -> None:
    # FAR 1 % of 100 lets one non-target (0.75) pass: every target passes. FAR 0.1 %
    # lets none pass: three of four targets fall below the threshold above 0.75.
    assert frr_at_far(HAND_TARGETS, HAND_NONTARGETS, 0.01) == 0.0
    assert frr_at_far(HAND_TARGETS, HAND_NONTARGETS, 0.001) == 0.75


def test_eer_of_two_unit_gaussians_matches_theory() -> None:
    """N(2, 1) against N(0, 1) cross at 1: both error rates are Phi(-1) = 0.1587."""
    rng = np.random.default_rng(0)
    targets = rng.normal(2.0, 1.0, 20_000)
    nontargets = rng.normal(0.0, 1.0, 20_000)
    value, threshold = eer(targets, nontargets)
    assert value == pytest.approx(0.1587, abs=0.01)
    assert threshold == pytest.approx(1.0, abs=0.05)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_trials() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for size in (100, 2_000):
        targets = rng.normal(2.0, 1.0, size)
        nontargets = rng.normal(0.0, 1.0, size)
        low, high = bootstrap_interval(eer_value, targets, nontargets, repeats=100, seed=0)
        assert low <= eer_value(targets, nontargets) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
