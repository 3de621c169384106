"""The calibration honesty report on LibriSpeech: the trial sets (wideband and
telephone), the cross-validated tables, the pictures and the calibration to ship.

    python scripts/calibration_report.py --data ../shared/data/librispeech --out DIR

Enrolled: the six train-clean-5 readers the bundled model never trained on and the
five of test-other-dev. Impostors only: the train-clean-100 voices (one utterance
each), less the enrolled ones. Embeddings are cached under ``--cache`` (keyed by model,
data and settings), so a rerun only recomputes the tables and pictures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from biometrics.audio.decode import Samples
from biometrics.evaluation import honesty
from biometrics.evaluation.protocol import find_speakers, load_speech
from biometrics.evaluation.run import Embedder, Evaluation, evaluate
from biometrics.scoring.calibration import FOLDER_FILE, Calibration, write_json
from biometrics.training.data import HELD_OUT_SPEAKERS

TARGET_FARS = (0.01, 0.001)
MEANING_SCORES = (50.0, 90.0, 99.0)
CHANNELS: dict[str, Callable[[Samples], Samples] | None] = {
    "wideband": None,
    "telephone": honesty.telephone,
}


# The regression guard's small, fixed trial list: the first utterances of each held-out
# train-clean-5 reader, 3 s tests. Small enough for CI, big enough for an interval.
GUARD_FILES_PER_SPEAKER = 14
GUARD_TESTS_PER_SPEAKER = 25
GUARD_TEST_SECONDS = 3.0
GUARD_FILE = "guard.json"


@dataclasses.dataclass(frozen=True)
class StudySettings:
    data: Path
    cache: Path
    test_seconds: tuple[float, ...] = (2.0, 3.0, 5.0, 10.0)
    folds: int = 3
    max_tests_per_speaker: int = 40
    impostor_crops_per_speaker: int = 3
    seed: int = 0


def trial_set(embedder: Embedder, settings: StudySettings, channel: str) -> honesty.TrialSet:
    """The channel's embedded trials, from the cache when this exact set was made before."""
    key = honesty.cache_key(
        embedder.identity["sha256"],
        channel,
        settings.data.resolve(),
        settings.test_seconds,
        settings.max_tests_per_speaker,
        settings.impostor_crops_per_speaker,
        settings.seed,
    )
    path = settings.cache / f"trials-{channel}-{key}.npz"
    if path.is_file():
        return honesty.TrialSet.load(path)
    enrolled, impostors = speakers(settings.data)
    through = CHANNELS[channel]
    made = honesty.embed_trial_set(
        embedder,
        load_speech(enrolled, channel=through),
        load_speech(impostors, channel=through),
        settings.test_seconds,
        max_tests_per_speaker=settings.max_tests_per_speaker,
        impostor_crops_per_speaker=settings.impostor_crops_per_speaker,
        seed=settings.seed,
    )
    made.save(path)
    return made


