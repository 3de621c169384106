"""Benchmark: the embedding model in each inference precision against fp32 eager, same run:
speed (3 s crops of real speech, one at a time and in batches of 8), cosine of the
embeddings to fp32's, and with ``--eer`` the harness's EER at 3 s.

    python -m benchmarks.precision --model bundled --seconds 20 --eer \\
        --out results/precision_bundled.json
    python -m benchmarks.precision --model random:1024 --seconds 20 \\
        --out results/precision_random1024.json

Each variant is loaded as the service loads it (``load_encoder(..., precision=...)``).
The timing is interleaved: round after round, every variant embeds the same crops in
turn, so a machine that other work slows hurts them alike; speed-ups are per-round time
ratios to fp32, summed over rounds. ``setup_s`` is loading plus the conversion and the
first calls (for ``onnx``, the export). A variant that
cannot be applied is reported with its reason instead of figures. ``--eer`` evaluates on
test-other-dev and the held-out train-clean-5 readers (docs/accuracy.md), only for trained
models (a random network's EER means nothing; its cosine is the fidelity figure).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    DEFAULT_SPEECH,
    LIBRISPEECH_DEV,
    Samples,
    SpeechMissing,
    crops,
    load_speakers,
    machine,
    print_table,
    skips_without_speech,
    write_json,
)
from benchmarks.machine_peak import ECAPA_GFLOP_PER_AUDIO_SECOND
from benchmarks.model_vs_service import load_raw, model_folder
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.embedding.precision import PRECISIONS, Precision
from biometrics.errors import ModelLoadError
from biometrics.evaluation.protocol import find_speakers, load_speech
from biometrics.evaluation.run import RANDOM_PREFIX, encoder_embedder, evaluate

CROP_SECONDS = 3.0
BATCHES = (1, 8)
# The readers of train-clean-5 the bundled model never trained on (docs/accuracy.md).
HELD_OUT = ("19", "163", "1737", "2136", "4640", "8629")
EER_SETS = {
    "test-other-dev": (DEFAULT_SPEECH, None),
    "train-clean-5 held out": (LIBRISPEECH_DEV / "train-clean-5", HELD_OUT),
}


def load_variants(
    source: str, workdir: Path, precisions: Sequence[str], threads: int, warm: list[Samples]
) -> tuple[dict[str, SpeakerEncoder], dict[str, dict[str, Any]]]:
    """Each precision's encoder, warmed on one crop and one batch; and per precision its
    setup time or the reason it failed."""
    encoders: dict[str, SpeakerEncoder] = {}
    notes: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        start = time.perf_counter()
        try:
            encoder = load_encoder(source, workdir / "cache", threads=threads, precision=precision)
            for batch in BATCHES:
                encoder.embed(warm[:batch])
        except ModelLoadError as error:
            notes[precision] = {"failed": error.detail}
            continue
        encoders[precision] = encoder
        notes[precision] = {"setup_s": time.perf_counter() - start}
    return encoders, notes


def dynamic_int8(folder: Path, workdir: Path) -> dict[str, Any]:
    """What ``quantize_dynamic`` converts of the network, asked for Linear and Conv1d."""
    network = load_raw(folder, workdir).mods.embedding_model
    layers = (torch.nn.Linear, torch.nn.Conv1d)
    before = [type(module) for module in network.modules() if isinstance(module, layers)]
    quantised = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        network, set(layers), dtype=torch.qint8
    )
    after = [type(module) for module in quantised.modules()]
    converted = sum(1 for kind in after if kind.__module__.startswith("torch.ao.nn.quantized"))
    return {
        "failed": f"quantize_dynamic converted {converted} of {len(before)} Linear/Conv1d "
        "layers (it has int8 kernels for Linear and recurrent layers only); not offered",
        "layers": len(before),
        "quantised": converted,
    }


def interleaved_seconds(
    encoders: dict[str, SpeakerEncoder], clips: list[Samples], batch: int, seconds: float
) -> tuple[dict[str, float], int]:
    """Rounds in which every encoder embeds the same ``batch``-sized groups of crops, until
    ``seconds`` passed; each encoder's total time and the crops each embedded."""
    totals = dict.fromkeys(encoders, 0.0)
    done, index, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done == 0:
        chosen = [clips[(index + k) % len(clips)] for k in range(batch)]
        index += batch
        for name, encoder in encoders.items():
            began = time.perf_counter()
            encoder.embed(chosen)
            totals[name] += time.perf_counter() - began
        done += batch
    return totals, done


def cosines(encoders: dict[str, SpeakerEncoder], clips: list[Samples]) -> dict[str, list[float]]:
    """Min and mean cosine of each encoder's embeddings of ``clips`` to fp32's."""
    reference = np.concatenate(
        [encoders["fp32"].embed(clips[i : i + 8]) for i in range(0, len(clips), 8)]
    )
    result = {}
    for name, encoder in encoders.items():
        vectors = np.concatenate([encoder.embed(clips[i : i + 8]) for i in range(0, len(clips), 8)])
        similarity = np.sum(vectors * reference, axis=1)
        result[name] = [float(similarity.min()), float(similarity.mean())]
    return result


