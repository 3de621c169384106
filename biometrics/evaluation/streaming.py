"""Streaming decisions: embed each new chunk and average, or re-embed the growing window?

A live call delivers speech bit by bit and is judged at the points of its
:class:`~biometrics.streaming.schedule.DecisionSchedule` (with the service's defaults
after 3, 5, 7, 9 and 10 s of net speech). Two ways to get the embedding at a decision
point, measured here on the same streams:

* ``chunk_average``: the speech is cut into consecutive chunks of ``chunk_seconds``
  as it arrives and each complete chunk is embedded once. At a decision point the
  embedding is the mean of the chunk embeddings, weighted by their speech and
  renormalised (the service's ``weighted_mean``; equal chunks make it the plain mean).
  Speech since the last complete chunk (the tail) is embedded too when it has at
  least 1 s, and joins that decision only: it is embedded again as part of its
  complete chunk later. A tail under 1 s waits for the next decision.
* ``growing_window``: all speech so far is embedded afresh at every decision point,
  by the service's ``pool_speech`` (pieces of up to 10 s, pooled).

Streams are a held-out speaker's test utterances, joined and cut into pieces as long
as the final decision point; voiceprints come from enrollments as in
:func:`~biometrics.evaluation.run.evaluate` (same protocol, same seed). Reported per
strategy and decision point: EER (with bootstrap interval), minDCF and FRR at 1 % FAR;
and per strategy, the cost: seconds of audio passed through the model and wall time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.decode import Samples
from biometrics.audio.framing import FRAME_SAMPLES
from biometrics.embedding.pooling import (
    MIN_SEGMENT_SAMPLES,
    Embed,
    Vectors,
    pool_speech,
    weighted_mean,
)
from biometrics.evaluation.protocol import (
    Protocol,
    SpeakerSpeech,
    TestCrop,
    build_protocol,
    cosine_trials,
)
from biometrics.evaluation.run import (
    Embedder,
    VoiceprintCache,
    measurable,
    split_scores,
    summarise,
)
from biometrics.streaming.schedule import DecisionSchedule

# A strategy turns one stream into one embedding per decision point, and says how
# many samples it passed through the model to do so.
Strategy = Callable[[Embed, Samples, Sequence[int]], tuple[Vectors, int]]


def decision_points(schedule: DecisionSchedule) -> list[int]:
    """Samples of speech at each verdict the schedule gives, the first to the final."""
    points = []
    due = schedule.next_due(0)
    while due is not None:
        points.append(due * FRAME_SAMPLES)
        due = schedule.next_due(due)
    return points


def chunk_average(
    embed: Embed, stream: Samples, points: Sequence[int], *, chunk: int
) -> tuple[Vectors, int]:
    """Embed each complete chunk once; at each decision point pool the chunks so far
    (and a tail of at least 1 s since the last complete chunk)."""
    chunks: list[tuple[Vectors, int]] = []  # (embedding, samples) of complete chunks
    covered = cost = 0
    vectors = []
    for point in points:
        while covered + chunk <= point:
            chunks.append((embed([stream[covered : covered + chunk]])[0], chunk))
            covered += chunk
            cost += chunk
        parts = list(chunks)
        tail = stream[covered:point]
        if len(tail) >= MIN_SEGMENT_SAMPLES:
            parts.append((embed([tail])[0], len(tail)))
            cost += len(tail)
        if not parts:
            raise ValueError("a decision point comes before 1 s of speech")
        vectors.append(weighted_mean(np.stack([v for v, _ in parts]), [n for _, n in parts]))
    return np.stack(vectors), cost


def growing_window(embed: Embed, stream: Samples, points: Sequence[int]) -> tuple[Vectors, int]:
    """Embed all speech so far at each decision point, as the service embeds an upload."""
    vectors = [pool_speech(embed, stream[:point])[0] for point in points]
    return np.stack(vectors), int(sum(points))


def strategies(chunk: int) -> dict[str, Strategy]:
    return {
        "chunk_average": functools.partial(chunk_average, chunk=chunk),
        "growing_window": growing_window,
    }


def run_strategy(
    strategy: Strategy, embedder: Embedder, streams: list[TestCrop], points: list[int]
) -> tuple[Vectors, dict[str, float]]:
    """Embeddings (decision point, stream, dim) and the strategy's cost over all streams.
    One untimed pass over the first stream first: torch's first call at each input
    length is slow, and would otherwise count against whichever strategy runs first."""
    strategy(embedder.embed, streams[0].samples, points)
    start = time.perf_counter()
    cost = 0
    per_stream = []
    for stream in streams:
        vectors, samples = strategy(embedder.embed, stream.samples, points)
        per_stream.append(vectors)
        cost += samples
    wall = time.perf_counter() - start
    audio = cost / SAMPLE_RATE
    return np.stack(per_stream, axis=1), {
        "audio_seconds": audio,
        "audio_seconds_per_stream": audio / len(streams),
        "wall_seconds": wall,
        "wall_ms_per_stream": 1000 * wall / len(streams),
    }


def score_points(
    streams: Protocol,
    voiceprints: Vectors,
    embeddings: Vectors,
    points: list[int],
    *,
    max_nontargets: int | None,
    seed: int,
) -> list[dict[str, Any]]:
    """Metrics at each decision point: the stream's first ``point`` samples are the test."""
    rows = []
    for point, tests in zip(points, embeddings, strict=True):
        protocol = Protocol(
            enrollments=streams.enrollments,
            tests=[TestCrop(t.speaker, t.samples[:point]) for t in streams.tests],
            test_seconds=point / SAMPLE_RATE,
        )
        trials = cosine_trials(protocol, voiceprints, tests)
        targets, nontargets = split_scores(trials, max_nontargets=max_nontargets, seed=seed)
        rows.append(
            {"decision_seconds": protocol.test_seconds, **summarise(targets, nontargets, seed=seed)}
        )
    return rows


def compare_streaming(
    embedder: Embedder,
    speech: Sequence[SpeakerSpeech],
    schedule: DecisionSchedule,
    *,
    chunk_seconds: float = 3.0,
    enroll_seconds: float = 20.0,
    max_streams_per_speaker: int = 10,
    max_nontargets: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Both strategies on the same streams and voiceprints, decided when ``schedule``
    decides: metrics per decision point and cost per strategy."""
    points = decision_points(schedule)
    if points[0] < MIN_SEGMENT_SAMPLES:
        raise ValueError("decision points must come after at least 1 s of speech")
    streams = build_protocol(
        speech,
        enroll_seconds=enroll_seconds,
        test_seconds=points[-1] / SAMPLE_RATE,
        max_tests_per_speaker=max_streams_per_speaker,
        seed=seed,
        join_utterances=True,
    )
    if not measurable(streams):
        raise ValueError("too little speech for streams of the last decision point")
    voiceprints = VoiceprintCache(embedder.pool).for_protocol(streams)
    results = {}
    for name, strategy in strategies(int(chunk_seconds * SAMPLE_RATE)).items():
        embeddings, cost = run_strategy(strategy, embedder, streams.tests, points)
        rows = score_points(
            streams, voiceprints, embeddings, points, max_nontargets=max_nontargets, seed=seed
        )
        results[name] = {"cost": cost, "points": rows}
    return {
        "model": embedder.identity,
        "label": embedder.name,
        "chunk_seconds": chunk_seconds,
        "decision_seconds": [p / SAMPLE_RATE for p in points],
        "enroll_seconds": enroll_seconds,
        "n_streams": len(streams.tests),
        "n_speakers": len(streams.speakers),
        "strategies": results,
    }
