"""Detection metrics over target and non-target trial scores.

Higher scores mean "same speaker". Conventions follow NIST SRE and VoxSRC:
minDCF with C_miss = C_fa = 1, normalised by the best trivial system.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from biometrics.scoring.thresholds import threshold_at_far

Scores = npt.NDArray[np.floating[Any]]  # trial scores (or LLRs) of any float precision


@dataclasses.dataclass(frozen=True)
class ErrorRates:
    """Miss (false reject) and false-accept rates at each candidate threshold."""

    thresholds: npt.NDArray[np.float64]  # ascending; accept when score >= threshold
    frr: npt.NDArray[np.float64]
    far: npt.NDArray[np.float64]


def error_rates(targets: Scores, nontargets: Scores) -> ErrorRates:
    if targets.size == 0 or nontargets.size == 0:
        raise ValueError("both target and non-target scores are needed")
    thresholds = np.unique(np.concatenate([targets, nontargets, [np.inf]]).astype(np.float64))
    sorted_targets = np.sort(targets.astype(np.float64))
    sorted_nontargets = np.sort(nontargets.astype(np.float64))
    frr = np.searchsorted(sorted_targets, thresholds, side="left") / targets.size
    far = 1.0 - np.searchsorted(sorted_nontargets, thresholds, side="left") / nontargets.size
    return ErrorRates(thresholds=thresholds, frr=frr, far=far)


def eer(targets: Scores, nontargets: Scores) -> tuple[float, float]:
    """Equal error rate and the threshold where FAR and FRR cross."""
    rates = error_rates(targets, nontargets)
    # The crossing lies between the last threshold with FAR > FRR and the next.
    index = int(np.argmax(rates.frr >= rates.far))
    if index == 0:
        return float(rates.frr[0] + rates.far[0]) / 2, float(rates.thresholds[0])
    before, after = index - 1, index
    gap_before = rates.far[before] - rates.frr[before]
    gap_after = rates.frr[after] - rates.far[after]
    weight = gap_before / (gap_before + gap_after) if gap_before + gap_after > 0 else 0.5
    value = (1 - weight) * (rates.far[before] + rates.frr[before]) / 2 + weight * (
        rates.far[after] + rates.frr[after]
    ) / 2
    return float(value), float(rates.thresholds[after])


def min_dcf(
    targets: Scores,
    nontargets: Scores,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    rates = error_rates(targets, nontargets)
    cost = c_miss * p_target * rates.frr + c_fa * (1 - p_target) * rates.far
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def frr_at_far(targets: Scores, nontargets: Scores, far: float) -> float:
    threshold = threshold_at_far(nontargets, far)
    return float(np.mean(targets < threshold))


def bootstrap_interval(
    statistic: Callable[[Scores, Scores], float],
    targets: Scores,
    nontargets: Scores,
    *,
    repeats: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval, resampling targets and non-targets apart."""
    rng = np.random.default_rng(seed)
    values = [
        statistic(
            rng.choice(targets, size=len(targets)), rng.choice(nontargets, size=len(nontargets))
        )
        for _ in range(repeats)
    ]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def cllr(target_llrs: Scores, nontarget_llrs: Scores) -> float:
    """The log-likelihood-ratio cost in bits: 0 is perfect, 1 is a system that
    always says "no idea"; what calibration errors add shows up here, not in EER."""
    miss = np.mean(np.logaddexp(0.0, -target_llrs.astype(np.float64)))
    false_alarm = np.mean(np.logaddexp(0.0, nontarget_llrs.astype(np.float64)))
    return float((miss + false_alarm) / (2 * np.log(2)))
