"""Fitting a model's cohort and calibration from speech with the CLI, and the service
applying them to its decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.cli import main
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder
from tests.api.helpers import enroll, verify
from tests.conftest import admin_key_for, bearer
from tests.voices import flac_bytes, synthetic_speech

VOICES = [
    (100.0, (600.0, 1000.0, 2300.0)),
    (130.0, (700.0, 1200.0, 2500.0)),
    (180.0, (800.0, 1500.0, 2700.0)),
    (230.0, (900.0, 1900.0, 3000.0)),
]


def speech_folder(root: Path, first_seed: int) -> Path:
    for index, (pitch, formants) in enumerate(VOICES):
        for utterance in range(3):
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
        main(["calibrate", str(development), "--enroll-seconds", "8", "--test-seconds", "2"]) == 0
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
            ["calibrate", str(development), "--raw", "--enroll-seconds", "8", "--test-seconds", "2"]
        )
        == 0
    )
    with TestClient(
        create_app(settings, encoder=encoder), headers=bearer(admin_key_for(settings.database_url))
    ) as client:
        scoring = client.get("/readyz").json()["scoring"]
        assert scoring["calibrated"] is True
        assert scoring["normalization"] is None


def test_calibrating_a_missing_folder_is_a_clear_error(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", str(tmp_path / "absent")]) == 2
    assert "is not a folder of speech" in capsys.readouterr().err


def test_a_calibration_shipped_in_the_model_folder_is_the_default(
    settings: Settings, model_folder: Path, tmp_path: Path
) -> None:
    import dataclasses
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
