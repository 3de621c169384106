"""scripts/calibration_report.py as an operator runs it (a subprocess), on synthetic
speech laid out as the LibriSpeech excerpts are: the tables, the pictures, the guard's
figure and a shipped calibration the service reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from biometrics.scoring.calibration import FOLDER_FILE, read_json
from tests.evaluation.conftest import run_script
from tests.voices import flac_bytes, synthetic_speech

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_librispeech_like(root: Path) -> Path:
    """Three held-out train-clean-5 readers and one test-other-dev reader with 12 s
    utterances (20 s enrollments leave two for tests), six one-utterance voices."""
    rng = np.random.default_rng(0)

    def voice() -> dict[str, object]:
        formants = tuple(float(f) for f in np.sort(rng.uniform(500, 3000, 3)))
        return {"pitch_hz": float(rng.uniform(90, 250)), "formants": formants}

    readers = {"train-clean-5": ("19", "163", "1737"), "test-other-dev": ("367",)}
    for folder, speakers in readers.items():
        for speaker in speakers:
            spoken = voice()
            for index in range(4):
                path = root / folder / speaker / f"{speaker}-1-{index:04d}.flac"
                path.parent.mkdir(parents=True, exist_ok=True)
                audio = synthetic_speech(14.0, seed=int(rng.integers(1 << 30)), **spoken)
                path.write_bytes(flac_bytes(audio))
    for number in range(6):
        path = root / "train-clean-100" / f"{5000 + number}-1-0000.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flac_bytes(synthetic_speech(14.0, seed=number, **voice())))
    return root


def test_one_command_makes_the_tables_pictures_guard_and_calibration(
    model_folder: Path, tmp_path: Path
) -> None:
    data = write_librispeech_like(tmp_path / "librispeech")
    out, cache, ship = tmp_path / "out", tmp_path / "cache", tmp_path / "ship"
    ship.mkdir()
    argv = ["--data", str(data), "--model", str(model_folder), "--out", str(out)]
    argv += ["--cache", str(cache), "--folds", "2", "--ship", str(ship)]
    printed = run_script("calibration_report", *argv)

    report = json.loads((out / "report.json").read_text())
    assert report["speakers"] == {"enrolled": ["163", "1737", "19", "367"], "impostor_only": 6}
    rows = report["studies"]["wideband"]["rows"]
    assert {(row["target_far"], row["test_seconds"]) for row in rows} == {
        (far, seconds) for far in (0.01, 0.001) for seconds in (2.0, 3.0, 5.0, 10.0)
    }
    assert set(report["studies"]) == {
        "wideband",
        "wideband, duration-blind",
        "telephone, own calibration",
        "telephone, wideband calibration",
    }
    for picture in ("det.png", "histograms.png"):
        assert (out / picture).read_bytes().startswith(PNG_SIGNATURE)
    guard = json.loads((out / "guard.json").read_text())
    assert guard["test_seconds"] == 3.0 and guard["n_speakers"] == 3
    shipped = read_json(ship / FOLDER_FILE)
    assert shipped.duration.seconds_range == (2.0, 10.0)
    assert "real FAR [95 % CI]" in printed and "what a score means" in printed
    # the embeddings are kept for the next run, one trial set per channel
    assert len(list(cache.glob("trials-*.npz"))) == 2
