"""The training curve reads a log of several stages as one count of steps."""

from __future__ import annotations

import json
from pathlib import Path

from biometrics.training.curve import plot_training_curve, read_log


def write_log(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


def test_a_later_stage_continues_the_step_count_and_a_resume_overwrites(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "train_log.jsonl",
        [
            {"teacher_mean_norm": 0.7},
            {"step": 10, "loss": 0.9},
            {"step": 20, "loss": 0.8},
            {"step": 20, "dev_eer": 0.05},
            {"resumed_at_step": 10},
            {"step": 20, "loss": 0.7},  # the resumed run's figure for step 20 wins
            {"started_from": "models/earlier"},
            {"step": 10, "loss": 0.6},
            {"step": 10, "dev_eer": 0.03},
        ],
    )
    history = read_log(log)
    assert history.losses == [(10, 0.9), (20, 0.7), (30, 0.6)]
    assert history.eers == [(20, 0.05), (30, 0.03)]
    assert history.stage_starts == [20]
    picture = plot_training_curve(log, tmp_path / "curve.png")
    assert picture.read_bytes().startswith(b"\x89PNG")
