"""scripts/compare_streaming.py as an operator runs it (a subprocess): the tables and
streaming.json, on synthetic speakers."""

from __future__ import annotations

import json
from pathlib import Path

from tests.evaluation.conftest import run_script


def test_writes_the_comparison_at_the_schedules_decision_points(
    subfolder_speech: Path, model_folder: Path, tmp_path: Path
) -> None:
    table = run_script(
        "compare_streaming",
        *("--data", str(subfolder_speech), "--model", str(model_folder), "--seed", "3"),
        *("--enroll-seconds", "8", "--schedule", "2", "2", "4", "--chunk-seconds", "2"),
        *("--out", str(tmp_path)),
    )

    document = json.loads((tmp_path / "streaming.json").read_text())
    assert document["data"] == str(subfolder_speech) and document["seed"] == 3
    (comparison,) = document["comparisons"]
    assert comparison["decision_seconds"] == [2.0, 4.0]
    assert set(comparison["strategies"]) >= {"chunk_average", "growing_window", "incremental"}
    assert "chunk_average" in table and "wall ms/stream" in table
    assert f"wrote {tmp_path / 'streaming.json'}" in table
