"""Streaming decisions: re-embed the growing window, average chunks, or embed incrementally?

Every strategy on the same streams (a held-out speaker's test speech, joined),
judged at the points of a live call's decision schedule (``--schedule MIN STEP MAX``
in seconds of net speech; default: the service's configured schedule). Prints, per
model, the metrics and cost at each decision point and each strategy's total cost; with
``--out`` writes streaming.json there. The comparison is
``biometrics.evaluation.streaming.compare_streaming``. Several ``--data`` folders are
measured together, e.g. every set of speakers the bundled model never trained on:

    python scripts/compare_streaming.py --model bundled --chunk-seconds 2 \\
        --data ../shared/data/librispeech/test-other-dev ../shared/data/librispeech/train-clean-5 \\
        --speakers 367 533 1998 1688 2033 19 163 1737 2136 4640 8629 --out results/streaming
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from biometrics.config import Settings
from biometrics.evaluation.arguments import (
    UsageError,
    add_harness_arguments,
    data_label,
    selected_embedders,
    selected_speech,
)
from biometrics.evaluation.report import streaming_table, write_streaming
from biometrics.evaluation.streaming import compare_streaming
from biometrics.streaming.schedule import DecisionSchedule


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_harness_arguments(parser)
    parser.add_argument(
        "--schedule",
        type=float,
        nargs=3,
        metavar=("MIN", "STEP", "MAX"),
        help="decision points, as a live call's (default: the service's settings)",
    )
    parser.add_argument("--chunk-seconds", type=float, default=3.0)
    parser.add_argument("--max-streams-per-speaker", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write streaming.json here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    seconds = args.schedule or (
        settings.min_verify_speech_seconds,
        settings.stream_step_seconds,
        settings.stream_max_speech_seconds,
    )
    schedule = DecisionSchedule.of_seconds(*seconds)
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
            schedule,
            chunk_seconds=args.chunk_seconds,
            enroll_seconds=args.enroll_seconds,
            max_streams_per_speaker=args.max_streams_per_speaker,
            max_nontargets=args.max_nontargets,
            seed=args.seed,
        )
        print(streaming_table(comparison) + "\n")
        comparisons.append(comparison)
    if args.out:
        path = write_streaming(args.out, {"data": data_label(args), "seed": args.seed}, comparisons)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
