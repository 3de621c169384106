"""Pooling unit-length embeddings into one: the speech-weighted mean, renormalised.

The same rule builds a voiceprint from the segments of one upload, and
accumulates voiceprints across uploads (an earlier voiceprint is one row
weighted by the speech behind it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from biometrics.audio.decode import SAMPLE_RATE, Samples

# Long speech is embedded in pieces and pooled: ECAPA's cost and memory grow
# with length, while past ~10 s an embedding gains little.
SEGMENT_SAMPLES = 10 * SAMPLE_RATE
MIN_SEGMENT_SAMPLES = 1 * SAMPLE_RATE

Vectors = npt.NDArray[np.float32]  # unit-length embeddings, one per row (or one vector)
Embed = Callable[[list[Samples]], Vectors]  # waveforms -> (n, dim)


@dataclasses.dataclass(frozen=True)
class SpeechEmbedding:
    vector: Vectors  # one unit-length vector
    speech_seconds: float
    segment_count: int
    delay: str | None = None  # why the model served it late, if it did


def weighted_mean(embeddings: npt.ArrayLike, weights: Sequence[float]) -> Vectors:
    rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    weights_array = np.asarray(weights, dtype=np.float64)
    if rows.shape[0] == 0 or rows.shape[0] != weights_array.shape[0]:
        raise ValueError("one weight per embedding is needed")
    if np.any(weights_array <= 0):
        raise ValueError("weights must be positive")
    weighted: npt.NDArray[np.float64] = (rows * weights_array[:, None]).sum(axis=0)
    mean = weighted / float(weights_array.sum())
    norm = np.linalg.norm(mean)
    if norm == 0:
        raise ValueError("the embeddings cancel out")
    return (mean / norm).astype(np.float32)


def accumulate(previous: SpeechEmbedding, new: SpeechEmbedding) -> SpeechEmbedding:
    return SpeechEmbedding(
        vector=weighted_mean(
            np.stack([previous.vector, new.vector]),
            [previous.speech_seconds, new.speech_seconds],
        ),
        speech_seconds=previous.speech_seconds + new.speech_seconds,
        segment_count=previous.segment_count + new.segment_count,
    )


def pool_speech(embed: Embed, speech: Samples) -> tuple[Vectors, int]:
    """The service's rule for embedding speech of any length: pieces of up to
    10 s, embedded and pooled by length. Returns the unit vector and the number of
    pieces."""
    pieces = speech_pieces(speech)
    return pool_pieces(pieces, embed(pieces)), len(pieces)


def speech_pieces(speech: Samples) -> list[Samples]:
    """The pieces ``pool_speech`` embeds, for callers that embed them on their own."""
    return split_segments(speech, SEGMENT_SAMPLES, MIN_SEGMENT_SAMPLES)


def pool_pieces(pieces: Sequence[Samples], embeddings: Vectors) -> Vectors:
    """The pieces' embeddings as one unit vector, weighted by their length."""
    return weighted_mean(embeddings, [len(piece) for piece in pieces])


def split_segments(speech: Samples, segment_samples: int, min_samples: int) -> list[Samples]:
    """Cut speech into segments of at most ``segment_samples``; a short tail joins the last."""
    pieces = [
        speech[start : start + segment_samples] for start in range(0, len(speech), segment_samples)
    ]
    if len(pieces) > 1 and len(pieces[-1]) < min_samples:
        tail = pieces.pop()
        pieces[-1] = np.concatenate([pieces[-1], tail])
    return pieces
