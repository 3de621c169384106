"""Fitting a model's scoring from speech: the AS-norm cohort and the calibration.

Both run through the evaluation harness, which runs the service's own
decoding, speech detection and embedding code, so what is fitted here is what
the service later applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from biometrics.embedding.pooling import Vectors
from biometrics.evaluation import honesty
from biometrics.evaluation.metrics import eer
from biometrics.evaluation.protocol import (
    Pool,
    Protocol,
    Trials,
    cosine_trials,
    find_speakers,
    load_speech,
)
from biometrics.evaluation.run import Evaluation, Scorer
from biometrics.scoring import calibration
from biometrics.scoring.normalization import DEFAULT_TOP_N, Cohort, as_norm

MIN_COHORT_SPEECH_SAMPLES = 16_000  # a second


def build_cohort(
    pool: Pool,
    folder: Path,
    *,
    per_speaker: int = 3,
    exclude: Iterable[str] = (),
    top_n: int = DEFAULT_TOP_N,
) -> Cohort:
    """One embedding per utterance (by the service's pooling), at most
    ``per_speaker`` utterances per speaker, leaving out ``exclude``."""
    excluded = set(exclude)
    speakers = {
        speaker: paths[:per_speaker]
        for speaker, paths in find_speakers(folder).items()
        if speaker not in excluded
    }
    vectors = [
        pool(utterance)
        for entry in load_speech(speakers)
        for utterance in entry.utterances
        if len(utterance) >= MIN_COHORT_SPEECH_SAMPLES
    ]
    return Cohort(np.stack(vectors), top_n=top_n)


def as_norm_scorer(cohort: Cohort) -> Scorer:
    """A harness scoring step that AS-normalises the cosine trials."""

    def score(protocol: Protocol, voiceprints: Vectors, tests: Vectors) -> Trials:
        trials = cosine_trials(protocol, voiceprints, tests)
        normalised = as_norm(trials.scores, voiceprints, tests, cohort)
        return Trials(scores=normalised, is_target=trials.is_target)

    return score


@dataclasses.dataclass(frozen=True)
class LengthSummary:
    """The fitted trials at one test length and the impostors the duration model expects."""

    test_seconds: float
    target_trials: int
    nontarget_trials: int
    eer: float
    impostor_centre: float
    impostor_spread: float


@dataclasses.dataclass(frozen=True)
class CalibrationFit:
    calibration: calibration.Calibration
    eer: float  # pooled over the lengths, before calibration
    target_trials: int
    nontarget_trials: int
    lengths: tuple[LengthSummary, ...]


def fit_calibration(evaluations: Sequence[Evaluation], *, normalized: bool) -> CalibrationFit:
    """The duration-aware calibration, fitted on the trials of every evaluation together
    by the report's own method (``honesty.fit_by_length``): a calibration an operator fits
    reads scores by their speech seconds as the shipped one does. Needs two test lengths
    or more, the least a duration model can be fitted on."""
    if len({evaluation.test_seconds for evaluation in evaluations}) < 2:
        raise ValueError(
            "a duration-aware calibration needs trials at two test lengths or more; "
            "ask for more --test-seconds or give longer utterances"
        )
    targets = np.concatenate([evaluation.targets for evaluation in evaluations])
    nontargets = np.concatenate([evaluation.nontargets for evaluation in evaluations])
    fitted = honesty.fit_by_length(
        targets,
        nontargets,
        target_seconds=_lengths(evaluations, "targets"),
        nontarget_seconds=_lengths(evaluations, "nontargets"),
        normalized=normalized,
    )
    return CalibrationFit(
        calibration=fitted,
        eer=eer(targets, nontargets)[0],
        target_trials=len(targets),
        nontarget_trials=len(nontargets),
        lengths=tuple(_summary(evaluation, fitted) for evaluation in evaluations),
    )


def _lengths(evaluations: Sequence[Evaluation], scores: str) -> np.ndarray:
    """Each trial's test length, in the order the scores are concatenated."""
    return np.concatenate(
        [
            np.full(len(getattr(evaluation, scores)), evaluation.test_seconds)
            for evaluation in evaluations
        ]
    )


def _summary(evaluation: Evaluation, fitted: calibration.Calibration) -> LengthSummary:
    centre, spread = fitted.duration.impostors_at(evaluation.test_seconds)
    return LengthSummary(
        test_seconds=evaluation.test_seconds,
        target_trials=len(evaluation.targets),
        nontarget_trials=len(evaluation.nontargets),
        eer=eer(evaluation.targets, evaluation.nontargets)[0],
        impostor_centre=float(centre),
        impostor_spread=float(spread),
    )
