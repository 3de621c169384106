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
class CalibrationFit:
    calibration: calibration.Calibration
    eer: float
    target_trials: int
    nontarget_trials: int


def fit_calibration(evaluations: Sequence[Evaluation], *, normalized: bool) -> CalibrationFit:
    """Fit on the trials of every evaluation together (several test lengths)."""
    targets = np.concatenate([evaluation.targets for evaluation in evaluations])
    nontargets = np.concatenate([evaluation.nontargets for evaluation in evaluations])
    return CalibrationFit(
        calibration=calibration.fit(targets, nontargets, normalized=normalized),
        eer=eer(targets, nontargets)[0],
        target_trials=len(targets),
        nontarget_trials=len(nontargets),
    )
