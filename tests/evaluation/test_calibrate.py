"""Fitting a model's cohort and calibration from speech with the CLI, and the service
applying them to its decisions."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.cli import main
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder
from biometrics.evaluation.honesty import MAX_SLOPE
from biometrics.scoring.calibration import IDENTITY, Calibration, from_body
from biometrics.store import Database, queries
from tests.api.helpers import enroll, verify
from tests.conftest import admin_key_for, bearer
from tests.voices import flac_bytes, synthetic_speech

VOICES = [
    (100.0, (600.0, 1000.0, 2300.0)),
    (130.0, (700.0, 1200.0, 2500.0)),
    (180.0, (800.0, 1500.0, 2700.0)),
    (230.0, (900.0, 1900.0, 3000.0)),
]


def speech_folder(root: Path, first_seed: int, utterances: int = 3) -> Path:
    for index, (pitch, formants) in enumerate(VOICES):
        for utterance in range(utterances):
            seed = first_seed + 10 * index + utterance
            audio = synthetic_speech(6.0, pitch_hz=pitch, formants=formants, seed=seed)
            path = root / f"spk{first_seed + index}" / f"u{utterance}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(flac_bytes(audio))
    return root


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BIOMETRICS_ENCRYPTION_KEY", settings.encryption_key or "")
    monkeypatch.setenv("BIOMETRICS_MODEL_SOURCE", settings.model_source)
    monkeypatch.setenv("BIOMETRICS_LOG_FORMAT", "console")


def test_cohort_and_calibration_drive_the_service_decisions(
    cli_env: None,
    settings: Settings,
    encoder: SpeakerEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cohort_folder = speech_folder(tmp_path / "cohort", first_seed=100)
    development = speech_folder(tmp_path / "development", first_seed=500)
    assert main(["cohort", str(cohort_folder), "--per-speaker", "3", "--top-n", "5"]) == 0
    assert "cohort of 12 embeddings stored" in capsys.readouterr().out
    assert (
        main(["calibrate", str(development), "--enroll-seconds", "8", "--test-seconds", "2", "3"])
        == 0
    )
    assert "AS-norm scores" in capsys.readouterr().out

    with TestClient(
        create_app(settings, encoder=encoder), headers=bearer(admin_key_for(settings.database_url))
    ) as client:
        scoring = client.get("/readyz").json()["scoring"]
        assert scoring == {
            "calibrated": True,
            "normalization": "as-norm",
            "cohort_size": 12,
            "default_threshold": scoring["default_threshold"],
            "target_far": 0.01,
        }
        assert 0 < scoring["default_threshold"] < 100
        # One upload of 10 s: the voiceprint is that upload's embedding, and the same audio
        # again is a perfect match, far above every cohort impostor.
        assert enroll(client, "ada", seconds=10.0, seed=1).json()["status"] == "ENROLLED"
        verdict = verify(client, "ada", seconds=10.0, seed=1).json()
        assert verdict["calibrated"] is True
        assert verdict["similarity"] > 0.999
        assert verdict["normalized_score"] > 3.0
        assert verdict["threshold"] == scoring["default_threshold"]
        assert verdict["decision"] == "ACCEPT" and verdict["score"] > 90.0


def test_calibrating_raw_scores_ignores_the_cohort(
    cli_env: None, settings: Settings, encoder: SpeakerEncoder, tmp_path: Path
) -> None:
    development = speech_folder(tmp_path / "development", first_seed=500)
    assert (
        main(
            [
                "calibrate",
                str(development),
                "--raw",
                "--enroll-seconds",
                "8",
                "--test-seconds",
                "2",
                "3",
            ]
        )
        == 0
    )
    with TestClient(
        create_app(settings, encoder=encoder), headers=bearer(admin_key_for(settings.database_url))
    ) as client:
        scoring = client.get("/readyz").json()["scoring"]
        assert scoring["calibrated"] is True
        assert scoring["normalization"] is None


def stored_calibration(settings: Settings, encoder: SpeakerEncoder) -> Calibration:
    """The model's calibration row as the service reads it; it must be format 2."""
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            stored = queries.load_calibration(session, encoder.identity.checkpoint_sha256)
    finally:
        database.dispose()
    assert stored is not None and stored.format == 2 and stored.duration is not None
    return from_body(dataclasses.asdict(stored), "the test's database")


