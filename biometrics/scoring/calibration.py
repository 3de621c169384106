"""Calibration: from a raw (or normalised) score to a 0-100 score that means something.

A logistic map, fitted on development trials with both classes weighted
equally, turns a score into a log-likelihood ratio. The 0-100 score is
``100 * sigmoid(llr)``: the probability, in percent, that the speaker is the
claimed one when a genuine caller and an impostor are equally likely. 50 is
"the evidence is balanced". The default decision threshold comes from the
false-accept rate measured on the same trials.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

from biometrics.scoring.thresholds import threshold_at_far

# False-accept rates at which thresholds are kept; others are interpolated.
FAR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


@dataclasses.dataclass(frozen=True)
class Calibration:
    slope: float
    intercept: float
    normalized: bool  # fitted on AS-normalised scores
    thresholds: dict[float, float]  # false-accept rate -> 0-100 threshold

    def llr(self, score: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.slope * np.asarray(score, dtype=np.float64) + self.intercept

    def score(self, raw: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The calibrated 0-100 score."""
        calibrated: npt.NDArray[np.float64] = 100.0 / (1.0 + np.exp(-self.llr(raw)))
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


def write_json(calibration: Calibration, path: Path, **provenance: object) -> Path:
    body = {
        "slope": calibration.slope,
        "intercept": calibration.intercept,
        "normalized": calibration.normalized,
        "thresholds": {str(far): value for far, value in calibration.thresholds.items()},
        **provenance,
    }
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> Calibration:
    body = json.loads(path.read_text(encoding="utf-8"))
    return Calibration(
        slope=float(body["slope"]),
        intercept=float(body["intercept"]),
        normalized=bool(body["normalized"]),
        thresholds={float(far): float(value) for far, value in body["thresholds"].items()},
    )


def fit(targets: np.ndarray, nontargets: np.ndarray, *, normalized: bool) -> Calibration:
    """Fit the logistic map by Newton's method, each class carrying half the weight."""
    targets = np.asarray(targets, dtype=np.float64)
    nontargets = np.asarray(nontargets, dtype=np.float64)
    if len(targets) < 2 or len(nontargets) < 2:
        raise ValueError("calibration needs at least two target and two non-target trials")
    scores = np.concatenate([targets, nontargets])
    labels = np.concatenate([np.ones(len(targets)), np.zeros(len(nontargets))])
    weights = np.where(labels == 1, 0.5 / len(targets), 0.5 / len(nontargets))
    # Standardise for a well-conditioned fit, then map the parameters back.
    centre, spread = scores.mean(), scores.std() or 1.0
    features = np.stack([(scores - centre) / spread, np.ones_like(scores)], axis=1)
    params = np.zeros(2)
    for _ in range(100):
        probability = 1.0 / (1.0 + np.exp(-features @ params))
        gradient = features.T @ (weights * (probability - labels))
        hessian = features.T @ (features * (weights * probability * (1 - probability))[:, None])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        params -= step
        if np.abs(step).max() < 1e-10:
            break
    slope = params[0] / spread
    intercept = params[1] - params[0] * centre / spread
    provisional = Calibration(float(slope), float(intercept), normalized, {})
    calibrated_nontargets = provisional.score(nontargets)
    thresholds = {far: threshold_at_far(calibrated_nontargets, far) for far in FAR_GRID}
    return dataclasses.replace(provisional, thresholds=thresholds)