def eers(encoders: dict[str, SpeakerEncoder]) -> dict[str, dict[str, float]]:
    """The 3 s EER (%) of each encoder on each evaluation set that is present."""
    result: dict[str, dict[str, float]] = {name: {} for name in encoders}
    for label, (folder, only) in EER_SETS.items():
        if not folder.is_dir():
            print(f"EER on {label} skipped: no folder {folder}", file=sys.stderr)
            continue
        speakers = find_speakers(folder)
        if only is not None:
            speakers = {name: files for name, files in speakers.items() if name in only}
        speech = load_speech(speakers)
        for name, encoder in encoders.items():
            (evaluation,) = evaluate(encoder_embedder(encoder, name), speech, [CROP_SECONDS])
            result[name][label] = 100 * float(evaluation.metrics["eer"])
    return result


def speech_clips(folder: Path, limit: int) -> list[Samples]:
    """The first ``limit`` 3 s crops of the readers' utterances."""
    clips = [
        clip for files in load_speakers(folder).values() for clip in crops(files, CROP_SECONDS)
    ]
    if not clips:
        raise SpeechMissing(f"no {CROP_SECONDS:g} s crops in {folder}")
    return clips[:limit]


@skips_without_speech
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="bundled, random:<channels> or a folder")
    parser.add_argument("--seconds", type=float, default=20.0, help="per batch size, all variants")
    parser.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--max-clips", type=int, default=64, help="crops for speed and cosine")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--eer", action="store_true", help="add the harness's 3 s EER")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    clips = speech_clips(args.speech, args.max_clips)
    precisions = [Precision.FP32.value] + [p for p in args.precision if p != Precision.FP32]

    with tempfile.TemporaryDirectory(prefix="biometrics-precision-") as tmp:
        folder, source = model_folder(args.model, Path(tmp))
        encoders, notes = load_variants(source, Path(tmp), precisions, args.threads, clips)
        notes["int8"] = dynamic_int8(folder, Path(tmp))
        if Precision.FP32 not in encoders:
            print(f"fp32 failed to load: {notes[Precision.FP32]}", file=sys.stderr)
            return 1
        timings = {
            batch: interleaved_seconds(encoders, clips, batch, args.seconds) for batch in BATCHES
        }
        similarity = cosines(encoders, clips)
        trained = not args.model.startswith(RANDOM_PREFIX)
        accuracy = eers(encoders) if args.eer and trained else {}

    rows = []
    for name in [*precisions, "int8"]:
        row: dict[str, Any] = {"precision": name, **notes[name]}
        if name in encoders:
            for batch, (totals, done) in timings.items():
                row[f"clips_per_second_batch_{batch}"] = done / totals[name]
                row[f"speedup_batch_{batch}"] = totals["fp32"] / totals[name]
            row["cosine_min"], row["cosine_mean"] = similarity[name]
            row["eer_percent"] = accuracy.get(name, {})
        rows.append(row)
    best = max(
        (row for row in rows if "failed" not in row),
        key=lambda row: row["clips_per_second_batch_8"],
    )
    best_audio = best["clips_per_second_batch_8"] * CROP_SECONDS
    result = {
        "benchmark": "precision",
        "model": args.model,
        "threads": args.threads,
        "clips": len(clips),
        "seconds_per_batch_size": args.seconds,
        "machine": machine(),
        "rows": rows,
        "best": {
            "precision": best["precision"],
            "audio_seconds_per_second": best_audio,
            "gflops_at_full_size_cost": best_audio * ECAPA_GFLOP_PER_AUDIO_SECOND,
        },
    }
    print(f"{args.model}, torch {torch.__version__}, {args.threads} threads, {len(clips)} crops\n")
    headers = ["precision", "setup s", "clips/s b1", "x fp32 b1", "clips/s b8", "x fp32 b8"]
    headers += ["cos min", "cos mean", "EER % (3 s)"]
    print_table(headers, [table_row(row) for row in rows])
    for row in rows:
        if "failed" in row:
            print(f"{row['precision']} failed: {row['failed']}")
    print(
        f"\nbest at batches of 8: {best['precision']}, {best_audio:.1f} s of audio per second "
        f"({best_audio * ECAPA_GFLOP_PER_AUDIO_SECOND:.0f} GFLOP/s at the full-size ECAPA's "
        f"{ECAPA_GFLOP_PER_AUDIO_SECOND} GFLOP per audio second)"
    )
    write_json(args.out, result)
    return 0


def table_row(row: dict[str, Any]) -> list[object]:
    if "failed" in row:
        return [row["precision"], "failed", "", "", "", "", "", "", ""]
    eer_text = " / ".join(f"{value:.2f}" for value in row["eer_percent"].values())
    return [
        row["precision"],
        row["setup_s"],
        row["clips_per_second_batch_1"],
        row["speedup_batch_1"],
        row["clips_per_second_batch_8"],
        row["speedup_batch_8"],
        f"{row['cosine_min']:.5f}",
        f"{row['cosine_mean']:.5f}",
        eer_text or "-",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
