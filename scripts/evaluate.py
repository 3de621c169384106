"""Evaluate speaker models on a folder of speech: EER, minDCF, FRR at fixed FAR, DET.

Speakers are LibriSpeech file names or one subfolder per speaker. Each speaker
is enrolled once from whole utterances (``--enroll-seconds`` of net speech, the
same enrollment for every test length); tests are crops of T seconds of net
speech from the speaker's other utterances, scored (cosine) against every
voiceprint. Models go through the service's own loading, pooling and scoring.

    python scripts/evaluate.py --data ../shared/data/librispeech/test-other-dev \\
        --model random:256 --model resemblyzer --test-seconds 1 3 5 --out results/eval

``--model`` takes a Hugging Face id or a model folder (default: the configured
BIOMETRICS_MODEL_SOURCE), ``resemblyzer`` (the training teacher) or
``random:<channels>`` (an untrained ECAPA: the floor). Prints a table; with
``--out`` writes results.json and det.png there. The same seed gives the same
results.json apart from the ``embed_ms_per_test`` timings.
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
from biometrics.evaluation.report import plot_det, results_table, write_results
from biometrics.evaluation.run import Evaluation, evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_harness_arguments(parser)
    parser.add_argument("--test-seconds", type=float, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--max-tests-per-speaker", type=int, default=50)
    parser.add_argument("--out", type=Path, help="write results.json and det.png here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    try:
        speech = selected_speech(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    evaluations: list[Evaluation] = []
    for embedder in selected_embedders(args, settings):
        evaluations += evaluate(
            embedder,
            speech,
            args.test_seconds,
            enroll_seconds=args.enroll_seconds,
            max_tests_per_speaker=args.max_tests_per_speaker,
            max_nontargets=args.max_nontargets,
            seed=args.seed,
        )
    print(results_table(evaluations))
    if args.out:
        run_settings = {
            "data": data_label(args),
            "seed": args.seed,
            "enroll_seconds": args.enroll_seconds,
            "max_tests_per_speaker": args.max_tests_per_speaker,
            "max_nontargets": args.max_nontargets,
            "speakers": args.speakers,
        }
        write_results(args.out, run_settings, evaluations)
        plot_det(args.out, evaluations)
        print(f"\nwrote {args.out / 'results.json'} and {args.out / 'det.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
