"""Streaming decisions: how to get the embedding at each decision point of a live call.

A live call delivers speech bit by bit and is judged at the points of its
:class:`~biometrics.streaming.schedule.DecisionSchedule` (with the service's defaults
after 3, 5, 7, 9 and 10 s of net speech). The strategies measured here on the same
streams:

* ``growing_window``: all speech so far is embedded afresh at every decision point,
  by the service's ``pool_speech`` (pieces of up to 10 s, pooled): 34 s of audio
  through the model for 10 s of speech.
* ``chunk_average``: the speech is cut into consecutive chunks of ``chunk_seconds``
  as it arrives and each complete chunk is embedded once. At a decision point the
  embedding is the mean of the chunk embeddings, weighted by their speech and
  renormalised (the service's ``weighted_mean``; equal chunks make it the plain mean).
  Speech since the last complete chunk (the tail) is embedded too when it has at
  least 1 s, and joins that decision only: it is embedded again as part of its
  complete chunk later. A tail under 1 s waits for the next decision.
* ``incremental``: the first decision embeds its whole window, as the growing window
  does (so the first verdict is the same); each later one embeds only the speech since
  the last and pools it with the embedding so far by speech
  (:class:`~biometrics.embedding.incremental.IncrementalEmbedding`, the service's own
  rule): 3 + 2 + 2 + 2 + 1 = 10 s embedded.
* ``incremental_final_window``: incremental, but the final decision re-embeds the
  whole window, so that the first and the final verdicts are the growing window's.

Streams are a held-out speaker's test utterances, joined and cut into pieces as long
as the final decision point; voiceprints come from enrollments as in
:func:`~biometrics.evaluation.run.evaluate` (same protocol, same seed). Reported per
strategy and decision point: EER (with bootstrap interval), minDCF, FRR at 1 % FAR,
and the cost of that decision: seconds of audio passed through the model and wall time,
per stream; and per strategy, the totals.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.decode import Samples
from biometrics.audio.framing import FRAME_SAMPLES
from biometrics.embedding.incremental import IncrementalEmbedding
from biometrics.embedding.pooling import (
    MIN_SEGMENT_SAMPLES,
    Embed,
    SpeechEmbedding,
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

# A strategy turns one stream into one embedding per decision point, yielding each as it
# is decided with the samples it passed through the model for it (so that each decision
# can be timed on its own).
Strategy = Callable[[Embed, Samples, Sequence[int]], Iterator[tuple[Vectors, int]]]


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
) -> Iterator[tuple[Vectors, int]]:
    """Embed each complete chunk once; at each decision point pool the chunks so far
    (and a tail of at least 1 s since the last complete chunk)."""
    chunks: list[tuple[Vectors, int]] = []  # (embedding, samples) of complete chunks
    covered = 0
    for point in points:
        cost = 0
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
        yield weighted_mean(np.stack([v for v, _ in parts]), [n for _, n in parts]), cost


def growing_window(
    embed: Embed, stream: Samples, points: Sequence[int]
) -> Iterator[tuple[Vectors, int]]:
    """Embed all speech so far at each decision point, as the service embeds an upload."""
    for point in points:
        yield pool_speech(embed, stream[:point])[0], point


def incremental(
    embed: Embed, stream: Samples, points: Sequence[int], *, final_window: bool = False
) -> Iterator[tuple[Vectors, int]]:
    """Embed only the speech since the last decision and pool it with the embedding so
    far, as a live participant does; with ``final_window`` the final decision embeds the
    whole window afresh instead."""
    state = IncrementalEmbedding()
    for number, point in enumerate(points, start=1):
        start = 0 if final_window and number == len(points) else state.start(point)
        new = None
        if start < point:
            vector, pieces = pool_speech(embed, stream[start:point])
            new = SpeechEmbedding(vector, (point - start) / SAMPLE_RATE, pieces)
        yield state.add(new, start, point).vector, point - start


def strategies(chunk: int) -> dict[str, Strategy]:
    return {
        "growing_window": growing_window,
        "chunk_average": functools.partial(chunk_average, chunk=chunk),
        "incremental": incremental,
        "incremental_final_window": functools.partial(incremental, final_window=True),
    }


@dataclasses.dataclass
class _Run:
    """One strategy's embeddings and spending so far: samples and seconds per decision."""

    points: int
    vectors: list[Vectors] = dataclasses.field(default_factory=list)  # (point, dim) per stream
    samples: npt.NDArray[np.int64] = dataclasses.field(init=False)
    wall: npt.NDArray[np.float64] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.samples = np.zeros(self.points, dtype=np.int64)
        self.wall = np.zeros(self.points)

    def cost(self, streams: int) -> tuple[dict[str, float], list[dict[str, float]]]:
        """The totals over all streams, and each decision's cost per stream."""
        audio = float(self.samples.sum()) / SAMPLE_RATE
        total = {
            "audio_seconds": audio,
            "audio_seconds_per_stream": audio / streams,
            "wall_seconds": float(self.wall.sum()),
            "wall_ms_per_stream": 1000 * float(self.wall.sum()) / streams,
        }
        decisions = [
            {
                "audio_seconds_per_stream": float(n) / SAMPLE_RATE / streams,
                "wall_ms_per_stream": 1000 * float(w) / streams,
            }
            for n, w in zip(self.samples, self.wall, strict=True)
        ]
        return total, decisions


def run_strategies(
    named: dict[str, Strategy], embedder: Embedder, streams: list[TestCrop], points: list[int]
) -> dict[str, _Run]:
    """Every strategy on every stream, each decision timed. The strategies take turns
    stream by stream, so that a machine whose load changes during the run slows them
    alike. One untimed pass over the first stream first: torch's first call at each
    input length is slow, and would otherwise count against whichever strategy runs
    first."""
    for strategy in named.values():
        for _ in strategy(embedder.embed, streams[0].samples, points):
            pass
    runs = {name: _Run(len(points)) for name in named}
    for stream in streams:
        for name, strategy in named.items():
            run = runs[name]
            decisions = strategy(embedder.embed, stream.samples, points)
            vectors = []
            for index in range(len(points)):
                started = time.perf_counter()
                vector, cost = next(decisions)
                run.wall[index] += time.perf_counter() - started
                run.samples[index] += cost
                vectors.append(vector)
            run.vectors.append(np.stack(vectors))
    return runs


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
    """Every strategy on the same streams and voiceprints, decided when ``schedule``
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
    runs = run_strategies(
        strategies(int(chunk_seconds * SAMPLE_RATE)), embedder, streams.tests, points
    )
    for name, run in runs.items():
        embeddings = np.stack(run.vectors, axis=1)  # (decision point, stream, dim)
        rows = score_points(
            streams, voiceprints, embeddings, points, max_nontargets=max_nontargets, seed=seed
        )
        cost, decisions = run.cost(len(streams.tests))
        points_rows = [{**row, **spent} for row, spent in zip(rows, decisions, strict=True)]
        results[name] = {"cost": cost, "points": points_rows}
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
