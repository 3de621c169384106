"""Evaluation results for people and for machines: a terminal table, results.json
and a DET plot; and the streaming comparison's tables and streaming.json.

The JSON keeps everything needed to compare runs (the model identity, the
protocol settings, every metric and count); the DET plot shows the whole
trade-off between false accepts and false rejects, where one EER cannot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from biometrics.evaluation.metrics import error_rates
from biometrics.evaluation.run import Evaluation

RESULTS_FILE = "results.json"
STREAMING_FILE = "streaming.json"
DET_FILE = "det.png"
# Normal-deviate axis ticks, in percent: the DET convention.
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
DET_LIMITS = (0.05, 50.0)

COLUMNS = (
    ("model", "<"),
    ("T s", ">"),
    ("EER % [95% CI]", ">"),
    ("minDCF.01", ">"),
    ("minDCF.05", ">"),
    ("FRR@FAR1%", ">"),
    ("FRR@FAR.1%", ">"),
    ("targets", ">"),
    ("non-targets", ">"),
    ("ms/crop", ">"),
)
STREAMING_COLUMNS = (
    ("strategy", "<"),
    ("decision s", ">"),
    ("EER % [95% CI]", ">"),
    ("minDCF.01", ">"),
    ("FRR@FAR1%", ">"),
    ("targets", ">"),
    ("non-targets", ">"),
    ("audio s/stream", ">"),
    ("wall ms/stream", ">"),
)
COST_COLUMNS = (
    ("strategy", "<"),
    ("audio s", ">"),
    ("audio s/stream", ">"),
    ("wall s", ">"),
    ("wall ms/stream", ">"),
)


def format_eer(metrics: dict[str, Any]) -> str:
    """EER in percent, with its bootstrap interval when there is one."""
    text = f"{100 * metrics['eer']:.2f}"
    if metrics.get("eer_ci"):
        low, high = metrics["eer_ci"]
        text += f" [{100 * low:.2f}, {100 * high:.2f}]"
    return text


def table_row(evaluation: Evaluation) -> list[str]:
    metrics = evaluation.metrics
    return [
        evaluation.label,
        f"{evaluation.test_seconds:g}",
        format_eer(metrics),
        f"{metrics['min_dcf_0.01']:.3f}",
        f"{metrics['min_dcf_0.05']:.3f}",
        f"{100 * metrics['frr_at_far_1pct']:.1f}%",
        f"{100 * metrics['frr_at_far_0.1pct']:.1f}%",
        str(metrics["n_target"]),
        str(metrics["n_nontarget"]),
        f"{evaluation.embed_ms_per_test:.1f}",
    ]


def format_table(
    rows: Sequence[Sequence[str]], columns: Sequence[tuple[str, str]], *, rule: bool = True
) -> str:
    """Aligned plain-text columns; ``columns`` is (header, '<' or '>') per column; ``rule``
    draws a line under the header."""
    widths = [
        max([len(header), *(len(row[index]) for row in rows)])
        for index, (header, _) in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(cells, columns, widths, strict=True)
        ).rstrip()

    header = line([name for name, _ in columns])
    return "\n".join([header, *(["-" * len(header)] if rule else []), *(line(row) for row in rows)])


def results_table(evaluations: Sequence[Evaluation]) -> str:
    """One row per model and test length."""
    return format_table([table_row(evaluation) for evaluation in evaluations], COLUMNS)


def write_results(
    folder: Path, settings: dict[str, Any], evaluations: Sequence[Evaluation]
) -> Path:
    """``folder/results.json``: the run's settings (data, seed, enroll_seconds, ...)
    and one entry per model and test length."""
    document = {**settings, "results": [evaluation.as_dict() for evaluation in evaluations]}
    return write_json(folder / RESULTS_FILE, document)


def write_streaming(
    folder: Path, settings: dict[str, Any], comparisons: Sequence[dict[str, Any]]
) -> Path:
    """``folder/streaming.json``: the run's settings (data, seed) and one comparison
    per model."""
    return write_json(folder / STREAMING_FILE, {**settings, "comparisons": list(comparisons)})


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def streaming_table(comparison: dict[str, Any]) -> str:
    """One streaming comparison: metrics and cost per strategy and decision point, then
    each strategy's total cost."""
    rows = [
        [
            name,
            f"{point['decision_seconds']:g}",
            format_eer(point),
            f"{point['min_dcf_0.01']:.3f}",
            f"{100 * point['frr_at_far_1pct']:.1f}%",
            str(point["n_target"]),
            str(point["n_nontarget"]),
            f"{point['audio_seconds_per_stream']:.1f}",
            f"{point['wall_ms_per_stream']:.1f}",
        ]
        for name, result in comparison["strategies"].items()
        for point in result["points"]
    ]
    metrics = format_table(rows, STREAMING_COLUMNS)
    costs = format_table(
        [
            [
                name,
                f"{result['cost']['audio_seconds']:.1f}",
                f"{result['cost']['audio_seconds_per_stream']:.1f}",
                f"{result['cost']['wall_seconds']:.2f}",
                f"{result['cost']['wall_ms_per_stream']:.1f}",
            ]
            for name, result in comparison["strategies"].items()
        ],
        COST_COLUMNS,
    )
    title = (
        f"{comparison['label']}: {comparison['n_streams']} streams, "
        f"{comparison['n_speakers']} speakers, chunks of {comparison['chunk_seconds']:g} s"
    )
    return f"{title}\n\n{metrics}\n\n{costs}"


