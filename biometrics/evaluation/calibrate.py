"""Fitting a model's scoring from speech: the AS-norm cohort and the calibration.

Both run the service's own decoding, speech detection and embedding code, so
what is fitted here is what the service later applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from biometrics.embedding import SpeakerEncoder
from biometrics.embedding.pooling import pool_speech
from biometrics.evaluation.metrics import eer
from biometrics.evaluation.protocol import (
    Trials,
    build_protocol,
    cosine_trials,
    embed_protocol,
    find_speakers,
    load_speech,
)
from biometrics.scoring import calibration
from biometrics.scoring.normalization import DEFAULT_TOP_N, Cohort, as_norm


def build_cohort(
    encoder: SpeakerEncoder,
    folder: Path,
    *,
    per_speaker: int = 3,
    exclude: Iterable[str] = (),
    top_n: int = DEFAULT_TOP_N,
) -> Cohort:
    """One embedding per utterance, at most ``per_speaker`` utterances per speaker."""
    excluded = set(exclude)
    speakers = {
        speaker: paths[:per_speaker]
        for speaker, paths in find_speakers(folder).items()
        if speaker not in excluded
    }
    vectors = [
        pool_speech(encoder.embed, utterance)[0]
        for entry in load_speech(speakers)
        for utterance in entry.utterances
        if len(utterance) >= 16_000  # at least a second of speech
    ]
    return Cohort(np.stack(vectors), top_n=top_n)


def development_trials(
    encoder: SpeakerEncoder,
    folder: Path,
    *,
    enroll_seconds: float,
    test_seconds: Iterable[float],
    cohort: Cohort | None,
    seed: int = 0,
) -> Trials:
    """Trials pooled over test lengths; AS-normalised when a cohort is given."""
    speech = load_speech(find_speakers(folder))
    scores, is_target = [], []
    for seconds in test_seconds:
        protocol = build_protocol(
            speech, enroll_seconds=enroll_seconds, test_seconds=seconds, seed=seed
        )
        voiceprints, tests = embed_protocol(
            protocol, lambda s: pool_speech(encoder.embed, s)[0], encoder.embed
        )
        trials = cosine_trials(protocol, voiceprints, tests)
        matrix = (
            trials.scores if cohort is None else as_norm(trials.scores, voiceprints, tests, cohort)
        )
        scores.append(matrix.ravel())
        is_target.append(trials.is_target.ravel())
    return Trials(scores=np.concatenate(scores), is_target=np.concatenate(is_target))


@dataclasses.dataclass(frozen=True)
class CalibrationFit:
    calibration: calibration.Calibration
    eer: float
    target_trials: int
    nontarget_trials: int


def fit_calibration(trials: Trials, *, normalized: bool) -> CalibrationFit:
    fitted = calibration.fit(trials.targets, trials.nontargets, normalized=normalized)
    return CalibrationFit(
        calibration=fitted,
        eer=eer(trials.targets, trials.nontargets)[0],
        target_trials=int(trials.is_target.sum()),
        nontarget_trials=int((~trials.is_target).sum()),
    )
