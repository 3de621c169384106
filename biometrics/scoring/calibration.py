"""Calibration: from a raw (or normalised) score to a 0-100 score that means something.

Two steps. First, a duration model standardises the raw score by how impostors score
at that much speech: their centre and spread, each a straight line in the logarithm of
the test's speech seconds (a quality measure function in the sense of WeSpeaker's QMF).
Impostor scores move up with more speech, so a cosine threshold that lets 1 % of
impostors through at 3 s lets through about three times that at 10 s; after the
standardisation one threshold keeps about the same false-accept rate from 2 s to 10 s.
Second, a logistic map, fitted on development trials with both classes weighted
equally and its slope regularised and bounded, turns the standardised score into a
log-likelihood ratio. The 0-100 score is ``100 * sigmoid(llr)``: the probability, in
percent, that the speaker is the claimed one when a genuine caller and an impostor are
equally likely, pooled over the fitted test lengths. The default decision threshold
comes from the false-accept rate measured on the same trials.

A calibration fitted without durations (a format 1 file or stored row, from before
``biometrics calibrate`` fitted the duration model) has the identity duration model and
is the plain logistic map it always was.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from biometrics.scoring.thresholds import threshold_at_far

# False-accept rates at which thresholds are kept; others are interpolated.
FAR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

# Format 1: slope, intercept, normalized, thresholds. Format 2 adds the duration model.
FORMAT = 2
# The duration model's lines are in ln(seconds / REFERENCE_SECONDS), so their
# intercepts read as the impostor centre and log-spread at 3 s, a live call's first verdict.
REFERENCE_SECONDS = 3.0
# The impostor quantile the duration model's spread is read from, and its normal deviate.
TAIL = 0.99
TAIL_DEVIATES = 2.3263478740408408


class CalibrationFormatError(ValueError):
    """A calibration file this version cannot read."""


@dataclasses.dataclass(frozen=True)
class DurationModel:
    """Impostor scores' centre and spread by test length: ``centre = mean[0] + mean[1] *
    x`` and ``spread = exp(log_spread[0] + log_spread[1] * x)``, x = ln(seconds / 3),
    with seconds held inside the fitted range (the lines are not trusted beyond it)."""

    mean: tuple[float, float] = (0.0, 0.0)  # the centre's line (the median's)
    log_spread: tuple[float, float] = (0.0, 0.0)
    seconds_range: tuple[float, float] = (0.0, math.inf)

    def standardise(self, score: npt.ArrayLike, seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
        if self == IDENTITY:
            return np.asarray(score, dtype=np.float64)
        centre, spread = self.impostors_at(seconds)
        standardised: npt.NDArray[np.float64] = (
            np.asarray(score, dtype=np.float64) - centre
        ) / spread
        return standardised

    def impostors_at(
        self, seconds: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The impostor centre and spread the model expects at ``seconds`` of speech."""
        low, high = self.seconds_range
        x = np.log(np.clip(np.asarray(seconds, dtype=np.float64), low, high) / REFERENCE_SECONDS)
        centre = self.mean[0] + self.mean[1] * x
        spread = np.exp(self.log_spread[0] + self.log_spread[1] * x)
        return centre, spread


IDENTITY = DurationModel()


