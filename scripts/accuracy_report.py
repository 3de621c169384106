"""Regenerate the numbers in docs/accuracy.md: a model's accuracy on LibriSpeech
development data with raw cosine scores and with AS-norm, and how well its
calibration holds on speakers it was not fitted on. (The calibration the bundled model
ships, duration-aware and fitted on many impostor pairs, comes from
scripts/calibration_report.py.)

    python scripts/accuracy_report.py --data ../shared/data/librispeech --out results/accuracy

The protocol (all seeded):
- cohort: one utterance of every train-clean-100 speaker that is in neither
  train-clean-5 nor test-other-dev;
- calibration: fitted on the held-out train-clean-5 speakers (the ones the
  bundled model never trained on), 3 s and 5 s tests against 20 s enrollments;
- evaluation: test-other-dev, enrollment from 20 s of net speech, tests of
  1-10 s; the threshold fitted for the target false-accept rate is applied as
  the service would, and the false-accept and false-reject rates it really
  gives are reported next to the calibration cost (Cllr).
Prints markdown tables; writes accuracy.json into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from biometrics.evaluation.arguments import configured_embedder
from biometrics.evaluation.calibrate import as_norm_scorer, build_cohort, fit_calibration
from biometrics.evaluation.metrics import cllr
from biometrics.evaluation.protocol import cosine_trials, find_speakers, load_speech
from biometrics.evaluation.run import Evaluation, evaluate
from biometrics.scoring.calibration import Calibration
from biometrics.training.data import HELD_OUT_SPEAKERS

MODES = ("cosine", "as-norm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the librispeech folder")
    parser.add_argument("--model", help="default: BIOMETRICS_MODEL_SOURCE")
    parser.add_argument("--test-seconds", type=float, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--target-far", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    embedder = configured_embedder(args.model, args.seed)
    evaluation_speakers = find_speakers(args.data / "test-other-dev")
    development_speakers = {
        speaker: paths
        for speaker, paths in find_speakers(args.data / "train-clean-5").items()
        if speaker in HELD_OUT_SPEAKERS
    }
    cohort = build_cohort(
        embedder.pool,
        args.data / "train-clean-100",
        per_speaker=1,
        exclude=set(find_speakers(args.data / "train-clean-5")) | set(evaluation_speakers),
    )
    development = load_speech(development_speakers)
    evaluation = load_speech(evaluation_speakers)
    rows = []
    for mode in MODES:
        score = cosine_trials if mode == "cosine" else as_norm_scorer(cohort)
        fitted = fit_calibration(
            evaluate(embedder, development, [3.0, 5.0], seed=args.seed, score=score),
            normalized=mode == "as-norm",
        )
        threshold = fitted.calibration.threshold_for_far(args.target_far)
        for result in evaluate(
            embedder, evaluation, args.test_seconds, seed=args.seed, score=score
        ):
            rows.append(row(mode, result, fitted.calibration, threshold))
    print_tables(embedder.identity["name"], len(cohort.embeddings), rows, args.target_far)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {
            "model": embedder.identity,
            "cohort_size": len(cohort.embeddings),
            "target_far": args.target_far,
            "seed": args.seed,
            "rows": rows,
        }
        (args.out / "accuracy.json").write_text(json.dumps(report, indent=2))
    return 0


def row(
    mode: str, result: Evaluation, calibration: Calibration, threshold: float
) -> dict[str, float | str]:
    calibrated_targets = calibration.score(result.targets, result.test_seconds)
    calibrated_nontargets = calibration.score(result.nontargets, result.test_seconds)
    return {
        "scoring": mode,
        "test_seconds": result.test_seconds,
        "eer": result.metrics["eer"],
        "min_dcf_0.01": result.metrics["min_dcf_0.01"],
        "min_dcf_0.05": result.metrics["min_dcf_0.05"],
        "frr_at_far_1pct": result.metrics["frr_at_far_1pct"],
        "threshold": threshold,
        "far_at_threshold": float(np.mean(calibrated_nontargets >= threshold)),
        "frr_at_threshold": float(np.mean(calibrated_targets < threshold)),
        "cllr": cllr(
            calibration.llr(result.targets, result.test_seconds),
            calibration.llr(result.nontargets, result.test_seconds),
        ),
        "n_target": result.metrics["n_target"],
        "n_nontarget": result.metrics["n_nontarget"],
    }


def print_tables(
    model: str, cohort_size: int, rows: list[dict[str, float | str]], target_far: float
) -> None:
    print(f"model {model}; AS-norm cohort of {cohort_size}; target FAR {100 * target_far:g} %\n")
    print(
        "| scoring | test s | EER % | minDCF 0.01 | minDCF 0.05 | FRR@FAR1% | threshold "
        "| FAR % at it | FRR % at it | Cllr | targets | non-targets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for entry in rows:
        print(
            f"| {entry['scoring']} | {entry['test_seconds']:g} | {100 * entry['eer']:.2f} "
            f"| {entry['min_dcf_0.01']:.3f} | {entry['min_dcf_0.05']:.3f} "
            f"| {100 * entry['frr_at_far_1pct']:.1f} | {entry['threshold']:.1f} "
            f"| {100 * entry['far_at_threshold']:.2f} | {100 * entry['frr_at_threshold']:.1f} "
            f"| {entry['cllr']:.3f} | {entry['n_target']} | {entry['n_nontarget']} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
