"""Does a threshold's false-accept rate hold? Calibration fitted on many impostor pairs,
cross-validated by speaker, measured on speakers it was not fitted on.

The trials: every enrolled speaker (held-out readers with minutes of speech, 20 s
enrollments) is tested with crops of their own other utterances (targets) and with
crops of everybody else: the other enrolled readers and a large set of voices that are
never enrolled, one utterance each (impostors only). Speakers, enrolled or not, are
split into folds; each fold's trials (its enrolled speakers against its own tests) are
calibrated by a fit on the other folds' trials only, so no measured trial involves a
voice the calibration saw. Rates come with Wilson 95 % intervals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.decode import Samples
from biometrics.evaluation.protocol import SpeakerSpeech, TestCrop, build_protocol, embed_tests
from biometrics.evaluation.run import Embedder
from biometrics.scoring import calibration
from biometrics.scoring.calibration import Calibration

TELEPHONE_RATE = 8_000
MU = 255.0
# The shipped fit's regularisation: a ridge on the standardised score's slope and a bound
# on it (chosen so that scores between the operating points stay readable, see
# docs/accuracy.md); a duration-blind fit on cosine gets no bound (its scale differs).
PENALTY = 0.002
MAX_SLOPE = 2.0
Fit = Callable[["Trials"], Calibration]


def telephone(samples: Samples) -> Samples:
    """A telephone line: down to 8 kHz (band-limited by the resampler's filter), G.711
    mu-law companding at 8 bits, and back to 16 kHz as the service resamples a call."""
    narrow = np.asarray(soxr.resample(samples, SAMPLE_RATE, TELEPHONE_RATE), dtype=np.float64)
    narrow = np.clip(narrow, -1.0, 1.0)
    companded = np.sign(narrow) * np.log1p(MU * np.abs(narrow)) / np.log1p(MU)
    code = np.round(companded * 127.0) / 127.0  # the 8-bit code word
    expanded = np.sign(code) * np.expm1(np.abs(code) * np.log1p(MU)) / MU
    return np.asarray(soxr.resample(expanded, TELEPHONE_RATE, SAMPLE_RATE), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TrialSet:
    """Embedded tests and voiceprints: every test is scored against every voiceprint."""

    enrolled: npt.NDArray[np.str_]  # (n_enrolled,) speaker ids
    voiceprints: npt.NDArray[np.float32]  # (n_enrolled, dim)
    test_speakers: npt.NDArray[np.str_]  # (n_tests,)
    test_seconds: npt.NDArray[np.float64]  # (n_tests,)
    tests: npt.NDArray[np.float32]  # (n_tests, dim)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{field.name: getattr(self, field.name) for field in _FIELDS})

    @classmethod
    def load(cls, path: Path) -> TrialSet:
        with np.load(path) as saved:
            return cls(**{field.name: saved[field.name] for field in _FIELDS})

    def trials(self) -> Trials:
        scores = self.tests @ self.voiceprints.T
        n_tests, n_enrolled = scores.shape
        enrolled = np.tile(self.enrolled, n_tests)
        speakers = np.repeat(self.test_speakers, n_enrolled)
        return Trials(
            scores=scores.reshape(-1).astype(np.float64),
            seconds=np.repeat(self.test_seconds, n_enrolled),
            enrolled=enrolled,
            test_speakers=speakers,
            impostor_only=np.repeat(~np.isin(self.test_speakers, self.enrolled), n_enrolled),
        )


_FIELDS = dataclasses.fields(TrialSet)


@dataclasses.dataclass(frozen=True)
class Trials:
    """One row per (test, voiceprint) pair."""

    scores: npt.NDArray[np.float64]
    seconds: npt.NDArray[np.float64]
    enrolled: npt.NDArray[np.str_]
    test_speakers: npt.NDArray[np.str_]
    impostor_only: npt.NDArray[np.bool_]  # the test's speaker has no voiceprint

    @property
    def is_target(self) -> npt.NDArray[np.bool_]:
        target: npt.NDArray[np.bool_] = self.enrolled == self.test_speakers
        return target

    def where(self, mask: npt.NDArray[np.bool_]) -> Trials:
        return Trials(**{name: getattr(self, name)[mask] for name in TRIAL_COLUMNS})


TRIAL_COLUMNS = tuple(field.name for field in dataclasses.fields(Trials))


def impostor_crops(
    speech: Sequence[SpeakerSpeech], seconds: float, per_speaker: int
) -> list[TestCrop]:
    """Up to ``per_speaker`` crops of ``seconds`` from each impostor-only speaker's
    utterances, spread evenly over them (overlapping where an utterance is short)."""
    crop = int(seconds * SAMPLE_RATE)
    crops: list[TestCrop] = []
    for entry in speech:
        pieces = [utterance for utterance in entry.utterances if len(utterance) >= crop]
        if not pieces:
            continue
        joined = np.concatenate(pieces)
        starts = np.linspace(0, len(joined) - crop, per_speaker).astype(int)
        crops.extend(TestCrop(entry.speaker, joined[start : start + crop]) for start in starts)
    return crops


def embed_trial_set(
    embedder: Embedder,
    enrolled: Sequence[SpeakerSpeech],
    impostors: Sequence[SpeakerSpeech],
    test_seconds: Sequence[float],
    *,
    max_tests_per_speaker: int,
    impostor_crops_per_speaker: int,
    seed: int,
    enroll_seconds: float = 20.0,
) -> TrialSet:
    """Voiceprints of the enrolled speakers (the same enrollments at every length) and
    embeddings of their test crops and of the impostor-only speakers' crops."""
    tests: list[TestCrop] = []
    seconds: list[float] = []
    embedded = []
    protocol = None
    for length in test_seconds:
        protocol = build_protocol(
            enrolled,
            enroll_seconds=enroll_seconds,
            test_seconds=length,
            max_tests_per_speaker=max_tests_per_speaker,
            seed=seed,
        )
        crops = protocol.tests + impostor_crops(impostors, length, impostor_crops_per_speaker)
        embedded.append(embed_tests(crops, embedder.embed))  # one length: no padding
        tests.extend(crops)
        seconds.extend([length] * len(crops))
    if protocol is None:
        raise ValueError("no test lengths were asked for")
    speakers = protocol.speakers
    voiceprints = np.stack(
        [embedder.pool(np.concatenate(protocol.enrollments[s])) for s in speakers]
    )
    return TrialSet(
        enrolled=np.array(speakers),
        voiceprints=voiceprints.astype(np.float32),
        test_speakers=np.array([test.speaker for test in tests]),
        test_seconds=np.array(seconds, dtype=np.float64),
        tests=np.concatenate(embedded).astype(np.float32),
    )


def cache_key(*parts: object) -> str:
    """A file name for a trial set made with these settings (model, data, seeds)."""
    text = json.dumps([str(part) for part in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def assign_folds(
    enrolled: Sequence[str], impostors: Sequence[str], folds: int, seed: int
) -> dict[str, int]:
    """Each speaker's fold, enrolled speakers and impostor-only ones dealt out apart so
    that every fold holds some of each."""
    rng = np.random.default_rng(seed)
    assigned: dict[str, int] = {}
    for group in (sorted(enrolled), sorted(impostors)):
        for position, index in enumerate(rng.permutation(len(group))):
            assigned[group[index]] = position % folds
    return assigned


def duration_aware_fit(trials: Trials) -> Calibration:
    """The shipped method: duration model, then a bounded, regularised logistic map."""
    target = trials.is_target
    return fit_by_length(
        trials.scores[target],
        trials.scores[~target],
        target_seconds=trials.seconds[target],
        nontarget_seconds=trials.seconds[~target],
        normalized=False,
    )


def fit_by_length(
    targets: npt.NDArray[np.float64],
    nontargets: npt.NDArray[np.float64],
    *,
    target_seconds: npt.NDArray[np.float64],
    nontarget_seconds: npt.NDArray[np.float64],
    normalized: bool,
) -> Calibration:
    """The shipped method on scores and their test lengths: what the report fits and
    ships and what ``biometrics calibrate`` fits on an operator's speech, so that the two
    agree. The regularisation is in impostor spreads, so it holds for AS-normalised
    scores as well as for cosine."""
    return calibration.fit(
        targets,
        nontargets,
        normalized=normalized,
        target_seconds=target_seconds,
        nontarget_seconds=nontarget_seconds,
        penalty=PENALTY,
        max_slope=MAX_SLOPE,
    )


def duration_blind_fit(trials: Trials) -> Calibration:
    """The earlier method: one logistic map on cosine, whatever the test length."""
    target = trials.is_target
    return calibration.fit(trials.scores[target], trials.scores[~target], normalized=False)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Out-of-fold trials: each scored by the calibration of the folds it was not in."""

    trials: Trials
    calibrated: npt.NDArray[np.float64]  # 0-100
    thresholds: dict[float, npt.NDArray[np.float64]]  # target FAR -> each trial's threshold
    fitted: list[Calibration]  # one per fold


def cross_validate(
    trials: Trials, folds: dict[str, int], fit: Fit, target_fars: Sequence[float]
) -> HeldOut:
    enrolled_fold = np.array([folds[s] for s in trials.enrolled])
    test_fold = np.array([folds[s] for s in trials.test_speakers])
    parts: list[Trials] = []
    calibrated: list[npt.NDArray[np.float64]] = []
    thresholds: dict[float, list[npt.NDArray[np.float64]]] = {far: [] for far in target_fars}
    fitted = []
    for fold in range(int(enrolled_fold.max()) + 1):
        model = fit(trials.where((enrolled_fold != fold) & (test_fold != fold)))
        measured = trials.where((enrolled_fold == fold) & (test_fold == fold))
        parts.append(measured)
        calibrated.append(model.score(measured.scores, measured.seconds))
        for far in target_fars:
            thresholds[far].append(np.full(len(measured.scores), model.threshold_for_far(far)))
        fitted.append(model)
    joined = Trials(
        **{name: np.concatenate([getattr(part, name) for part in parts]) for name in TRIAL_COLUMNS}
    )
    return HeldOut(
        trials=joined,
        calibrated=np.concatenate(calibrated),
        thresholds={far: np.concatenate(values) for far, values in thresholds.items()},
        fitted=fitted,
    )


def wilson(errors: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score 95 % interval of a rate: unlike the normal approximation it
    stays inside [0, 1] and is honest at zero or a few errors."""
    if trials == 0:
        return 0.0, 1.0
    rate = errors / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def operating_rows(
    held_out: HeldOut, target_fars: Sequence[float], nontargets: npt.NDArray[np.bool_] | None = None
) -> list[dict[str, Any]]:
    """Real FAR and FRR at each fold's threshold for each target FAR, per test length.
    ``nontargets`` narrows which non-target trials count (e.g. impostor-only voices)."""
    trials = held_out.trials
    counted = ~trials.is_target if nontargets is None else nontargets & ~trials.is_target
    rows = []
    for far in target_fars:
        accepted = held_out.calibrated >= held_out.thresholds[far]
        for seconds in np.unique(trials.seconds):
            length = trials.seconds == seconds
            rows.append(
                {
                    "target_far": far,
                    "test_seconds": float(seconds),
                    **rate("far", accepted[length & counted]),
                    **rate("frr", ~accepted[length & trials.is_target]),
                    "threshold": float(np.mean(held_out.thresholds[far][length])),
                    "pairs": len(
                        set(
                            zip(
                                trials.enrolled[length & counted],
                                trials.test_speakers[length & counted],
                                strict=True,
                            )
                        )
                    ),
                }
            )
    return rows


def rate(name: str, errors: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """A rate, its interval and its trial count under ``name``."""
    low, high = wilson(int(errors.sum()), len(errors))
    return {
        name: float(errors.mean()) if len(errors) else float("nan"),
        f"{name}_ci": [low, high],
        f"{name}_trials": len(errors),
    }


def score_meaning_rows(held_out: HeldOut, scores: Sequence[float]) -> list[dict[str, Any]]:
    """How often impostors and genuine callers reach each calibrated score, by length."""
    trials = held_out.trials
    rows = []
    for score in scores:
        for seconds in np.unique(trials.seconds):
            length = trials.seconds == seconds
            reached = held_out.calibrated >= score
            rows.append(
                {
                    "score": score,
                    "test_seconds": float(seconds),
                    **rate("far", reached[length & ~trials.is_target]),
                    **rate("frr", ~reached[length & trials.is_target]),
                }
            )
    return rows
