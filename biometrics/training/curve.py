"""The training curve of a distillation run, from its JSON-lines log, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(log_path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) and (step, development EER) pairs; later entries for a step win,
    so a resumed run's log reads as one run."""
    losses: dict[int, float] = {}
    eers: dict[int, float] = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "loss" in entry:
            losses[entry["step"]] = entry["loss"]
        if "dev_eer" in entry:
            eers[entry["step"]] = entry["dev_eer"]
    return sorted(losses.items()), sorted(eers.items())


def plot_training_curve(log_path: Path, png_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses, eers = read_log(log_path)
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(*zip(*losses, strict=True), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("step (64 crops of 2-3 s)")
    loss_axis.set_ylabel("loss", color="tab:blue")
    eer_axis = loss_axis.twinx()
    steps, values = zip(*eers, strict=True)
    eer_axis.plot(steps, [100 * v for v in values], "o-", color="tab:red", label="dev EER")
    eer_axis.set_ylabel("EER % (held-out speakers, 3 s tests)", color="tab:red")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path
