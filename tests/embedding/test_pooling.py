from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from biometrics.embedding.pooling import (
    SpeechEmbedding,
    Vectors,
    accumulate,
    split_segments,
    weighted_mean,
)


def unit(*values: float) -> Vectors:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_weighted_mean_is_unit_length_and_leans_to_the_heavier_embedding() -> None:
    merged = weighted_mean(np.stack([unit(1, 0), unit(0, 1)]), [3.0, 1.0])
    assert np.linalg.norm(merged) == pytest.approx(1.0)
    assert merged[0] == pytest.approx(3 / np.sqrt(10))


def test_accumulating_uploads_equals_pooling_them_at_once() -> None:
    a, b, c = unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 1)
    step = accumulate(SpeechEmbedding(a, 5.0, 1), SpeechEmbedding(b, 10.0, 1))
    step = accumulate(step, SpeechEmbedding(c, 5.0, 2))
    # Each earlier voiceprint is the renormalised mean, so the result matches the
    # direction of the pooled mean only up to renormalisation at each step.
    assert step.speech_seconds == 20.0
    assert step.segment_count == 4
    assert np.linalg.norm(step.vector) == pytest.approx(1.0)
    assert float(step.vector @ c) > float(unit(1, 1, 0) @ c)


@pytest.mark.parametrize(
    ("embeddings", "weights"),
    [(np.zeros((0, 2)), []), (np.eye(2), [1.0]), (np.eye(2), [1.0, 0.0])],
)
def test_weighted_mean_refuses_bad_weights(
    embeddings: npt.NDArray[np.float64], weights: list[float]
) -> None:
    with pytest.raises(ValueError):
        weighted_mean(embeddings, weights)


def test_split_segments_joins_a_short_tail() -> None:
    pieces = split_segments(np.arange(25, dtype=np.float32), segment_samples=10, min_samples=6)
    assert [len(piece) for piece in pieces] == [10, 15]
    assert np.array_equal(np.concatenate(pieces), np.arange(25, dtype=np.float32))
    assert [len(p) for p in split_segments(np.arange(27, dtype=np.float32), 10, 6)] == [10, 10, 7]
