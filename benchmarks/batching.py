"""Benchmark: the inference batcher's throughput and latency over max_batch x max_wait_ms,
with waves of concurrent requests of real speech crops of one length (what concurrent live
verdicts at the same schedule point, or REST verifications of 3 s, look like).

    python -m benchmarks.batching --model bundled --requests 16 --rounds 8 \\
        --out results/batching.json

Each cell runs ``--rounds`` waves: ``--requests`` requests submitted at once, each one crop
of ``--crop-seconds``, through :class:`~biometrics.embedding.InferenceBatcher` as the
service runs it (one inference thread, ``--threads`` torch threads), after one wave of
warm-up. Prints requests per second, mean and p95 latency and the mean batch size, with
each cell's throughput as a ratio to the first cell (by default max_batch 1, max_wait 0:
one request at a time). First it measures why a batch holds one length only: the cosine
of crops embedded alone against the same crops in one padded batch of mixed lengths.
``--model`` is ``bundled``, ``random:<channels>`` (``random:1024``: the full-size ECAPA
shape) or a model folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_SPEECH,
    Samples,
    crops,
    load_speakers,
    machine,
    print_table,
    skips_without_speech,
    write_json,
)
from benchmarks.model_vs_service import model_folder
from biometrics.audio import SAMPLE_RATE
from biometrics.embedding import (
    BatchingPolicy,
    InferenceBatcher,
    SpeakerEncoder,
    Urgency,
    load_encoder,
)


def sweep_cell(
    encoder: SpeakerEncoder,
    clips: list[Samples],
    policy: BatchingPolicy,
    requests: int,
    rounds: int,
) -> dict[str, Any]:
    """One (max_batch, max_wait) cell: a warm-up wave, then ``rounds`` timed waves."""
    batcher = InferenceBatcher(encoder, policy)
    try:
        wave(batcher, clips, requests, 0)
        before = batcher.counters()
        latencies: list[float] = []
        start = time.perf_counter()
        for index in range(1, rounds + 1):
            latencies += wave(batcher, clips, requests, index)
        elapsed = time.perf_counter() - start
        after = batcher.counters()
    finally:
        batcher.close()
    batches = after.batches - before.batches
    return {
        "max_batch": policy.max_batch,
        "max_wait_ms": policy.max_wait_ms,
        "requests": len(latencies),
        "requests_per_second": len(latencies) / elapsed,
        "mean_latency_ms": 1000 * float(np.mean(latencies)),
        "p95_latency_ms": 1000 * float(np.percentile(latencies, 95)),
        "mean_batch": (after.pieces - before.pieces) / batches,
    }


def padding_cosines(
    encoder: SpeakerEncoder, speakers: dict[str, list[Samples]]
) -> dict[str, float]:
    """Why the batcher batches only equal lengths: the cosine between crops of 1-10 s
    embedded alone and in one padded batch of 8 of mixed lengths (three crops a reader,
    seeded), and the same for a batch of 8 crops of one length."""
    rng = np.random.default_rng(0)
    mixed = [
        utterance[: int(rng.uniform(1.0, 10.0) * SAMPLE_RATE)]
        for utterances in speakers.values()
        for utterance in utterances[:3]
    ][:8]
    equal = [clip[:SAMPLE_RATE] for clip in mixed]
    figures = {}
    for name, clips in (("mixed", mixed), ("equal", equal)):
        alone = np.stack([encoder.embed([clip])[0] for clip in clips])
        cosines = (encoder.embed(clips) * alone).sum(axis=1)
        figures[f"{name}_min"] = float(cosines.min())
        figures[f"{name}_mean"] = float(cosines.mean())
    return figures


def wave(batcher: InferenceBatcher, clips: list[Samples], requests: int, index: int) -> list[float]:
    """``requests`` crops submitted at once; each one's latency once all are served."""
    chosen = [clips[(index * requests + k) % len(clips)] for k in range(requests)]
    futures = [batcher.submit([clip], Urgency.REST) for clip in chosen]
    return [future.result().elapsed_seconds for future in futures]


@skips_without_speech
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--requests", type=int, default=16, help="concurrent, per wave")
    parser.add_argument("--rounds", type=int, default=8, help="timed waves per cell")
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--batches", default="1,4,8,16", help="max_batch values")
    parser.add_argument("--waits", default="0,5,10,20", help="max_wait_ms values")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    speakers = load_speakers(args.speech)
    clips = [
        clip for utterances in speakers.values() for clip in crops(utterances, args.crop_seconds)
    ]
    with tempfile.TemporaryDirectory(prefix="biometrics-batching-") as workdir:
        _, source = model_folder(args.model, Path(workdir))
        encoder = load_encoder(source, Path(workdir) / "cache", threads=args.threads)
    padding = padding_cosines(encoder, speakers)
    print(
        "cosine alone vs in a padded batch of 8: "
        + ", ".join(f"{name} {value:.5f}" for name, value in padding.items())
    )
    rows = [
        sweep_cell(
            encoder,
            clips,
            BatchingPolicy(max_batch=batch, max_wait_ms=wait),
            args.requests,
            args.rounds,
        )
        for batch in (int(value) for value in args.batches.split(","))
        for wait in (float(value) for value in args.waits.split(","))
    ]
    baseline = rows[0]["requests_per_second"]
    for row in rows:
        row["throughput_ratio"] = row["requests_per_second"] / baseline
    headers = list(rows[0])
    print_table(headers, [[row[key] for key in headers] for row in rows])
    write_json(
        args.out,
        {
            "benchmark": "batching",
            "model": args.model,
            "requests": args.requests,
            "rounds": args.rounds,
            "crop_seconds": args.crop_seconds,
            "machine": machine(),
            "padding_cosines": padding,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
