"""The scoring policy of a running service: raw cosine, AS-norm when a cohort and a
calibration fitted on it exist, calibration to 0-100, and the default threshold."""

from __future__ import annotations

import dataclasses

import numpy as np

from biometrics.scoring.calibration import Calibration
from biometrics.scoring.decision import score_from_similarity
from biometrics.scoring.normalization import Cohort, as_norm

# Without calibration the score is cosine x 100; SpeechBrain's own verification
# uses a cosine threshold of 0.25 for its VoxCeleb ECAPA.
UNCALIBRATED_THRESHOLD = 30.0


@dataclasses.dataclass(frozen=True)
class ScoredTrial:
    similarity: float  # cosine
    normalized: float | None  # AS-norm score, when used
    score: float  # 0-100
    calibrated: bool


@dataclasses.dataclass(frozen=True)
class Scorer:
    cohort: Cohort | None = None
    calibration: Calibration | None = None
    target_far: float = 0.01
    fixed_threshold: float | None = None  # set by the operator: wins over the derived one

    @property
    def usable_calibration(self) -> Calibration | None:
        """A calibration fitted on normalised scores is usable only with its cohort."""
        if self.calibration is None or (self.calibration.normalized and self.cohort is None):
            return None
        return self.calibration

    @property
    def calibrated(self) -> bool:
        return self.usable_calibration is not None

    @property
    def normalizing(self) -> bool:
        calibration = self.usable_calibration
        return calibration is not None and calibration.normalized

    @property
    def default_threshold(self) -> float:
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        calibration = self.usable_calibration
        if calibration is None:
            return UNCALIBRATED_THRESHOLD
        return round(calibration.threshold_for_far(self.target_far), 2)

    def score(self, voiceprint: np.ndarray, test: np.ndarray, speech_seconds: float) -> ScoredTrial:
        """Score a test embedding made from ``speech_seconds`` of speech: a calibration
        with a duration model reads the score against impostors at that length."""
        similarity = float(np.dot(voiceprint, test))
        calibration = self.usable_calibration
        if calibration is None:
            return ScoredTrial(similarity, None, score_from_similarity(similarity), False)
        normalized = None
        raw = similarity
        if self.normalizing:
            assert self.cohort is not None
            normalized = float(
                as_norm(np.array([[similarity]]), voiceprint, test, self.cohort)[0, 0]
            )
            raw = normalized
        return ScoredTrial(
            similarity, normalized, round(float(calibration.score(raw, speech_seconds)), 2), True
        )

    def describe(self) -> dict[str, object]:
        calibration = self.usable_calibration
        return {
            "calibrated": calibration is not None,
            "normalization": "as-norm" if self.normalizing else None,
            "cohort_size": None if self.cohort is None else len(self.cohort.embeddings),
            "default_threshold": self.default_threshold,
            "target_far": None if calibration is None or self.fixed_threshold else self.target_far,
        }
