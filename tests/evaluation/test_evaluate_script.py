"""scripts/evaluate.py as an operator runs it (a subprocess): the table, results.json and
det.png, on synthetic speakers and (when present) on LibriSpeech."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE
from biometrics.errors import ModelLoadError
from biometrics.evaluation.run import make_embedder
from tests.conftest import LIBRISPEECH
from tests.evaluation.conftest import run_script

REQUIRED = (
    "test_seconds",
    "eer",
    "min_dcf_0.01",
    "min_dcf_0.05",
    "frr_at_far_1pct",
    "frr_at_far_0.1pct",
    "n_target",
    "n_nontarget",
    "model",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(data: Path, model: Path, out: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """results.json and the printed table of one run."""
    argv = ["--data", str(data), "--model", str(model), "--out", str(out), *extra]
    table = run_script("evaluate", *argv)
    return json.loads((out / "results.json").read_text()), table


def without_timings(document: dict[str, Any]) -> dict[str, Any]:
    for entry in document["results"]:
        entry.pop("embed_ms_per_test")
    return document


def test_writes_results_and_det_for_every_test_length(
    subfolder_speech: Path, model_folder: Path, tmp_path: Path
) -> None:
    extra = ("--enroll-seconds", "8", "--test-seconds", "1", "2", "--seed", "3")
    extra += ("--max-tests-per-speaker", "4")
    document, table = run(subfolder_speech, model_folder, tmp_path / "a", *extra)

    assert document["seed"] == 3
    assert document["enroll_seconds"] == 8.0
    assert document["data"] == str(subfolder_speech)
    assert [entry["test_seconds"] for entry in document["results"]] == [1.0, 2.0]
    for entry in document["results"]:
        assert set(REQUIRED) <= set(entry)
        assert entry["model"]["sha256"] and entry["model"]["name"]
        assert entry["n_target"] == 3 * 4 and entry["n_nontarget"] == 2 * entry["n_target"]
        assert 0.0 <= entry["eer"] <= 1.0
    assert (tmp_path / "a" / "det.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "EER %" in table and "minDCF.01" in table

    again, _ = run(subfolder_speech, model_folder, tmp_path / "b", *extra)
    assert without_timings(again) == without_timings(document)


@pytest.mark.skipif(
    not (LIBRISPEECH / "test-other-dev").is_dir(), reason="shared LibriSpeech absent"
)
def test_runs_on_librispeech_test_other_dev(model_folder: Path, tmp_path: Path) -> None:
    extra = ("--test-seconds", "3", "--max-tests-per-speaker", "5")
    document, _ = run(LIBRISPEECH / "test-other-dev", model_folder, tmp_path, *extra)
    (entry,) = document["results"]
    assert set(REQUIRED) <= set(entry)
    assert entry["test_seconds"] == 3.0
    assert entry["n_target"] > 0 and entry["n_nontarget"] > 0
    assert (tmp_path / "det.png").is_file()


def test_a_model_runs_in_the_precision_its_spec_names(model_folder: Path, tmp_path: Path) -> None:
    crop = (0.1 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    fp32 = make_embedder(str(model_folder), cache_dir=tmp_path)
    bf16 = make_embedder(f"{model_folder}@bf16", cache_dir=tmp_path)

    assert bf16.name == f"{model_folder}@bf16"
    assert bf16.identity == fp32.identity  # the same weights, in another number format
    a, b = fp32.embed([crop])[0], bf16.embed([crop])[0]
    assert not np.array_equal(a, b) and float(a @ b) > 0.99
    with pytest.raises(ModelLoadError, match="neither an existing folder"):
        make_embedder(f"{model_folder}@fp64", cache_dir=tmp_path)