def normal_deviate(rates: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Error rates (fractions) on the DET plot's normal-deviate scale, clipped to its
    range so that zero error rates stay drawable."""
    from scipy.special import ndtri

    low, high = (limit / 100 for limit in DET_LIMITS)
    return np.asarray(ndtri(np.clip(rates, low, high)), dtype=np.float64)


def plot_det(folder: Path, evaluations: Sequence[Evaluation]) -> Path:
    """``folder/det.png``: one DET curve per model and test length, EER points marked."""
    from matplotlib import pyplot

    folder.mkdir(parents=True, exist_ok=True)
    figure, axes = det_axes()
    for evaluation in evaluations:
        label = f"{evaluation.label}, T={evaluation.test_seconds:g} s"
        eer_point = evaluation.metrics["eer"]
        draw_det(axes, label, evaluation.targets, evaluation.nontargets, [(eer_point, eer_point)])
    axes.set_title("DET curves (dots: EER)")
    path = folder / DET_FILE
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return path


def det_axes() -> tuple[Any, Any]:
    """A figure and axes on the DET plot's normal-deviate scales, ticked in percent."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 7))
    ticks = normal_deviate(np.array(DET_TICKS) / 100)
    limits = normal_deviate(np.array(DET_LIMITS) / 100)
    for set_ticks, set_limits in (
        (axes.set_xticks, axes.set_xlim),
        (axes.set_yticks, axes.set_ylim),
    ):
        set_ticks(ticks, [f"{tick:g}" for tick in DET_TICKS])
        set_limits(*limits)
    axes.plot(limits, limits, color="0.8", linewidth=0.8, zorder=0)
    axes.set_xlabel("false accept rate (%)")
    axes.set_ylabel("false reject rate (%)")
    axes.grid(True, color="0.9")
    return figure, axes


def draw_det(
    axes: Any,
    label: str,
    targets: npt.NDArray[np.floating[Any]],
    nontargets: npt.NDArray[np.floating[Any]],
    points: Sequence[tuple[float, float]],
) -> None:
    """One DET curve, its operating ``points`` (FAR, FRR) marked in the curve's colour."""
    rates = error_rates(targets, nontargets)
    (curve,) = axes.plot(normal_deviate(rates.far), normal_deviate(rates.frr), label=label)
    for far, frr in points:
        axes.plot(normal_deviate(far), normal_deviate(frr), "o", color=curve.get_color())
    axes.legend(fontsize="small", loc="upper right")
