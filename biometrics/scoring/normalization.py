"""Adaptive symmetric score normalisation (AS-norm).

A trial's cosine score is compared with how the enrollment side and the test
side each score against the cohort impostors they resemble most (their top-N
cohort scores): z-normalised once with each side's statistics, and averaged.
This removes the per-speaker and per-recording offsets a fixed threshold
cannot absorb.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

DEFAULT_TOP_N = 200


@dataclasses.dataclass(frozen=True)
class Cohort:
    embeddings: np.ndarray  # (n, dim) unit vectors of impostor speech
    top_n: int = DEFAULT_TOP_N

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or len(self.embeddings) < 2:
            raise ValueError("a cohort needs at least two embeddings")

    def statistics(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each vector's top-N cohort scores."""
        scores = np.atleast_2d(vectors) @ self.embeddings.T
        top = min(self.top_n, scores.shape[1])
        best = np.partition(scores, scores.shape[1] - top, axis=1)[:, -top:]
        return best.mean(axis=1), np.maximum(best.std(axis=1), 1e-6)


def as_norm(
    scores: np.ndarray, enroll: np.ndarray, tests: np.ndarray, cohort: Cohort
) -> np.ndarray:
    """Normalise a (n_tests, n_enrolled) score matrix; ``enroll`` and ``tests`` are
    the unit vectors behind its columns and rows."""
    enroll_mean, enroll_std = cohort.statistics(enroll)
    test_mean, test_std = cohort.statistics(tests)
    scores = np.atleast_2d(scores)
    normalized: npt.NDArray[np.float64] = 0.5 * (
        (scores - enroll_mean[None, :]) / enroll_std[None, :]
        + (scores - test_mean[:, None]) / test_std[:, None]
    )
    return normalized
