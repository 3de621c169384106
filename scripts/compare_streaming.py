"""Streaming decisions: embed each new chunk and average, or re-embed the growing window?

A live call delivers speech bit by bit and wants a decision at several points
(by default after 3, 5, 8 and 10 s of net speech). Two ways to get the
embedding at a decision point, measured here on the same streams:

* ``chunk_average``: the speech is cut into consecutive chunks of
  ``--chunk-seconds`` as it arrives and each complete chunk is embedded once.
  At a decision point the embedding is the mean of the chunk embeddings,
  weighted by their speech and renormalised (the service's ``weighted_mean``;
  equal chunks make it the plain mean). Speech since the last complete chunk
  (the tail) is embedded too when it has at least 1 s, and joins that
  decision only: it is embedded again as part of its complete chunk later.
  A tail under 1 s waits for the next decision.
* ``growing_window``: all speech so far is embedded afresh at every decision
  point, by the service's ``pool_speech`` (pieces of up to 10 s, pooled).

Streams are a held-out speaker's test utterances, joined and cut into pieces
as long as the last decision point; voiceprints come from enrollments as in
``scripts/evaluate.py`` (same protocol, same seed). Reported per strategy and
decision point: EER (with bootstrap interval), minDCF and FRR at 1 % FAR; and
per strategy, the cost: seconds of audio passed through the model and wall time.

    python scripts/compare_streaming.py --data ../shared/data/librispeech/train-clean-5 \\
        --model random:256 --decision-seconds 3 5 8 10 --chunk-seconds 3 --out results/streaming
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biometrics.audio import SAMPLE_RATE
from biometrics.config import Settings
from biometrics.embedding.pooling import MIN_SEGMENT_SAMPLES, Embed, pool_speech, weighted_mean
from biometrics.evaluation.arguments import (
    UsageError,
    add_harness_arguments,
    selected_embedders,
    selected_speech,
)
from biometrics.evaluation.protocol import (
    Protocol,
    SpeakerSpeech,
    TestCrop,
    build_protocol,
    cosine_trials,
)
from biometrics.evaluation.report import format_eer, format_table
from biometrics.evaluation.run import (
    Embedder,
    VoiceprintCache,
    split_scores,
    summarise,
)

# A strategy turns one stream into one embedding per decision point, and says how
# many samples it passed through the model to do so.
Strategy = Callable[[Embed, np.ndarray, Sequence[int]], tuple[np.ndarray, int]]


def chunk_average(
    embed: Embed, stream: np.ndarray, points: Sequence[int], *, chunk: int
) -> tuple[np.ndarray, int]:
    """Embed each complete chunk once; at each decision point pool the chunks so far
    (and a tail of at least 1 s since the last complete chunk)."""
    chunks: list[tuple[np.ndarray, int]] = []  # (embedding, samples) of complete chunks
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


def growing_window(
    embed: Embed, stream: np.ndarray, points: Sequence[int]
) -> tuple[np.ndarray, int]:
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
) -> tuple[np.ndarray, dict[str, float]]:
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
    voiceprints: np.ndarray,
    embeddings: np.ndarray,
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
    *,
    decision_seconds: Sequence[float] = (3, 5, 8, 10),
    chunk_seconds: float = 3.0,
    enroll_seconds: float = 20.0,
    max_streams_per_speaker: int = 10,
    max_nontargets: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Both strategies on the same streams and voiceprints: metrics per decision
    point and cost per strategy."""
    points = sorted(int(s * SAMPLE_RATE) for s in decision_seconds)
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
    if not streams.tests or len(streams.speakers) < 2:
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


def report(comparison: dict[str, Any]) -> str:
    """A table of metrics per strategy and decision point, then the costs."""
    rows = [
        [
            name,
            f"{point['decision_seconds']:g}",
            format_eer(point),
            f"{point['min_dcf_0.01']:.3f}",
            f"{100 * point['frr_at_far_1pct']:.1f}%",
            str(point["n_target"]),
            str(point["n_nontarget"]),
        ]
        for name, result in comparison["strategies"].items()
        for point in result["points"]
    ]
    metrics = format_table(
        rows,
        [
            ("strategy", "<"),
            ("decision s", ">"),
            ("EER % [95% CI]", ">"),
            ("minDCF.01", ">"),
            ("FRR@FAR1%", ">"),
            ("targets", ">"),
            ("non-targets", ">"),
        ],
    )
    costs = format_table(
        [
            [
                name,
                f"{result['cost']['audio_seconds']:.1f}",
                f"{result['cost']['audio_seconds_per_stream']:.1f}",
                f"{result['cost']['wall_seconds']:.2f}",
                f"{result['cost']['wall_ms_per_stream']:.1f}",
            ]
            for name, result in comparison["strategies"].items()
        ],
        [
            ("strategy", "<"),
            ("audio s", ">"),
            ("audio s/stream", ">"),
            ("wall s", ">"),
            ("wall ms/stream", ">"),
        ],
    )
    title = (
        f"{comparison['label']}: {comparison['n_streams']} streams, "
        f"{comparison['n_speakers']} speakers, chunks of {comparison['chunk_seconds']:g} s"
    )
    return f"{title}\n\n{metrics}\n\n{costs}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_harness_arguments(parser)
    parser.add_argument("--decision-seconds", type=float, nargs="+", default=[3, 5, 8, 10])
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--max-streams-per-speaker", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write streaming.json here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    try:
        speech = selected_speech(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    comparisons = []
    for embedder in selected_embedders(args, settings):
        comparison = compare_streaming(
            embedder,
            speech,
            decision_seconds=args.decision_seconds,
            chunk_seconds=args.chunk_seconds,
            enroll_seconds=args.enroll_seconds,
            max_streams_per_speaker=args.max_streams_per_speaker,
            max_nontargets=args.max_nontargets,
            seed=args.seed,
        )
        print(report(comparison) + "\n")
        comparisons.append(comparison)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        document = {"data": str(args.data), "seed": args.seed, "comparisons": comparisons}
        path = args.out / "streaming.json"
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
