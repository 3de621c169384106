"""The benchmarks, tiny: each runs for a fraction of a second on generated voices (and the
suite's small model) and writes its JSON with the figures the performance notes quote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ingestion, machine_peak, model_vs_service, precision
from tests.voices import synthetic_speech, wav_bytes

VOICES = {"ada": (110.0, (650.0, 1100.0, 2400.0)), "bo": (180.0, (800.0, 1400.0, 2700.0))}
MACHINE_KEYS = {"date", "cpu_count", "cpu_model", "torch", "torch_threads"}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated speakers, four 8 s files each: two enroll, two give the test crops."""
    root = tmp_path_factory.mktemp("speech")
    for index, (name, (pitch, formants)) in enumerate(VOICES.items()):
        folder = root / name
        folder.mkdir()
        for file in range(4):
            samples = synthetic_speech(
                8.0, pitch_hz=pitch, formants=formants, seed=10 * index + file
            )
            (folder / f"{name}-{file}.wav").write_bytes(wav_bytes(samples))
    return root


def written(path: Path) -> dict:
    result = json.loads(path.read_text())
    assert set(result["machine"]) >= MACHINE_KEYS
    return result


def test_model_vs_service_compares_raw_batches_with_scored_rest_verdicts(
    speech: Path, model_folder: Path, tmp_path: Path
):
    out = tmp_path / "model_vs_service.json"
    args = ["--model", str(model_folder), "--seconds", "0.5", "--clients", "2"]
    assert model_vs_service.main([*args, "--speech", str(speech), "--out", str(out)]) == 0
    result = written(out)
    paths = [row["path"] for row in result["rows"]]
    assert paths[:3] == ["raw, one clip at a time", "raw, batches of 8", "raw, batches of 16"]
    assert paths[3].startswith("service, REST")
    service = result["rows"][3]
    assert service["clips"] > 0 and service["errors"] == 0  # verdicts were really scored
    assert all(row["clips_per_second"] > 0 for row in result["rows"])
    assert set(result["ratios"]) == {f"service/{path}" for path in paths[:3]}


def test_machine_peak_reports_fp32_gflops(tmp_path: Path):
    out = tmp_path / "machine_peak.json"
    assert machine_peak.main(["--seconds", "0.05", "--sizes", "256", "--out", str(out)]) == 0
    result = written(out)
    assert result["peak_gflops"]["float32"] > 0
    assert "float32" in result["ecapa_audio_seconds_per_second_at_peak"]


def test_ingestion_reports_each_stage_and_streams_per_core(speech: Path, tmp_path: Path):
    out = tmp_path / "ingestion.json"
    args = ["--seconds", "0.05", "--call-seconds", "8", "--speech", str(speech)]
    assert ingestion.main([*args, "--out", str(out)]) == 0
    result = written(out)
    assert [row["stage"] for row in result["rows"]][-1] == "all stages"
    assert len(result["rows"]) == 4
    assert result["streams_per_core"] > 1  # far faster than real time, even on a slow box
    assert 0 < result["speech_share"] <= 1


def test_a_missing_speech_folder_is_skipped_with_a_message(tmp_path: Path, capsys):
    assert ingestion.main(["--speech", str(tmp_path / "absent")]) == 2
    assert "no speech folder" in capsys.readouterr().err


def test_precision_compares_each_variant_with_fp32_in_the_same_run(
    speech: Path, model_folder: Path, tmp_path: Path
):
    out = tmp_path / "precision.json"
    # bf16 needs torch alone; onnx's export (tens of seconds) is tested in tests/embedding.
    variants = ["bf16"]
    args = ["--model", str(model_folder), "--seconds", "0.2", "--threads", "1"]
    args += ["--precision", *variants, "--speech", str(speech), "--out", str(out)]
    assert precision.main(args) == 0
    rows = {row["precision"]: row for row in written(out)["rows"]}
    assert list(rows) == ["fp32", *variants, "int8"]
    assert rows["fp32"]["speedup_batch_1"] == 1.0 and rows["fp32"]["cosine_min"] > 0.9999
    for name in variants:
        assert rows[name]["clips_per_second_batch_8"] > 0
        assert rows[name]["cosine_min"] >= 0.999
    assert rows["int8"]["quantised"] == 0 and "not offered" in rows["int8"]["failed"]