@dataclasses.dataclass(frozen=True)
class Calibration:
    slope: float
    intercept: float
    normalized: bool  # fitted on AS-normalised scores
    thresholds: dict[float, float]  # false-accept rate -> 0-100 threshold
    duration: DurationModel = IDENTITY

    def llr(self, score: npt.ArrayLike, seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The log-likelihood ratio of a raw score from ``seconds`` of test speech."""
        return self.slope * self.duration.standardise(score, seconds) + self.intercept

    def score(self, raw: npt.ArrayLike, seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The calibrated 0-100 score."""
        calibrated: npt.NDArray[np.float64] = 100.0 / (1.0 + np.exp(-self.llr(raw, seconds)))
        return calibrated

    def threshold_for_far(self, far: float) -> float:
        """The 0-100 threshold whose measured false-accept rate is ``far``
        (log-linear interpolation between the kept points)."""
        points = sorted(self.thresholds.items())
        rates = np.log([rate for rate, _ in points])
        values = [threshold for _, threshold in points]
        return float(np.interp(np.log(far), rates, values))


# A model folder may ship the calibration measured for it: the default until an
# operator fits one on their own calls (``biometrics calibrate``).
FOLDER_FILE = "calibration.json"


def to_body(calibration: Calibration) -> dict[str, Any]:
    """The calibration in its versioned form: a model folder's file, a stored row."""
    return {
        "format": FORMAT,
        "slope": calibration.slope,
        "intercept": calibration.intercept,
        "normalized": calibration.normalized,
        "duration": duration_body(calibration.duration),
        "thresholds": {str(far): value for far, value in calibration.thresholds.items()},
    }


def duration_body(duration: DurationModel) -> dict[str, Any]:
    return {
        "reference_seconds": REFERENCE_SECONDS,
        "mean": list(duration.mean),
        "log_spread": list(duration.log_spread),
        # JSON has no infinity: an unbounded end is written as null.
        "seconds_range": [None if math.isinf(end) else end for end in duration.seconds_range],
    }


def from_body(body: Mapping[str, Any], source: str) -> Calibration:
    """A calibration from its versioned form (format 1 has no duration model); ``source``
    names where it came from in the error a format this version cannot read raises."""
    version = body.get("format", 1)
    if version not in (1, FORMAT):
        raise CalibrationFormatError(
            f"{source}: calibration format {version!r} is not one this version reads (1 or "
            f"{FORMAT}); refit it with this version or upgrade the service"
        )
    duration = IDENTITY
    if version == FORMAT:
        model = body["duration"]
        if float(model["reference_seconds"]) != REFERENCE_SECONDS:
            raise CalibrationFormatError(
                f"{source}: duration model referenced to {model['reference_seconds']} s, "
                f"this version expects {REFERENCE_SECONDS:g} s; refit it"
            )
        duration = DurationModel(
            mean=(float(model["mean"][0]), float(model["mean"][1])),
            log_spread=(float(model["log_spread"][0]), float(model["log_spread"][1])),
            seconds_range=(
                float(model["seconds_range"][0] or 0.0),
                math.inf if model["seconds_range"][1] is None else float(model["seconds_range"][1]),
            ),
        )
    return Calibration(
        slope=float(body["slope"]),
        intercept=float(body["intercept"]),
        normalized=bool(body["normalized"]),
        thresholds={float(far): float(value) for far, value in body["thresholds"].items()},
        duration=duration,
    )


def write_json(calibration: Calibration, path: Path, **provenance: object) -> Path:
    body = {**to_body(calibration), **provenance}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> Calibration:
    return from_body(json.loads(path.read_text(encoding="utf-8")), str(path))


def fit_duration_model(nontargets: np.ndarray, seconds: np.ndarray) -> DurationModel:
    """Least-squares lines through the impostor centre and log spread at each test
    length; needs impostor trials at two lengths or more.

    The centre is the median and the spread is read off the upper tail, where the
    operating thresholds lie: (99th percentile - median) / 2.326, a standard deviation
    were the scores normal. The tail is what a false-accept rate counts, and it does
    not widen with the length as the bulk does (a mean-and-deviation model left the
    10 s tests at half the target rate, docs/accuracy.md).
    """
    lengths = np.unique(seconds)
    if len(lengths) < 2:
        raise ValueError("a duration model needs non-target trials at two test lengths or more")
    x = np.log(lengths / REFERENCE_SECONDS)
    means = [np.median(nontargets[seconds == length]) for length in lengths]
    log_spreads = [
        np.log((np.quantile(nontargets[seconds == length], TAIL) - centre) / TAIL_DEVIATES)
        for length, centre in zip(lengths, means, strict=True)
    ]
    mean_slope, mean_intercept = np.polyfit(x, means, 1)
    spread_slope, spread_intercept = np.polyfit(x, log_spreads, 1)
    return DurationModel(
        mean=(float(mean_intercept), float(mean_slope)),
        log_spread=(float(spread_intercept), float(spread_slope)),
        seconds_range=(float(lengths.min()), float(lengths.max())),
    )


def fit(
    targets: np.ndarray,
    nontargets: np.ndarray,
    *,
    normalized: bool,
    target_seconds: np.ndarray | None = None,
    nontarget_seconds: np.ndarray | None = None,
    penalty: float = 0.0,
    max_slope: float = math.inf,
) -> Calibration:
    """Fit the logistic map by Newton's method, each class carrying half the weight.

    With the test lengths of the trials, the duration model is fitted first and the
    map is fitted on standardised scores. ``penalty`` is a ridge penalty on the slope
    of the standardised feature (in units of the weighted log loss) and ``max_slope``
    a bound on the slope of the standardised score: well separated trials otherwise
    drive the slope up until every score is 0 or 100, which tells a reader nothing
    between the extremes and is overconfident on any other data.
    """
    targets = np.asarray(targets, dtype=np.float64)
    nontargets = np.asarray(nontargets, dtype=np.float64)
    if len(targets) < 2 or len(nontargets) < 2:
        raise ValueError("calibration needs at least two target and two non-target trials")
    duration = IDENTITY
    if target_seconds is not None and nontarget_seconds is not None:
        duration = fit_duration_model(nontargets, np.asarray(nontarget_seconds))
        targets = duration.standardise(targets, target_seconds)
        nontargets = duration.standardise(nontargets, nontarget_seconds)
    slope, intercept = _logistic(targets, nontargets, penalty)
    if slope > max_slope:
        # Keep the bounded line through the fitted one's even-odds point.
        slope, intercept = max_slope, intercept * max_slope / slope
    # Thresholds on the already standardised scores: the map alone, any length.
    provisional = Calibration(float(slope), float(intercept), normalized, {}, IDENTITY)
    calibrated_nontargets = provisional.score(nontargets, REFERENCE_SECONDS)
    thresholds = {far: threshold_at_far(calibrated_nontargets, far) for far in FAR_GRID}
    return dataclasses.replace(provisional, thresholds=thresholds, duration=duration)


def _logistic(targets: np.ndarray, nontargets: np.ndarray, penalty: float) -> tuple[float, float]:
    """Slope and intercept of the class-balanced logistic regression of score to label."""
    scores = np.concatenate([targets, nontargets])
    labels = np.concatenate([np.ones(len(targets)), np.zeros(len(nontargets))])
    weights = np.where(labels == 1, 0.5 / len(targets), 0.5 / len(nontargets))
    # Standardise for a well-conditioned fit, then map the parameters back.
    centre, spread = scores.mean(), scores.std() or 1.0
    features = np.stack([(scores - centre) / spread, np.ones_like(scores)], axis=1)
    # The penalty is on the slope of the unscaled feature (params[0] / spread).
    ridge = np.diag([penalty / spread**2, 0.0])
    params = np.zeros(2)
    for _ in range(100):
        probability = 1.0 / (1.0 + np.exp(-features @ params))
        gradient = features.T @ (weights * (probability - labels)) + ridge @ params
        hessian = features.T @ (features * (weights * probability * (1 - probability))[:, None])
        hessian = hessian + ridge
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        params -= step
        if np.abs(step).max() < 1e-10:
            break
    return params[0] / spread, params[1] - params[0] * centre / spread