def test_calibrate_stores_a_duration_aware_calibration_the_service_scores_by_length(
    cli_env: None,
    settings: Settings,
    encoder: SpeakerEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    development = speech_folder(tmp_path / "development", first_seed=500, utterances=4)
    argv = ["calibrate", str(development), "--raw", "--enroll-seconds", "8"]
    assert main([*argv, "--test-seconds", "2", "3", "4"]) == 0
    printed = capsys.readouterr().out
    assert "duration-aware (format 2)" in printed
    for seconds in ("2", "3", "4"):
        assert f"  {seconds} s: centre " in printed and "spread" in printed
    assert "slope " in printed and "threshold for 1 % target FAR: " in printed

    fitted = stored_calibration(settings, encoder)
    assert fitted.duration != IDENTITY
    assert fitted.duration.seconds_range == (2.0, 4.0)
    # The slope is bounded as the shipped fit's is, in impostor spreads.
    assert 0 < fitted.slope <= MAX_SLOPE
    with TestClient(
        create_app(settings, encoder=encoder), headers=bearer(admin_key_for(settings.database_url))
    ) as client:
        scoring = client.get("/readyz").json()["scoring"]
        assert scoring["default_threshold"] == round(fitted.threshold_for_far(0.01), 2)
        assert enroll(client, "ada", seconds=10.0, seed=1).json()["status"] == "ENROLLED"
        verdicts = [verify(client, "ada", seconds=seconds, seed=7).json() for seconds in (3, 6)]
    for verdict in verdicts:
        similarity, seconds = verdict["similarity"], verdict["speech_seconds"]
        assert verdict["calibrated"] is True and verdict["normalized_score"] is None
        # The service reads the cosine against impostors at the verdict's own length:
        # the same cosine from another length would have scored differently.
        low, high = scores_within_rounding(fitted, similarity, seconds)
        assert low - 0.01 <= verdict["score"] <= high + 0.01
        other_low, other_high = scores_within_rounding(
            fitted, similarity, 4.0 if seconds < 3.0 else 2.0
        )
        assert other_high < low or other_low > high


def scores_within_rounding(
    fitted: Calibration, similarity: float, seconds: float
) -> tuple[float, float]:
    """The calibrated scores a verdict's rounded cosine (4 places) and speech seconds (2)
    can have come from: the small test model's impostor spread is narrow enough for the
    rounding to show in the score."""
    cosines = np.array([similarity - 5e-5, similarity + 5e-5])
    lengths = np.array([seconds - 0.005, seconds + 0.005])
    scores = fitted.score(cosines[:, None], lengths[None, :])
    return float(scores.min()), float(scores.max())


def test_calibrate_needs_two_test_lengths(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    development = speech_folder(tmp_path / "development", first_seed=500)
    argv = ["calibrate", str(development), "--raw", "--enroll-seconds", "8"]
    assert main([*argv, "--test-seconds", "2"]) == 2
    assert "two test lengths or more" in capsys.readouterr().err


def test_a_calibration_stored_before_format_2_still_loads_without_a_duration_model(
    settings: Settings, encoder: SpeakerEncoder
) -> None:
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            queries.save_calibration(
                session,
                encoder.identity.checkpoint_sha256,
                queries.StoredCalibration(40.0, -20.0, False, {0.01: 60.0, 0.001: 80.0}),
                description="an older calibrate",
                eer=0.05,
                target_trials=10,
                nontarget_trials=30,
            )
    finally:
        database.dispose()
    with TestClient(
        create_app(settings, encoder=encoder), headers=bearer(admin_key_for(settings.database_url))
    ) as client:
        assert client.get("/readyz").json()["scoring"]["default_threshold"] == 60.0
        assert enroll(client, "ada", seconds=10.0, seed=1).json()["status"] == "ENROLLED"
        verdict = verify(client, "ada", seconds=4.0, seed=7).json()
    # The plain logistic map of the cosine, whatever the length.
    expected = 100.0 / (1.0 + math.exp(-(40.0 * verdict["similarity"] - 20.0)))
    assert verdict["score"] == pytest.approx(expected, abs=0.01)


def test_calibrating_a_missing_folder_is_a_clear_error(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", str(tmp_path / "absent")]) == 2
    assert "is not a folder of speech" in capsys.readouterr().err


def test_a_calibration_shipped_in_the_model_folder_is_the_default(
    settings: Settings, model_folder: Path, tmp_path: Path
) -> None:
    import shutil

    import numpy as np

    from biometrics.embedding import load_encoder
    from biometrics.scoring.calibration import FOLDER_FILE, fit, write_json

    folder = tmp_path / "model-with-calibration"
    shutil.copytree(model_folder, folder)
    rng = np.random.default_rng(0)
    shipped = fit(rng.normal(0.7, 0.1, 200), rng.normal(0.2, 0.1, 2000), normalized=False)
    write_json(shipped, folder / FOLDER_FILE, fitted_on="synthetic trials")
    encoder = load_encoder(str(folder), tmp_path / "cache")
    with TestClient(
        create_app(dataclasses.replace(settings, model_source=str(folder)), encoder=encoder)
    ) as client:
        scoring = client.get("/readyz").json()["scoring"]
        assert scoring["calibrated"] is True
        assert scoring["normalization"] is None
        assert scoring["default_threshold"] == round(shipped.threshold_for_far(0.01), 2)
