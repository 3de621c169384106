"""Detection metrics over target and non-target trial scores.

Higher scores mean "same speaker". Conventions follow NIST SRE and VoxSRC:
minDCF with C_miss = C_fa = 1, normalised by the best trivial system.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from biometrics.scoring.thresholds import threshold_at_far


@dataclasses.dataclass(frozen=True)
class ErrorRates:
    """Miss (false reject) and false-accept rates at each candidate threshold."""

    thresholds: np.ndarray  # ascending; accept when score >= threshold
    frr: np.ndarray
    far: np.ndarray


def error_rates(targets: np.ndarray, nontargets: np.ndarray) -> ErrorRates:
    targets = np.asarray(targets, dtype=np.float64)
    nontargets = np.asarray(nontargets, dtype=np.float64)
    if targets.size == 0 or nontargets.size == 0:
        raise ValueError("both target and non-target scores are needed")
    thresholds = np.unique(np.concatenate([targets, nontargets, [np.inf]]))
    sorted_targets = np.sort(targets)
    sorted_nontargets = np.sort(nontargets)
    frr = np.searchsorted(sorted_targets, thresholds, side="left") / targets.size
    far = 1.0 - np.searchsorted(sorted_nontargets, thresholds, side="left") / nontargets.size
    return ErrorRates(thresholds=thresholds, frr=frr, far=far)


def eer(targets: np.ndarray, nontargets: np.ndarray) -> tuple[float, float]:
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
    targets: np.ndarray,
    nontargets: np.ndarray,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    rates = error_rates(targets, nontargets)
    cost = c_miss * p_target * rates.frr + c_fa * (1 - p_target) * rates.far
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def frr_at_far(targets: np.ndarray, nontargets: np.ndarray, far: float) -> float:
    threshold = threshold_at_far(nontargets, far)
    return float(np.mean(np.asarray(targets) < threshold))


def bootstrap_interval(
    statistic,
    targets: np.ndarray,
    nontargets: np.ndarray,
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


def cllr(target_llrs: np.ndarray, nontarget_llrs: np.ndarray) -> float:
    """The log-likelihood-ratio cost in bits: 0 is perfect, 1 is a system that
    always says "no idea"; what calibration errors add shows up here, not in EER."""
    miss = np.mean(np.logaddexp(0.0, -np.asarray(target_llrs, dtype=np.float64)))
    false_alarm = np.mean(np.logaddexp(0.0, np.asarray(nontarget_llrs, dtype=np.float64)))
    return float((miss + false_alarm) / (2 * np.log(2)))
