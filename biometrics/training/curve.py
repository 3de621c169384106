"""The training curve of a distillation run, from its JSON-lines log, as a PNG."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TrainingHistory:
    """Steps counted across stages: a stage started from an earlier export
    (``started_from`` in the log) continues the count where that one ended."""

    losses: list[tuple[int, float]]
    eers: list[tuple[int, float]]
    stage_starts: list[int]  # the step at which each later stage began


def read_log(log_path: Path) -> TrainingHistory:
    """Later entries for a step win, so a resumed stage's log reads as one run."""
    losses: dict[int, float] = {}
    eers: dict[int, float] = {}
    offset, last, stage_starts = 0, 0, []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "started_from" in entry:
            offset = last
            stage_starts.append(offset)
        step = offset + entry.get("step", 0)
        if "loss" in entry:
            losses[step] = entry["loss"]
        if "dev_eer" in entry:
            eers[step] = entry["dev_eer"]
        last = max(last, step)
    return TrainingHistory(sorted(losses.items()), sorted(eers.items()), stage_starts)


def plot_training_curve(log_path: Path, png_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_log(log_path)
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(*zip(*history.losses, strict=True), color="tab:blue", label="training loss")
    for start in history.stage_starts:
        loss_axis.axvline(start, color="grey", linestyle="--", linewidth=1)
    loss_axis.set_xlabel("step (64 crops of 2-3 s)")
    loss_axis.set_ylabel("loss", color="tab:blue")
    eer_axis = loss_axis.twinx()
    steps, values = zip(*history.eers, strict=True)
    eer_axis.plot(steps, [100 * v for v in values], "o-", color="tab:red", label="dev EER")
    eer_axis.set_ylabel("EER % (held-out speakers, 3 s tests)", color="tab:red")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path