def speakers(data: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """The enrolled readers' files and the impostor-only voices' files."""
    enrolled = {
        speaker: paths
        for speaker, paths in find_speakers(data / "train-clean-5").items()
        if speaker in HELD_OUT_SPEAKERS
    } | find_speakers(data / "test-other-dev")
    impostors = {
        speaker: paths
        for speaker, paths in find_speakers(data / "train-clean-100").items()
        if speaker not in enrolled
    }
    return enrolled, impostors


def guard_evaluation(embedder: Embedder, data: Path) -> Evaluation:
    """The model's EER on the guard's trial list (see ``GUARD_*``), with its interval."""
    speakers = {
        speaker: paths[:GUARD_FILES_PER_SPEAKER]
        for speaker, paths in find_speakers(data / "train-clean-5").items()
        if speaker in HELD_OUT_SPEAKERS
    }
    (result,) = evaluate(
        embedder,
        load_speech(speakers),
        [GUARD_TEST_SECONDS],
        max_tests_per_speaker=GUARD_TESTS_PER_SPEAKER,
    )
    return result


def study(trials: honesty.Trials, folds: dict[str, int], fit: honesty.Fit) -> dict[str, Any]:
    held_out = honesty.cross_validate(trials, folds, fit, TARGET_FARS)
    return {
        "held_out": held_out,
        "rows": honesty.operating_rows(held_out, TARGET_FARS),
        "outside_voices": honesty.operating_rows(
            held_out, TARGET_FARS, nontargets=held_out.trials.impostor_only
        ),
        "enrolled_voices": honesty.operating_rows(
            held_out, TARGET_FARS, nontargets=~held_out.trials.impostor_only
        ),
        "meaning": honesty.score_meaning_rows(held_out, MEANING_SCORES),
    }


def run(embedder: Embedder, settings: StudySettings, out: Path) -> dict[str, Any]:
    """Every table and picture into ``out``; returns the report (also report.json) with
    the calibrations to ship (fitted on every wideband and every telephone trial)."""
    sets = {channel: trial_set(embedder, settings, channel).trials() for channel in CHANNELS}
    wideband = sets["wideband"]
    folds = honesty.assign_folds(
        sorted(set(wideband.enrolled)),
        sorted(set(wideband.test_speakers[wideband.impostor_only])),
        settings.folds,
        settings.seed,
    )
    studies = {
        "wideband": study(wideband, folds, honesty.duration_aware_fit),
        "wideband, duration-blind": study(wideband, folds, honesty.duration_blind_fit),
        "telephone, own calibration": study(sets["telephone"], folds, honesty.duration_aware_fit),
        "telephone, wideband calibration": study(
            sets["telephone"], folds, wideband_calibration_of_fold(wideband, folds)
        ),
    }
    shipped = {channel: honesty.duration_aware_fit(trials) for channel, trials in sets.items()}
    out.mkdir(parents=True, exist_ok=True)
    pictures(out, studies["wideband"]["held_out"], shipped["wideband"])
    report = {
        "model": embedder.identity,
        "settings": {
            key: value if isinstance(value, int | tuple) else str(value)
            for key, value in dataclasses.asdict(settings).items()
            if key != "cache"  # where this machine kept embeddings: not part of the result
        },
        "speakers": {
            "enrolled": sorted(set(wideband.enrolled)),
            "impostor_only": len(set(wideband.test_speakers[wideband.impostor_only])),
        },
        "studies": {
            name: {key: value for key, value in result.items() if key != "held_out"}
            for name, result in studies.items()
        },
        "shipped": {channel: describe(fitted) for channel, fitted in shipped.items()},
    }
    guard = guard_evaluation(embedder, settings.data)
    (out / GUARD_FILE).write_text(json.dumps(guard.as_dict(), indent=2) + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    report["calibrations"] = shipped
    return report


def wideband_calibration_of_fold(wideband: honesty.Trials, folds: dict[str, int]) -> honesty.Fit:
    """A fit that ignores the trials it is given and fits the same fold's wideband trials:
    how a telephone call fares with the wideband calibration, speakers still held out."""

    def fit(telephone_fitting: honesty.Trials) -> Calibration:
        fitting_speakers = set(telephone_fitting.enrolled) | set(telephone_fitting.test_speakers)
        mask = np.isin(wideband.enrolled, list(fitting_speakers)) & np.isin(
            wideband.test_speakers, list(fitting_speakers)
        )
        return honesty.duration_aware_fit(wideband.where(mask))

    return fit


def describe(fitted: Calibration) -> dict[str, Any]:
    return {
        "slope": fitted.slope,
        "intercept": fitted.intercept,
        "duration": dataclasses.asdict(fitted.duration),
        "thresholds": {str(far): value for far, value in fitted.thresholds.items()},
    }


def ship(report: dict[str, Any], folder: Path, settings: StudySettings) -> Path:
    """Write the wideband calibration into a model folder's ``calibration.json``. The
    telephone one is reported, not shipped: the wideband one keeps telephone-band calls
    within a factor of two of their target FAR (docs/accuracy.md)."""
    speakers_note = report["speakers"]
    return write_json(
        report["calibrations"]["wideband"],
        folder / FOLDER_FILE,
        fitted_on=(
            "LibriSpeech readers "
            + ", ".join(speakers_note["enrolled"])
            + " (20 s enrollments) against each other and "
            f"{speakers_note['impostor_only']} train-clean-100 voices; tests of "
            + ", ".join(f"{s:g}" for s in settings.test_seconds)
            + " s of speech (scripts/calibration_report.py)"
        ),
        held_out_rows=report["studies"]["wideband"]["rows"],
    )


def pictures(out: Path, held_out: honesty.HeldOut, shipped: Calibration) -> None:
    """det.png (out-of-fold trials, one curve per length, the 1 % and 0.1 % operating
    points marked) and histograms.png (genuine and impostor scores per length, with the
    shipped thresholds)."""
    from matplotlib import pyplot

    from biometrics.evaluation.report import det_axes, draw_det

    trials = held_out.trials
    figure, axes = det_axes()
    for seconds in np.unique(trials.seconds):
        length = trials.seconds == seconds
        points = []
        for far in TARGET_FARS:
            accepted = held_out.calibrated[length] >= held_out.thresholds[far][length]
            target = trials.is_target[length]
            points.append((float(accepted[~target].mean()), float((~accepted[target]).mean())))
        draw_det(
            axes,
            f"{seconds:g} s",
            held_out.calibrated[length & trials.is_target],
            held_out.calibrated[length & ~trials.is_target],
            points,
        )
    axes.set_title("DET, held-out speakers (dots: thresholds for 1 % and 0.1 % FAR)")
    figure.savefig(out / "det.png", dpi=110, bbox_inches="tight")
    pyplot.close(figure)

    lengths = np.unique(trials.seconds)
    figure, grid = pyplot.subplots(len(lengths), 1, figsize=(7, 2.2 * len(lengths)), sharex=True)
    bins = np.linspace(0, 100, 51)
    for axis, seconds in zip(np.atleast_1d(grid), lengths, strict=True):
        length = trials.seconds == seconds
        for target, label, colour in (
            (False, "impostor", "tab:red"),
            (True, "genuine", "tab:blue"),
        ):
            chosen = held_out.calibrated[length & (trials.is_target == target)]
            axis.hist(chosen, bins=bins, alpha=0.6, color=colour, label=label, density=True)
        for far, style in zip(TARGET_FARS, ("--", ":"), strict=True):
            axis.axvline(
                shipped.threshold_for_far(far),
                color="k",
                linestyle=style,
                label=f"threshold, FAR {100 * far:g} %",
            )
        axis.set_yscale("log")
        axis.set_ylabel(f"{seconds:g} s")
    np.atleast_1d(grid)[0].legend(fontsize="small", ncol=2)
    np.atleast_1d(grid)[-1].set_xlabel("calibrated score (0-100), held-out speakers")
    figure.savefig(out / "histograms.png", dpi=110, bbox_inches="tight")
    pyplot.close(figure)


def markdown(report: dict[str, Any]) -> str:
    """The report's tables in the form docs/accuracy.md shows them."""
    lines = []
    for name, result in report["studies"].items():
        for key, title in (
            ("rows", "every impostor"),
            ("outside_voices", "impostors never enrolled"),
            ("enrolled_voices", "impostors from the enrolled readers"),
        ):
            lines += [
                f"\n{name}: {title}\n",
                "| target FAR | test s | threshold | real FAR [95 % CI] | FRR [95 % CI] "
                "| non-targets | pairs | targets |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for row in result[key]:
                lines.append(
                    f"| {100 * row['target_far']:g} % | {row['test_seconds']:g} "
                    f"| {row['threshold']:.1f} | {percent(row, 'far')} | {percent(row, 'frr')} "
                    f"| {row['far_trials']} | {row['pairs']} | {row['frr_trials']} |"
                )
        lines += [
            f"\n{name}: what a score means\n",
            "| score | test s | impostors reaching it [95 % CI] | genuine below it [95 % CI] |",
            "|---:|---:|---:|---:|",
        ]
        for row in result["meaning"]:
            lines.append(
                f"| {row['score']:g} | {row['test_seconds']:g} | {percent(row, 'far')} "
                f"| {percent(row, 'frr')} |"
            )
    return "\n".join(lines)


def percent(row: dict[str, Any], name: str) -> str:
    low, high = row[f"{name}_ci"]
    return f"{100 * row[name]:.2f} % [{100 * low:.2f}, {100 * high:.2f}]"
